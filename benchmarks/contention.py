"""Threads that never hurt: every row at 1 and 2 threads, on the machine as it is ("idle") and
with a busy loop on one core ("busy": a subprocess spinning), all four interleaved sample by
sample, and the ratio t(2 threads) / t(1 thread) per condition (<= 1: the second thread did
not hurt). The issue's target is a ratio <= 1 on every row in both conditions.

python -m benchmarks.contention [--quick] [--rows NAME ...] [--repeats 5]
python -m benchmarks --contention [--quick]            (the same, from the main entry point)
python -m benchmarks.contention --sweep                (the crossover the thresholds come from)

One spinner process serves both conditions: it is stopped (SIGSTOP) for the idle samples and
continued (SIGCONT) for the busy ones, so idle and busy samples alternate within one run and
load from other work on a shared machine falls on all four alike. Rows: the small work the
issue names (KV decoding at batch 1, sampling, GPT.forward on (1, 128), small products and
element-wise passes), the layers and products of the 6x384 GPT, and its training step.
``--sweep`` times a GEMM and an element-wise kernel over growing sizes at 1 and 2 threads (and
2 with the contention guard off) in both conditions: it shows whether the kernels' work
thresholds (TC_PARALLEL_MIN_WORK in csrc/core/tc_generic.h, GEMM_PARALLEL_MIN_FLOPS in
gemm.c, the per-family ones) sit where 2 threads start to pay on this machine.
"""
import argparse
import os
import signal
import statistics
import subprocess
import sys
import time

import numpy as np

import transformer_c as tc
from transformer_c import _C
from benchmarks.common import emit, sample

F = tc.functional
MEDIUM = dict(n_layer=6, n_head=6, n_embd=384, vocab_size=65, block_size=256)
SMALL = dict(n_layer=4, n_head=4, n_embd=128, vocab_size=65, block_size=128)


class BusyCore:
    """A subprocess spinning on one core, switched on and off with SIGCONT / SIGSTOP."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        self.set(False)

    def set(self, busy):
        """Spin (busy True) or stop; waits a little so the switch has taken effect."""
        os.kill(self.proc.pid, signal.SIGCONT if busy else signal.SIGSTOP)
        time.sleep(0.05)

    def close(self):
        self.proc.kill()
        self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


GUARD_DEFAULT = tc.get_thread_guard()  # the contention guard as the process set it


def _configure(setting):
    """Apply a setting: a thread count, or "2g" (2 threads with the contention guard off).
    The guard then reads the run queue over three of its 10 ms periods, so a sample measures
    the steady state: the guard needs two contended readings in a row before it keeps regions
    on one thread, and it reads only when a region asks. Without this, the first ~10 ms of
    each busy sample ran on a stale idle decision, which cost the 0.1-0.3 ms rows 3-8%."""
    tc.set_thread_guard(setting != "2g" and GUARD_DEFAULT)
    tc.set_num_threads(2 if setting == "2g" else setting)
    for _ in range(3):
        _C.parallel_worth(1e12, 1.0)
        time.sleep(0.011)


def interleaved(fn, busy, repeats=5, min_time=0.1, settings=(1, 2)):
    """fn at each setting (a thread count, or "2g": 2 threads with the contention guard off),
    idle and busy, round after round (one sample each per round).
    Returns {(condition, setting): [seconds, ...]}."""
    samples = {(c, t): [] for c in ("idle", "busy") for t in settings}
    try:
        for t in settings:  # warm-up: workspaces, thread pools, caches of every setting
            _configure(t)
            fn()
        for _ in range(repeats):
            for cond in ("idle", "busy"):
                busy.set(cond == "busy")
                for t in settings:
                    _configure(t)
                    samples[(cond, t)].append(sample(fn, min_time))
    finally:
        busy.set(False)
        tc.set_thread_guard(GUARD_DEFAULT)
    return samples


# ------------------------------------------------------------------------------- the rows

def _gpt(kw, seed=0):
    from transformer_c.nn import GPT, GPTConfig

    return GPT.create(GPTConfig(**kw), np.random.default_rng(seed))


def _train_step(kw, B, T):
    model = _gpt(kw)
    r = np.random.default_rng(1)
    x, y = (r.integers(0, kw["vocab_size"], (B, T)) for _ in range(2))
    flat = model.flat_parameters
    m1, m2 = np.zeros_like(flat), np.zeros_like(flat)
    step = [0]

    def run():
        model.loss_and_grads(x, y)
        step[0] += 1
        F.adamw_update_(flat, model.flat_grads, m1, m2, step=step[0], lr=1e-4)
    return run


def _forward(kw, B, T):
    model = _gpt(kw).eval()
    x = np.random.default_rng(1).integers(0, kw["vocab_size"], (B, T))
    return lambda: model.forward(x)


def _decode(kw, n, temperature):
    from transformer_c.generate import generate

    model = _gpt(kw).eval()
    prompt = np.random.default_rng(1).integers(0, kw["vocab_size"], 16)
    return lambda: generate(model, [prompt], max_new_tokens=n, temperature=temperature, seed=0)


def _gemm(M, N, K, trans_b=True):
    r = np.random.default_rng(0)
    a = r.standard_normal((M, K)).astype(np.float32)
    b = r.standard_normal((N, K) if trans_b else (K, N)).astype(np.float32)
    return lambda: F.gemm(a, b, trans_b=trans_b)


def _layers(cfg, prefix, names=None):
    from benchmarks import layers

    cases = layers._cases(cfg, np.float32, None)
    return {f"{prefix} {k}": (lambda f=(v[2] or v[1]): f)
            for k, v in cases.items() if names is None or k in names}


def rows(quick=False):
    """name -> a function that builds the timed callable (built when its row runs)."""
    from benchmarks import layers

    out = {
        "decode greedy 64 tokens, batch 1 (6x384)": lambda: _decode(MEDIUM, 64, 0.0),
        "sample 64 tokens, batch 1 (6x384)": lambda: _decode(MEDIUM, 64, 1.0),
        "sample 64 tokens, batch 1 (4x128)": lambda: _decode(SMALL, 64, 1.0),
        "GPT.forward (1,128) (6x384)": lambda: _forward(MEDIUM, 1, 128),
        "GPT.forward (1,64) (4x128)": lambda: _forward(SMALL, 1, 64),
        "gemm 1x1536x384 (a decode product)": lambda: _gemm(1, 1536, 384),
        "gemm 64x384x384": lambda: _gemm(64, 384, 384),
        "gemm 128x1536x384": lambda: _gemm(128, 1536, 384),
        "gemm 1024x1536x384": lambda: _gemm(1024, 1536, 384),
    }
    small = dict(B=1, T=64, C=128, NH=4, V=65)
    out.update({k: v for k, v in _layers(small, "layer (1x64, C=128) fwd+bwd:").items()})
    if not quick:
        out.update(_layers(layers.GPT, "layer (4x256, C=384) fwd+bwd:"))
    out["train step (4x128, B12 T64)"] = lambda: _train_step(SMALL, 12, 64)
    out["train step (6x384, B4 T256)"] = lambda: _train_step(MEDIUM, 4, 256)
    return out


def run(names=None, quick=False, repeats=None, quiet=False, unguarded=False):
    """Every row (or those named), interleaved 1 / 2 threads x idle / busy; one record per
    row with the medians (ms) and the ratios 2 threads / 1 thread. unguarded: also 2 threads
    with the contention guard off ("2g": what 2 threads did before the guard)."""
    repeats = repeats or (3 if quick else 5)
    min_time = 0.05 if quick else 0.1
    out = []
    with BusyCore() as busy:
        for name, build in rows(quick).items():
            if names and not any(n in name for n in names):
                continue
            fn = build()
            s = interleaved(fn, busy, repeats, min_time, (1, 2, "2g") if unguarded else (1, 2))
            rec = {"bench": "contention", "row": name, "repeats": repeats,
                   "guard": GUARD_DEFAULT, "load_avg_1min": os.getloadavg()[0]}
            for (cond, t), v in s.items():
                rec[f"{cond}_{t}t_ms"] = round(statistics.median(v) * 1e3, 3)
            for cond in ("idle", "busy"):
                for t in (2, "2g") if unguarded else (2,):
                    rec[f"{cond}_ratio" + ("" if t == 2 else "_unguarded")] = round(
                        rec[f"{cond}_{t}t_ms"] / rec[f"{cond}_1t_ms"], 3)
            out.append(emit(rec, quiet=quiet))
            del fn
    return out


def table(records):
    """Markdown table: medians in ms and t(2) / t(1) per condition (<= 1: no harm); with
    the unguarded samples, their ratio too."""
    ung = any("idle_ratio_unguarded" in r for r in records)
    extra = " | idle 2t/1t unguarded | busy 2t/1t unguarded" if ung else ""
    lines = ["| row | idle 1t ms | idle 2t ms | idle 2t/1t | busy 1t ms | busy 2t ms "
             f"| busy 2t/1t{extra} |", "|---|---|---|---|---|---|---|" + ("---|---|" if ung else "")]
    for r in records:
        more = (f" | {r['idle_ratio_unguarded']} | {r['busy_ratio_unguarded']}" if ung else "")
        lines.append(f"| {r['row']} | {r['idle_1t_ms']} | {r['idle_2t_ms']} | {r['idle_ratio']} "
                     f"| {r['busy_1t_ms']} | {r['busy_2t_ms']} | {r['busy_ratio']}{more} |")
    return "\n".join(lines)


# ------------------------------------------------------------------ the crossover sweep

def sweep(repeats=5, quiet=False):
    """Where 2 threads start to pay: a GEMM (M x 384 x 384, FLOPs 2 M 384^2) and an
    element-wise pass (gelu over n floats) at growing sizes, 1 and 2 threads (with the
    contention guard as set, and off), idle and busy. Below a kernel's threshold both thread
    counts run serial (ratio about 1); the threshold belongs where the unguarded idle ratio
    drops below 1."""
    r = np.random.default_rng(0)
    b = r.standard_normal((384, 384)).astype(np.float32)
    out = []
    cases = [("gemm", M, 2.0 * M * 384 * 384) for M in (1, 4, 16, 32, 64, 128, 256, 512)]
    cases += [("gelu", n, float(n)) for n in (4096, 16384, 65536, 262144, 1048576, 4194304)]
    with BusyCore() as busy:
        for kind, size, work in cases:
            if kind == "gemm":
                a = r.standard_normal((size, 384)).astype(np.float32)
                fn = (lambda a=a: F.gemm(a, b, trans_b=True))
            else:
                x = r.standard_normal(size).astype(np.float32)
                fn = (lambda x=x: F.gelu(x, approximate="tanh"))
            s = interleaved(fn, busy, repeats, 0.05, (1, 2, "2g"))
            rec = {"bench": "contention_sweep", "kernel": kind, "size": size, "work": work,
                   "load_avg_1min": os.getloadavg()[0]}
            for (cond, t), v in s.items():
                rec[f"{cond}_{t}t_us"] = round(statistics.median(v) * 1e6, 2)
            for cond in ("idle", "busy"):
                rec[f"{cond}_ratio"] = round(rec[f"{cond}_2t_us"] / rec[f"{cond}_1t_us"], 3)
                rec[f"{cond}_ratio_unguarded"] = round(
                    rec[f"{cond}_2gt_us"] / rec[f"{cond}_1t_us"], 3)
            out.append(emit(rec, quiet=quiet))
    return out


def sweep_table(records):
    lines = ["| kernel | size | work (FLOP or elements) | idle 1t us | idle 2t/1t "
             "| idle unguarded | busy 1t us | busy 2t/1t | busy unguarded |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| {r['kernel']} | {r['size']} | {r['work']:.3g} | {r['idle_1t_us']} "
                     f"| {r['idle_ratio']} | {r['idle_ratio_unguarded']} | {r['busy_1t_us']} "
                     f"| {r['busy_ratio']} | {r['busy_ratio_unguarded']} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.contention", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer rows and repeats")
    p.add_argument("--rows", nargs="+", metavar="TEXT", help="only rows whose name contains TEXT")
    p.add_argument("--repeats", type=int, help="rounds of the four samples (default 5; 3 quick)")
    p.add_argument("--unguarded", action="store_true",
                   help="also 2 threads with the contention guard off (before / after in one run)")
    p.add_argument("--sweep", action="store_true", help="the crossover sweep instead of the rows")
    a = p.parse_args(argv)
    if a.sweep:
        print(sweep_table(sweep(a.repeats or 5)))
    else:
        print(table(run(a.rows, a.quick, a.repeats, unguarded=a.unguarded)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
