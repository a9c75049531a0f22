"""A/B of two builds of transformer_c on the GPT (or encoder-decoder) training step,
interleaved in one process.

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

``--model encdec`` times the encoder-decoder's loss_and_grads instead (configs small and base
of :mod:`benchmarks.encdec`, its padded batch; no AdamW):

    python -m benchmarks.ab /tmp/a . --model encdec --configs small base

``--step muon`` times the Muon update alone instead (functional.muon_update_ on the
config's ``muon_matrices()``, the Newton-Schulz products), with the process's CPU time
(every thread's) printed beside the clock above, and the two builds' updated parameters
compared by their largest difference (a change that reorders the arithmetic moves them at
rounding level):

    python -m benchmarks.ab /tmp/a . --step muon --configs medium --threads 2
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

from benchmarks import encdec as encdec_bench
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


def make_encdec_step(tc, config, threads):
    """A closure running the encoder-decoder's loss_and_grads (benchmarks.encdec's config and
    padded batch, float32); returns a copy of the gradients."""
    kw, B, S, T = encdec_bench.CONFIGS[config]
    tc.set_num_threads(threads)
    cfg = tc.nn.EncoderDecoderConfig(**kw, **encdec_bench.COMMON)
    model = tc.nn.EncoderDecoder.create(cfg, np.random.default_rng(0))
    src, src_len, tin, tout = encdec_bench.make_batch(cfg, B, S, T)

    def step(copy=False):
        model.loss_and_grads(src, tin, tout, src_lengths=src_len)
        return model.flat_grads.copy() if copy else None

    return step


def make_muon_step(tc, config, threads):
    """A closure running one Muon update (functional.muon_update_, the defaults) of the
    config's GPT matrices from fixed gradients; returns a copy of the parameters."""
    kw = CONFIGS[config][0]
    tc.set_num_threads(threads)
    model = tc.nn.GPT.create(tc.nn.GPTConfig(**kw), np.random.default_rng(0))
    table = model.muon_matrices()
    p = model.flat_parameters
    g = (np.random.default_rng(1).standard_normal(p.size) * 1e-3).astype(p.dtype)
    buf = np.zeros_like(p)

    def step(copy=False):
        tc.functional.muon_update_(p, g, buf, table)
        return p.copy() if copy else None

    return step


def compare(a, b, config, threads, repeats, min_time=0.4, kind="train"):
    """Interleaved samples of both builds' steps: (median_a, median_b, best_a, best_b,
    outputs bitwise equal, largest output difference, median CPU seconds {A, B})."""
    make = {"muon": make_muon_step, "encdec": make_encdec_step}.get(kind, make_step)
    steps = {"A": make(a, config, threads), "B": make(b, config, threads)}
    out_a, out_b = steps["A"](copy=True), steps["B"](copy=True)
    same, diff = np.array_equal(out_a, out_b), float(np.max(np.abs(out_a - out_b)))
    clock = time.thread_time if threads == 1 else time.perf_counter
    samples, cpu = {"A": [], "B": []}, {"A": [], "B": []}
    for r in range(repeats):
        # A B, then B A: whichever runs second in a pair pays (or gains) the same drift, so
        # alternating the order keeps it out of the ratio (A/A showed 0.967 with A always first)
        for tag in ("A", "B") if r % 2 == 0 else ("B", "A"):
            step = steps[tag]
            t0, c0, n = clock(), time.process_time(), 0
            while True:
                step()
                n += 1
                if clock() - t0 > min_time:
                    break
            samples[tag].append((clock() - t0) / n)
            cpu[tag].append((time.process_time() - c0) / n)
    med = {k: statistics.median(v) for k, v in samples.items()}
    return (med["A"], med["B"], min(samples["A"]), min(samples["B"]), same, diff,
            {k: statistics.median(v) for k, v in cpu.items()})


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
    p.add_argument("--configs", nargs="+", default=None,
                   choices=sorted(set(CONFIGS) | set(encdec_bench.CONFIGS)),
                   help="GPT: small, medium (the default both); encdec: small, base (default "
                        "small)")
    p.add_argument("--repeats", type=int, default=0,
                   help="samples per build (default 15 small, 7 otherwise)")
    p.add_argument("--bitwise", action="store_true",
                   help="first compare the builds' fingerprints (fail if any number differs)")
    p.add_argument("--step", default="train", choices=["train", "muon"],
                   help="train: loss_and_grads + AdamW; muon: the Muon update alone")
    p.add_argument("--model", default="gpt", choices=["gpt", "encdec"],
                   help="gpt (default) or encdec: the encoder-decoder's loss_and_grads")
    args = p.parse_args(argv)
    table = encdec_bench.CONFIGS if args.model == "encdec" else CONFIGS
    args.configs = args.configs or (["small"] if args.model == "encdec" else ["small", "medium"])
    for config in args.configs:
        if config not in table:
            p.error(f"--configs {config}: not a {args.model} config (choose from "
                    f"{', '.join(sorted(table))})")
    if args.model == "encdec" and args.step != "train":
        p.error("--step muon times GPT matrices: not with --model encdec")
    if args.bitwise:
        ok, report = bitwise(args.a, args.b)
        print(report, flush=True)
        if not ok:
            return 1
    a, b = load(args.a, "tc_build_a"), load(args.b, "tc_build_b")
    for config in args.configs:
        reps = args.repeats or (15 if config == "small" else 7)
        kind = "encdec" if args.model == "encdec" else args.step
        ma, mb, ba, bb, same, diff, cpu = compare(a, b, config, args.threads, reps, kind=kind)
        what = "parameters" if args.step == "muon" else "gradients"
        print(f"{args.model} {config} {args.step} {args.threads}T: A {ma * 1e3:.1f} ms, B {mb * 1e3:.1f} ms, "
              f"B/A speed {ma / mb:.3f} (best A {ba * 1e3:.1f}, B {bb * 1e3:.1f}); CPU A "
              f"{cpu['A'] * 1e3:.1f} ms, B {cpu['B'] * 1e3:.1f} ms; {what} "
              f"{'bitwise equal' if same else f'differ by at most {diff:.2g}'}; load "
              f"{os.getloadavg()[0]:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
