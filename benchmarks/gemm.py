"""GEMM GFLOP/s: transformer_c vs numpy.matmul (OpenBLAS) vs torch.matmul, float32.

python -m benchmarks.gemm [--threads 1 2] [--dtype float32]
"""
import argparse

import numpy as np

import transformer_c as tc
from benchmarks.common import emit, median_time, set_threads

SQUARE = [256, 512, 1024, 2048]
# (M, N, K) of a GPT step at B*T = 768 tokens, C = 384, V = 65: x W^T, 4C MLP, head
TRANSFORMER = [(768, 1536, 384), (768, 384, 1536), (768, 65, 384), (768, 1152, 384)]


def run(threads, dtype, shapes):
    try:
        import torch
    except ImportError:
        torch = None
    for t in threads:
        set_threads(t)
        for M, N, K in shapes:
            r = np.random.default_rng(0)
            a = r.standard_normal((M, K)).astype(dtype)
            b = r.standard_normal((K, N)).astype(dtype)
            flops = 2.0 * M * N * K
            rec = {"bench": "gemm", "M": M, "N": N, "K": K, "dtype": np.dtype(dtype).name,
                   "threads": t, "kernel": tc._C.gemm_kernel_name()}
            rec["tc_s"] = median_time(lambda: tc.functional.gemm(a, b))
            rec["numpy_s"] = median_time(lambda: a @ b)
            if torch is not None:
                ta, tb = torch.from_numpy(a), torch.from_numpy(b)
                rec["torch_s"] = median_time(lambda: torch.matmul(ta, tb))
            for k in ("tc", "numpy", "torch"):
                if f"{k}_s" in rec:
                    rec[f"{k}_gflops"] = round(flops / rec[f"{k}_s"] / 1e9, 1)
            rec["ratio_vs_numpy"] = round(rec["numpy_s"] / rec["tc_s"], 3)
            emit(rec)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--quick", action="store_true", help="square 256..1024 only")
    a = p.parse_args(argv)
    shapes = [(n, n, n) for n in SQUARE[:3 if a.quick else 4]] + ([] if a.quick else TRANSFORMER)
    run(a.threads, np.dtype(a.dtype).type, shapes)


if __name__ == "__main__":
    main()
