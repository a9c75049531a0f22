"""A/B of two builds of transformer_c on the GPT training step, interleaved in one process.

Measuring a change on a shared, noisy machine: two runs minutes apart differ by 10-30%, so
load both package trees (each a directory holding a built ``transformer_c``; copy the
package before and after the change) under different module names and alternate them
sample by sample. Before timing, the two builds' flat gradients are compared (a change meant
to keep the arithmetic should keep them bitwise equal). One thread is timed by the thread's
CPU time (time taken by other processes or the host does not count), two threads by wall
time.

    cp -r transformer_c /tmp/a/   # before
    ... change, rebuild ...
    python -m benchmarks.ab /tmp/a . --threads 1 --configs small medium

Prints one line per config: median ms of each build, their ratio (> 1: B is faster), and
the best samples. ``--bitwise`` first compares the two builds' fingerprints
(:mod:`benchmarks.fingerprint`: losses, fast and module-path gradients, logits and decoded
tokens of GPT / Encoder / EncoderDecoder in every option combination, both dtypes, 1 and 2
threads) and stops with status 1 if any number differs.
"""
import argparse
import importlib
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from benchmarks.gpt import CONFIGS


def load(root, name):
    """The package root/transformer_c imported as module `name` (with its nn submodule)."""
    spec = importlib.util.spec_from_file_location(
        name, f"{root}/transformer_c/__init__.py",
        submodule_search_locations=[f"{root}/transformer_c"])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    importlib.import_module(name + ".nn")
    return module


def make_step(tc, config, threads):
    """A closure running loss_and_grads + an AdamW update (lr 0: the weights stay put, so
    every sample does the same work) of the config's GPT; returns a copy of the gradients."""
    kw, B, T = CONFIGS[config]
    tc.set_num_threads(threads)
    model = tc.nn.GPT.create(tc.nn.GPTConfig(**kw), np.random.default_rng(0))
    r = np.random.default_rng(1)
    x = r.integers(0, kw["vocab_size"], (B, T))
    y = r.integers(0, kw["vocab_size"], (B, T))
    flat = model.flat_parameters
    m1, m2 = np.zeros_like(flat), np.zeros_like(flat)

    def step(copy=False):
        model.loss_and_grads(x, y)
        grads = model.flat_grads.copy() if copy else None
        tc.functional.adamw_update_(flat, model.flat_grads, m1, m2, step=1, lr=0.0)
        return grads

    return step


def compare(a, b, config, threads, repeats, min_time=0.4):
    """Interleaved samples of both builds' steps: (median_a, median_b, best_a, best_b,
    grads bitwise equal)."""
    steps = {"A": make_step(a, config, threads), "B": make_step(b, config, threads)}
    same = np.array_equal(steps["A"](copy=True), steps["B"](copy=True))
    clock = time.thread_time if threads == 1 else time.perf_counter
    samples = {"A": [], "B": []}
    for _ in range(repeats):
        for tag, step in steps.items():
            t0, n = clock(), 0
            while True:
                step()
                n += 1
                if clock() - t0 > min_time:
                    break
            samples[tag].append((clock() - t0) / n)
    med = {k: statistics.median(v) for k, v in samples.items()}
    return med["A"], med["B"], min(samples["A"]), min(samples["B"]), same


def bitwise(a, b, threads=(1, 2)):
    """Fingerprint both builds (each in its own process) and compare: (ok, report)."""
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for tag, root in (("A", a), ("B", b)):
            out = os.path.join(tmp, f"{tag}.npz")
            subprocess.run([sys.executable, "-m", "benchmarks.fingerprint", root, out,
                            "--threads", *map(str, threads)], check=True,
                           stdout=subprocess.DEVNULL)
            files.append(out)
        from benchmarks.fingerprint import compare
        lines, n, new = compare(*files)
    if lines:
        return False, "\n".join(lines)
    return True, f"bitwise identical: {n} arrays" + (f" ({new} new in B)" if new else "")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a", help="directory holding build A's transformer_c package")
    p.add_argument("b", help="directory holding build B's transformer_c package")
    p.add_argument("--threads", type=int, default=1, choices=[1, 2, 3, 4, 5, 6, 7, 8])
    p.add_argument("--configs", nargs="+", default=["small", "medium"], choices=sorted(CONFIGS))
    p.add_argument("--repeats", type=int, default=0,
                   help="samples per build (default 15 small, 7 otherwise)")
    p.add_argument("--bitwise", action="store_true",
                   help="first compare the builds' fingerprints (fail if any number differs)")
    args = p.parse_args(argv)
    if args.bitwise:
        ok, report = bitwise(args.a, args.b)
        print(report, flush=True)
        if not ok:
            return 1
    a, b = load(args.a, "tc_build_a"), load(args.b, "tc_build_b")
    for config in args.configs:
        reps = args.repeats or (15 if config == "small" else 7)
        ma, mb, ba, bb, same = compare(a, b, config, args.threads, reps)
        print(f"{config} {args.threads}T: A {ma * 1e3:.1f} ms, B {mb * 1e3:.1f} ms, "
              f"B/A speed {ma / mb:.3f} (best A {ba * 1e3:.1f}, B {bb * 1e3:.1f}); gradients "
              f"{'bitwise equal' if same else 'DIFFER'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
