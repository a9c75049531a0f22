"""(a) GEMM GFLOP/s: transformer_c vs numpy.matmul (OpenBLAS) vs torch.matmul.

python -m benchmarks.gemm [--threads 1 2] [--dtype float32] [--quick]
"""
import argparse

import numpy as np

import transformer_c as tc
from benchmarks.common import emit, paired_times, set_threads, try_torch

SQUARE = [256, 512, 1024, 2048]
# (M, N, K, layout) of a GPT step with B*T = 768 tokens, C = 384, V = 65: the 4C MLP up and
# down projections, the fused qkv projection, the head (x W^T: NT), and the weight gradient
# of the MLP up projection (dout^T x: TN)
TRANSFORMER = [(768, 1536, 384, "NT"), (768, 384, 1536, "NT"), (768, 1152, 384, "NT"),
               (768, 65, 384, "NT"), (1536, 384, 768, "TN")]
QUICK_SQUARE = [256, 512, 1024]
QUICK_TRANSFORMER = [(768, 1536, 384, "NT"), (768, 65, 384, "NT")]


def shapes(quick=False):
    sq = QUICK_SQUARE if quick else SQUARE
    return [(n, n, n, "NN") for n in sq] + (QUICK_TRANSFORMER if quick else TRANSFORMER)


def run(threads=(1, 2), dtype=np.float32, cases=None, opts=None, quiet=False):
    """Time every (M, N, K, layout) case at each thread count; returns the records."""
    opts = opts or {}
    torch = try_torch()
    out = []
    for t in threads:
        set_threads(t)
        for M, N, K, layout in cases or shapes():
            ta, tb = layout[0] == "T", layout[1] == "T"
            r = np.random.default_rng(0)
            a = r.standard_normal((K, M) if ta else (M, K)).astype(dtype)
            b = r.standard_normal((N, K) if tb else (K, N)).astype(dtype)
            A, B = (a.T if ta else a), (b.T if tb else b)  # views: numpy/torch see strides
            flops = 2.0 * M * N * K
            rec = {"bench": "gemm", "M": M, "N": N, "K": K, "layout": layout,
                   "dtype": np.dtype(dtype).name, "threads": t,
                   "kernel": tc._C.gemm_kernel_name()}
            fns = {"tc": lambda: tc.functional.gemm(a, b, trans_a=ta, trans_b=tb),
                   "numpy": lambda: np.matmul(A, B)}
            if torch is not None:
                tA, tB = torch.from_numpy(a), torch.from_numpy(b)
                tA, tB = (tA.T if ta else tA), (tB.T if tb else tB)
                fns["torch"] = lambda: torch.matmul(tA, tB)
            for k, (med, best) in paired_times(fns, opts).items():
                rec[f"{k}_s"], rec[f"{k}_best_s"] = med, best
            for k in ("tc", "numpy", "torch"):
                if f"{k}_s" in rec:
                    rec[f"{k}_gflops"] = round(flops / rec[f"{k}_s"] / 1e9, 1)
            rec["ratio_vs_numpy"] = round(rec["numpy_s"] / rec["tc_s"], 3)
            rec["ratio_vs_numpy_best"] = round(rec["numpy_best_s"] / rec["tc_best_s"], 3)
            if "torch_s" in rec:
                rec["ratio_vs_torch"] = round(rec["torch_s"] / rec["tc_s"], 3)
                rec["ratio_vs_torch_best"] = round(rec["torch_best_s"] / rec["tc_best_s"], 3)
            out.append(emit(rec, quiet=quiet))
    return out


def table(records):
    """Markdown table of gemm records: GFLOP/s from the median samples; ratios are
    transformer_c's speed over the other library's, from the medians (and the best samples)."""
    lines = ["| M x N x K | layout | threads | transformer_c GF/s | numpy GF/s | torch GF/s "
             "| vs numpy (best) | vs torch (best) |", "|---|---|---|---|---|---|---|---|"]
    for r in records:
        vs_torch = (f"{r['ratio_vs_torch']:.2f} ({r['ratio_vs_torch_best']:.2f})"
                    if "ratio_vs_torch" in r else "-")
        lines.append(f"| {r['M']} x {r['N']} x {r['K']} | {r['layout']} | {r['threads']} "
                     f"| {r['tc_gflops']} | {r['numpy_gflops']} | {r.get('torch_gflops', '-')} "
                     f"| {r['ratio_vs_numpy']:.2f} ({r['ratio_vs_numpy_best']:.2f}) | {vs_torch} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--quick", action="store_true", help="square 256..1024 and two GPT shapes")
    a = p.parse_args(argv)
    recs = run(a.threads, np.dtype(a.dtype).type, shapes(a.quick))
    print(table(recs))


if __name__ == "__main__":
    main()
