"""Timing helpers: median of repeats after warm-up, one JSON object per case.

Libraries are timed one after the other in one process with the same thread count. Their
worker threads spin for a while after a call (OpenBLAS for ~0.1 s, OpenMP runtimes for
less) and would steal a core from the next library timed: settle() sleeps that off
before each library's turn.
"""
import json
import os
import resource
import statistics
import sys
import time

SETTLE_S = 0.15


def sample(fn, min_time):
    """Mean wall seconds per call of fn(), looping until min_time has passed (one call at
    least)."""
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= min_time:
            return elapsed / n


def median_time(fn, repeats=7, warmup=2, min_time=0.05):
    """Median wall time of fn() in seconds; each sample loops until min_time has passed."""
    for _ in range(warmup):
        fn()
    return statistics.median(sample(fn, min_time) for _ in range(repeats))


def settle(seconds=None):
    """Let the previous library's spinning worker threads go to sleep."""
    time.sleep(SETTLE_S if seconds is None else seconds)


def timed(fn, opts):
    """median_time(fn) after settle(), with the repeat options of a run (a dict)."""
    settle(opts.get("settle"))
    return median_time(fn, repeats=opts.get("repeats", 7), warmup=opts.get("warmup", 2),
                       min_time=opts.get("min_time", 0.05))


def paired_times(fns, opts):
    """Time several functions side by side: round after round, each library takes its turn
    (after settle()) for one sample of at least min_time, so load from other work on a
    shared machine falls on all of them alike. opts["clock"]: the clock (default
    time.perf_counter, wall time; time.thread_time measures one thread's work, which other
    processes on a busy machine do not inflate). Returns {name: (median_s, best_s)}."""
    repeats, warmup = opts.get("repeats", 7), opts.get("warmup", 2)
    min_time = opts.get("min_time", 0.05)
    clock = opts.get("clock", time.perf_counter)
    samples = {k: [] for k in fns}
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    for _ in range(repeats):
        for k, fn in fns.items():
            settle(opts.get("settle"))
            n, t0 = 0, clock()
            while True:
                fn()
                n += 1
                elapsed = clock() - t0
                if elapsed >= min_time:
                    break
            samples[k].append(elapsed / n)
    return {k: (statistics.median(v), min(v)) for k, v in samples.items()}


def cpu_times(fns, repeats=3, warmup=1):
    """{name: (median, best)} CPU seconds (time.process_time) of one call of each function,
    the functions taking turns round after round. With one thread this is the work done,
    whatever share of a core a busy machine gives the process (wall time is not: once a
    call outlasts a scheduler time slice, it absorbs the other processes' load)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.process_time()
            fn()
            samples[k].append(time.process_time() - t0)
    return {k: (statistics.median(v), min(v)) for k, v in samples.items()}


def peak_rss_mib():
    """Peak resident set size of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


_OUT = []


def set_output(path):
    """Also append every emitted record to the file at path (None: stdout only)."""
    _OUT[:] = [path] if path else []


def emit(record, stream=None, quiet=False):
    """Print one JSON line (and append it to the --out file and $TC_BENCH_OUT when set)."""
    line = json.dumps(record, sort_keys=True)
    if not quiet:
        print(line, file=stream or sys.stdout, flush=True)
    for path in _OUT + ([os.environ["TC_BENCH_OUT"]] if os.environ.get("TC_BENCH_OUT") else []):
        with open(path, "a") as f:
            f.write(line + "\n")
    return record


def _openblas_libs():
    """ctypes handles of every OpenBLAS this process has loaded (numpy's, scipy's)."""
    import ctypes

    import numpy  # noqa: F401  (loads numpy's BLAS)

    paths = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1]
                if "openblas" in path.lower() and ".so" in path:
                    paths.add(path)
    except OSError:
        pass
    return [ctypes.CDLL(p) for p in sorted(paths)]


def set_blas_threads(n):
    """Set numpy's OpenBLAS thread count (as threadpoolctl does); True if it took effect."""
    done = False
    for lib in _openblas_libs():
        for name in ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                     "openblas_set_num_threads64_", "openblas_set_num_threads"):
            fn = getattr(lib, name, None)
            if fn is not None:
                fn(int(n))
                done = True
                break
    return done


def set_threads(n):
    """Use n threads in transformer_c, numpy's OpenBLAS and PyTorch (when installed) alike."""
    import transformer_c as tc

    tc.set_num_threads(n)
    set_blas_threads(n)
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:
        pass


def try_torch():
    """torch, or None when it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    return torch
