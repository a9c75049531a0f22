"""What speed to expect per build (README "Platforms"): the GPT training step with the
AVX2+FMA kernels and with the portable ones (and, where the CPU has AVX-512F, with the
GEMM's AVX-512 kernel on top of AVX2+FMA), at 1 and 2 threads, interleaved in one process.

The portable kernels are what an x86-64 without AVX2+FMA, a TC_PORTABLE_ONLY=1 build and
TC_PORTABLE=1 run (the switch _C.cpu_set_portable flips them here); one thread is what a
build without OpenMP runs. On other architectures (aarch64) the same portable C source is
compiled for that CPU, so the ratio there is only indicative. Every combination takes its
turn sample by sample (benchmarks.common.paired_times), so load from other work falls on
all of them alike; speeds are relative to the AVX2+FMA step on 1 thread.

    python -m benchmarks.platforms --configs small      # about 1 minute on 2 cores
"""
import argparse

import transformer_c as tc
from benchmarks.ab import make_step
from benchmarks.common import emit, paired_times
from benchmarks.gpt import CONFIGS
from transformer_c import _C


def run(config, threads=(1, 2), repeats=7, min_time=0.3, quiet=False):
    """One record per (threads, kernels): median and best ms of the training step of the
    config (benchmarks.gpt.CONFIGS), and its speed relative to AVX2+FMA on 1 thread (or
    to the portable kernels on 1 thread where the CPU has no AVX2+FMA)."""
    kernels = ["avx2+fma", "generic"] if _C.cpu_has_avx2() else ["generic"]
    if _C.cpu_has_avx512():
        kernels.append("avx512")
    before = (tc.get_num_threads(), _C.cpu_portable())
    step = make_step(tc, config, threads[0])

    def variant(n, kernel):
        def fn():
            tc.set_num_threads(n)
            _C.gemm_set_kernel(kernel)  # (the switch of every family; "avx2+fma" caps the GEMM)
            step()
        return fn

    try:
        fns = {(n, k): variant(n, k) for n in threads for k in kernels}
        times = paired_times(fns, dict(repeats=repeats, warmup=1, min_time=min_time))
    finally:
        tc.set_num_threads(before[0])
        _C.gemm_set_kernel("auto")  # the environment's AVX-512 cap again
        _C.cpu_set_portable(before[1])
    base = times[(threads[0], kernels[0])][0]
    return [emit({"bench": "platforms", "config": config, "threads": n, "kernels": k,
                  "ms": round(1e3 * t[0], 3), "best_ms": round(1e3 * t[1], 3),
                  "speed": round(base / t[0], 3), "build": tc.build_info()}, quiet=quiet)
            for (n, k), t in times.items()]


def table(records):
    """A markdown table of run()'s records."""
    lines = ["| config | threads | kernels | ms/step (median) | speed |", "|---|---|---|---|---|"]
    lines += [f"| {r['config']} | {r['threads']} | {r['kernels']} | {r['ms']:.1f} | "
              f"{r['speed']:.2f} |" for r in records]
    return "\n".join(lines)


def main(argv=None):
    """Command line: --configs small medium, --threads 1 2, --repeats N."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", nargs="+", default=["small"], choices=sorted(CONFIGS))
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args(argv)
    if any(n < 1 for n in args.threads) or args.repeats < 1:
        p.error("--threads and --repeats must be >= 1")
    records = [r for c in args.configs for r in run(c, tuple(args.threads), args.repeats)]
    print(table(records))
    return records


if __name__ == "__main__":
    main()
