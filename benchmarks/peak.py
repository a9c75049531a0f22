"""(d) The machine's peak FP32 FLOP/s: an FMA loop in C (transformer_c._C.peak_flops).

python -m benchmarks.peak [--threads 1 2]

Model FLOP utilisation (MFU) of the full training step is reported against these numbers
by the model benchmark.
"""
import argparse

import transformer_c as tc
from benchmarks.common import emit, set_threads


def run(threads=(1, 2), iters=20_000_000, repeats=9, quiet=False):
    """Best of `repeats` FMA-loop runs at each thread count; returns the records."""
    out = []
    for t in threads:
        set_threads(t)
        best = max(tc._C.peak_flops(iters) for _ in range(repeats))
        out.append(emit({"bench": "peak", "threads": t, "peak_gflops": round(best / 1e9, 1),
                         "kernel": tc._C.gemm_kernel_name()}, quiet=quiet))
    return out


def table(records):
    lines = ["| threads | peak FP32 GFLOP/s |", "|---|---|"]
    lines += [f"| {r['threads']} | {r['peak_gflops']} |" for r in records]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    a = p.parse_args(argv)
    print(table(run(a.threads)))


if __name__ == "__main__":
    main()
