"""All benchmarks, side by side in one process: python -m benchmarks [options].

Sections (DESIGN.md section 7, issue "Speed"):
  gemm    (a) GEMM GFLOP/s vs numpy.matmul (OpenBLAS) and torch.matmul
  layers  (b) every layer, forward and forward+backward, vs the PyTorch op
  model   (c) the full GPT training step vs PyTorch (benchmarks/gpt.py, which comes with
              the model; skipped until it exists), with MFU against the peak below
  peak    (d) the machine's peak FP32 FLOP/s (an FMA loop in C, the widest FMA the GEMM
              runs: AVX-512F where it runs its AVX-512 kernel), the MFU denominator

--contention runs benchmarks/contention.py instead: every row (decoding and sampling at
batch 1, GPT.forward on short inputs, small and large products, every layer, the training
step) at 1 and 2 threads, idle and with a busy loop on one core, interleaved, with the ratio
t(2 threads) / t(1 thread) per condition (target: <= 1 everywhere); --unguarded adds 2
threads with the contention guard off.

Every case prints one JSON line (also appended to --out FILE); markdown tables follow at
the end. Ratios are transformer_c's speed over the other library's (> 1: faster).
"""
import argparse
import importlib
import platform
import sys
import time

import numpy as np

import transformer_c as tc
from benchmarks import common, contention, gemm, layers, peak

SECTIONS = ("peak", "gemm", "layers", "model")


def _skipped(reason, quiet):
    return [common.emit({"bench": "gpt_loss_and_grads", "skipped": reason}, quiet=quiet)]


def run_model(threads, quick, opts, peak_records, quiet=False):
    """(c) The hook for the full GPT training step: benchmarks/gpt.py, which comes with the
    model (run(configs, threads, repeats) emitting one record per config and thread count).
    Its records are collected here, with MFU against the measured peak (d) at the same
    thread count (benchmarks/gpt.py's: its step_flops, the step's matrix-product FLOPs,
    causal attention included, / the loss_and_grads time / the peak FP32 FLOP/s)."""
    try:
        gpt = importlib.import_module("benchmarks.gpt")
    except ModuleNotFoundError as e:
        if e.name not in ("benchmarks.gpt", "transformer_c.nn.gpt"):
            raise
        return _skipped("benchmarks/gpt.py is not there yet (it comes with the GPT model)", quiet)
    peaks = {r["threads"]: r for r in peak_records}
    records = []

    def collect(record, stream=None, quiet_=quiet):
        records.append(common.emit(record, stream, quiet=quiet_))
        return record

    saved = getattr(gpt, "emit", None)
    gpt.emit = collect
    try:
        configs = ["small"] if quick else ["small", "medium"]
        gpt.run(configs, list(threads), 3 if quick else 7, peaks)
    finally:
        if saved is not None:
            gpt.emit = saved
    return records


def model_table(records):
    lines = ["| config | threads | tc tokens/s (step with AdamW) | torch tokens/s (step) "
             "| step speedup (best) | loss_and_grads speedup | tc MFU | torch MFU "
             "| peak RSS MiB (one process) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        g = r.get
        lines.append(f"| {g('config')} | {g('threads')} | {g('tc_step_tokens_per_s', '-')} "
                     f"| {g('torch_step_tokens_per_s', '-')} "
                     f"| {g('step_speedup_vs_torch', '-')} ({g('step_speedup_vs_torch_best', '-')}) "
                     f"| {g('speedup_vs_torch', '-')} | {g('tc_mfu', '-')} | {g('torch_mfu', '-')} "
                     f"| {g('peak_rss_mib', '-')} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="a subset with fewer repeats (about a minute)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                   help="thread counts to run (default: 1 2)")
    p.add_argument("--out", metavar="FILE", help="append the JSON lines to FILE")
    p.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                   help="sections to run (default: all)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--quiet", action="store_true", help="no JSON lines on stdout, tables only")
    p.add_argument("--contention", action="store_true",
                   help="each row at 1 and 2 threads, idle and with one busy core (interleaved)")
    p.add_argument("--unguarded", action="store_true",
                   help="with --contention: also 2 threads with the contention guard off")
    a = p.parse_args(argv)
    if any(t < 1 for t in a.threads):
        p.error("--threads must be >= 1")
    common.set_output(a.out)
    if a.contention:
        recs = contention.run(quick=a.quick, quiet=a.quiet, unguarded=a.unguarded)
        print(f"\n### 2 threads vs 1, idle and with one busy core\n\n{contention.table(recs)}")
        return 0
    dtype = np.dtype(a.dtype).type
    opts = {"repeats": 3, "min_time": 0.02, "warmup": 1} if a.quick else {}
    torch = common.try_torch()
    common.emit({"bench": "env", "python": platform.python_version(), "numpy": np.__version__,
                 "torch": torch.__version__ if torch else None, "machine": platform.machine(),
                 "processor": platform.processor(), "gemm_kernel": tc._C.gemm_kernel_name(),
                 "quick": a.quick, "time": time.strftime("%Y-%m-%d %H:%M:%S")}, quiet=a.quiet)
    tables = []
    peak_records = []
    if "peak" in a.only:
        peak_records = peak.run(a.threads, iters=1_000_000 if a.quick else 2_000_000,
                                quiet=a.quiet)
        tables.append(("Peak FP32 (FMA loop)", peak.table(peak_records)))
    if "gemm" in a.only:
        recs = gemm.run(a.threads, dtype, gemm.shapes(a.quick), opts, quiet=a.quiet)
        tables.append((f"GEMM ({a.dtype})", gemm.table(recs)))
    if "layers" in a.only:
        recs = layers.run(a.threads, dtype, opts=opts, quiet=a.quiet)
        tables.append((f"Layers ({a.dtype})", layers.table(recs)))
    if "model" in a.only:
        recs = run_model(a.threads, a.quick, opts, peak_records, quiet=a.quiet)
        if recs and "skipped" in recs[0]:
            tables.append(("GPT training step", "skipped: " + recs[0]["skipped"]))
        else:
            tables.append(("GPT training step", model_table(recs)))
    for title, text in tables:
        print(f"\n### {title}\n\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
