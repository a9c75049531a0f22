"""(d) The machine's peak FP32 FLOP/s: an FMA loop in C (transformer_c._C.peak_flops).

python -m benchmarks.peak [--threads 1 2] [--kernel auto avx2+fma] [--repeats 21] [--iters 2000000]

The loop runs the widest FMA the GEMM runs, with the GEMM's runtime dispatch
(csrc/core/bench.c): 16-wide AVX-512F FMAs where the GEMM runs its AVX-512 kernel, 8-wide
AVX2+FMA ones where it runs the AVX2 one (its cap: TC_GEMM_KERNEL=avx2+fma, or
--kernel avx2+fma here), a portable loop otherwise. Each thread runs 8, 12, 16 and 24
independent accumulator chains (enough of them cover the FMA latency x the FMA ports; the
count that does is measured, not assumed), interleaved round by round; a row is the best
sample over chain counts and rounds, with the chain count that reached it and the best
of each count. Default: a row per kernel this CPU has ("auto" is the GEMM's own choice).

Model FLOP utilisation (MFU) of the training step (benchmarks/gpt.py, and the model
section of python -m benchmarks) is reported against the "auto" rows: the peak of the
kernel the GEMM runs.
"""
import argparse
import os

import transformer_c as tc
from benchmarks.common import emit, set_threads

CHAINS = (8, 12, 16, 24)


def kernels():
    """The FMA loops this build and CPU can run, widest first (names of _C.gemm_set_kernel)."""
    out = ["avx512"] if tc._C.cpu_has_avx512() else []
    return out + (["avx2+fma"] if tc._C.cpu_has_avx2() else []) + ["generic"]


def run(threads=(1, 2), kernels=("auto",), iters=2_000_000, repeats=21, quiet=False):
    """Best of `repeats` rounds of the FMA loop at each chain count, per kernel (a name of
    _C.gemm_set_kernel; "auto": the GEMM's own choice) and thread count; returns the records
    {"threads", "kernel" (the loop that ran), "chains" (the best count), "peak_gflops",
    "gflops_by_chains", "load_avg_1min"}. The cpu override is put back to "auto" after a
    kernel other than "auto"."""
    out = []
    for k in kernels:
        if k != "auto":
            tc._C.gemm_set_kernel(k)
        try:
            for t in threads:
                set_threads(t)
                best = {c: 0.0 for c in CHAINS}
                for _ in range(repeats):  # the chain counts interleaved round by round
                    for c in CHAINS:
                        best[c] = max(best[c], tc._C.peak_flops(iters, c))
                top = max(CHAINS, key=lambda c: best[c])
                out.append(emit({"bench": "peak", "threads": t,
                                 "kernel": tc._C.cpu_kernel("bench"), "chains": top,
                                 "peak_gflops": round(best[top] / 1e9, 1),
                                 "gflops_by_chains": {str(c): round(best[c] / 1e9, 1)
                                                      for c in CHAINS},
                                 "load_avg_1min": os.getloadavg()[0]}, quiet=quiet))
        finally:
            if k != "auto":
                tc._C.gemm_set_kernel("auto")
    return out


def table(records):
    lines = ["| kernel | threads | peak FP32 GFLOP/s | best chains | "
             + " | ".join(f"{c} chains" for c in CHAINS) + " |",
             "|---|---|---|---|" + "---|" * len(CHAINS)]
    lines += [f"| {r['kernel']} | {r['threads']} | {r['peak_gflops']} | {r['chains']} | "
              + " | ".join(str(r["gflops_by_chains"][str(c)]) for c in CHAINS) + " |"
              for r in records]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--kernel", nargs="+", default=None,
                   choices=["auto", "avx512", "avx2+fma", "generic"],
                   help="loops to measure (default: every one this CPU has, widest first)")
    p.add_argument("--repeats", type=int, default=21)
    p.add_argument("--iters", type=int, default=2_000_000,
                   help="FMA rounds per sample (shorter samples fit between a busy host's "
                        "preemptions more often)")
    a = p.parse_args(argv)
    print(table(run(a.threads, a.kernel or kernels(), iters=a.iters, repeats=a.repeats)))


if __name__ == "__main__":
    main()
