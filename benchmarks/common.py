"""Timing helpers: median of repeats after warm-up, one JSON object per case."""
import json
import os
import resource
import statistics
import sys
import time


def median_time(fn, repeats=7, warmup=2, min_time=0.05):
    """Median wall time of fn() in seconds; each sample loops until min_time has passed."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        n, t0 = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= min_time:
                break
        samples.append(elapsed / n)
    return statistics.median(samples)


def peak_rss_mib():
    """Peak resident set size of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def emit(record, stream=None):
    """Print one JSON line (and append it to $TC_BENCH_OUT when set)."""
    line = json.dumps(record, sort_keys=True)
    print(line, file=stream or sys.stdout, flush=True)
    path = os.environ.get("TC_BENCH_OUT")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


def set_threads(n):
    """Use n threads in transformer_c and PyTorch (when installed) alike."""
    import transformer_c as tc

    tc.set_num_threads(n)
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:
        pass
