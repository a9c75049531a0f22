"""Scaled dot-product attention: transformer_c's tiled kernel vs torch SDPA, float32.

For each case (B, NH, T, HS, causal) prints one JSON line with the forward and
forward+backward times of both (medians over rounds after warm-up, same thread count; each
round times transformer_c and torch back to back, so both see the same machine load) and
their ratios (median over rounds of torch time / transformer_c time: > 1 means
transformer_c is faster), and with
--memory the peak extra memory of one forward+backward call of each, measured in a fresh
subprocess as the rise of the peak resident set (VmHWM) over the resident set after the
inputs were allocated. ``score_matrix_mib`` is what materialising the (T, S) float32
scores of every batch-head would take.

python -m benchmarks.attention [--threads 2] [--quick | --target | --cases B,NH,T ...]
                               [--memory] [--dtype float32]
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

import transformer_c as tc
import statistics
import time

from benchmarks.common import emit, sample, set_threads

HS = 64
# (B, NH, T): batch 1..8, heads 4..12, sequence 128..4096
GRID = [(8, 12, 128), (4, 8, 256), (8, 4, 512), (2, 12, 512), (4, 8, 1024), (1, 12, 1024),
        (2, 8, 2048), (1, 8, 4096)]
QUICK = [(4, 8, 256), (4, 8, 1024)]
TARGET = [(4, 8, 1024), (1, 8, 4096)]


def inputs(B, NH, T, dtype, seed=0):
    r = np.random.default_rng(seed)
    return [r.standard_normal((B, NH, T, HS)).astype(dtype) for _ in range(4)]


def tc_fns(q, k, v, G, causal):
    F = tc.functional

    def fwd():
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

    def fwd_bwd():
        out, lse = F.scaled_dot_product_attention(q, k, v, is_causal=causal, return_lse=True)
        return F.scaled_dot_product_attention_backward(G, q, k, v, is_causal=causal, out=out,
                                                       lse=lse)
    return fwd, fwd_bwd


def torch_fns(torch, q, k, v, G, causal):
    tq, tk, tv = (torch.from_numpy(a).requires_grad_() for a in (q, k, v))
    tG = torch.from_numpy(G)
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def fwd():
        with torch.no_grad():
            return sdpa(tq, tk, tv, is_causal=causal)

    def fwd_bwd():
        for t in (tq, tk, tv):
            t.grad = None
        sdpa(tq, tk, tv, is_causal=causal).backward(tG)
        return tq.grad, tk.grad, tv.grad
    return fwd, fwd_bwd


def paired_times(fa, fb, repeats, warmup=1, min_time=0.05):
    """(median seconds of fa, of fb, median of the per-round ratios fb / fa); fa and fb are
    timed back to back in each round, alternating which goes first."""
    for _ in range(warmup):
        fa()
        fb()
    ta, tb, ratios = [], [], []
    for r in range(repeats):
        if r % 2:
            b = sample(fb, min_time)
            a = sample(fa, min_time)
        else:
            a = sample(fa, min_time)
            b = sample(fb, min_time)
        ta.append(a)
        tb.append(b)
        ratios.append(b / a)
    return statistics.median(ta), statistics.median(tb), statistics.median(ratios)


def _status_mib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    raise OSError(field)


def memory_probe(framework, B, NH, T, causal, dtype, threads):
    """Run in a fresh process: peak RSS rise (MiB) of one forward+backward call."""
    q, k, v, G = inputs(B, NH, T, dtype)
    if framework == "torch":
        import torch

        torch.set_num_threads(threads)
        fn = torch_fns(torch, q, k, v, G, causal)[1]
    else:
        tc.set_num_threads(threads)
        fn = tc_fns(q, k, v, G, causal)[1]
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    base = _status_mib("VmRSS")
    fn()
    return _status_mib("VmHWM") - base


def measure_memory(framework, B, NH, T, causal, dtype, threads):
    cmd = [sys.executable, "-m", "benchmarks.attention", "--_probe", framework,
           f"{B},{NH},{T}", str(int(causal)), np.dtype(dtype).name, str(threads)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, check=True,
                             cwd=os.getcwd(), timeout=600)
        return round(json.loads(res.stdout.strip().splitlines()[-1])["extra_mib"], 1)
    except (subprocess.SubprocessError, OSError, ValueError, KeyError):
        return None


def run(cases, causals, threads, dtype, memory, repeats):
    try:
        import torch
    except ImportError:
        torch = None
    set_threads(threads)
    for B, NH, T in cases:
        q, k, v, G = inputs(B, NH, T, dtype)
        for causal in causals:
            rec = {"bench": "attention", "B": B, "NH": NH, "T": T, "HS": HS, "causal": causal,
                   "dtype": np.dtype(dtype).name, "threads": threads,
                   "kernel": tc._C.attention_kernel_name(),
                   "score_matrix_mib": round(B * NH * T * T * np.dtype(dtype).itemsize / 2**20, 1)}
            min_time = 0.0 if T >= 2048 else 0.05  # few, long samples for the big cases
            f, fb = tc_fns(q, k, v, G, causal)
            if torch is not None:
                tf, tfb = torch_fns(torch, q, k, v, G, causal)
                rec["tc_fwd_s"], rec["torch_fwd_s"], rec["fwd_ratio"] = paired_times(
                    f, tf, repeats, min_time=min_time)
                rec["tc_fwd_bwd_s"], rec["torch_fwd_bwd_s"], rec["fwd_bwd_ratio"] = paired_times(
                    fb, tfb, repeats, min_time=min_time)
                rec["fwd_ratio"] = round(rec["fwd_ratio"], 3)
                rec["fwd_bwd_ratio"] = round(rec["fwd_bwd_ratio"], 3)
            else:
                rec["tc_fwd_s"] = paired_times(f, f, repeats, min_time=min_time)[0]
                rec["tc_fwd_bwd_s"] = paired_times(fb, fb, repeats, min_time=min_time)[0]
            if memory:
                rec["tc_fwd_bwd_extra_mib"] = measure_memory("tc", B, NH, T, causal, dtype, threads)
                if torch is not None:
                    rec["torch_fwd_bwd_extra_mib"] = measure_memory("torch", B, NH, T, causal,
                                                                    dtype, threads)
            for key in list(rec):
                if key.endswith("_s"):
                    rec[key] = round(rec[key], 5)
            emit(rec)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--quick", action="store_true", help=f"only {QUICK}")
    p.add_argument("--target", action="store_true",
                   help=f"the issue's two target cases {TARGET}, causal, with --memory")
    p.add_argument("--cases", nargs="+", metavar="B,NH,T", help="explicit cases")
    p.add_argument("--causal", choices=["both", "yes", "no"], default="both")
    p.add_argument("--memory", action="store_true", help="also measure peak extra memory")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--_probe", nargs=5, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a._probe:
        fw, case, causal, dt, threads = a._probe
        B, NH, T = (int(x) for x in case.split(","))
        extra = memory_probe(fw, B, NH, T, bool(int(causal)), np.dtype(dt).type, int(threads))
        print(json.dumps({"extra_mib": extra}))
        return
    cases = GRID
    if a.quick:
        cases = QUICK
    if a.target:
        cases, a.memory, a.causal = TARGET, True, "yes"
    if a.cases:
        cases = [tuple(int(x) for x in c.split(",")) for c in a.cases]
    causals = {"both": [True, False], "yes": [True], "no": [False]}[a.causal]
    run(cases, causals, a.threads, np.dtype(a.dtype).type, a.memory, a.repeats)


if __name__ == "__main__":
    main()
