"""Block-sparse vs dense tiled attention: time and memory against the sequence length T,
and the per-FLOP speed of the block-sparse GPT step against the dense one.

python -m benchmarks.sparse_attention [--T 256 1024 4096 16384] [--threads 1] [--repeats 3]
python -m benchmarks.sparse_attention --gpt            (the GPT training step, dense vs sparse)

Attention: one head (B = NH = 1, head size 64, float32), causal, forward + backward of the
tiled kernel (functional.scaled_dot_product_attention and its backward), dense and with
the "right" pattern for T (``pattern(T)``: blocks of sqrt(T)/2 tokens, a window of 2 blocks,
every sqrt(T)-th block strided, so a query sees about 1.25 sqrt(T) keys: O(T sqrt(T)) work;
README "Block-sparse attention" has the derivation). The two are timed interleaved, round
after round, in one process, in CPU time (process_time; one thread: the work done, which a
busy shared machine does not inflate as it does wall time). Per T one JSON line: both times, their ratio, the mean keys a
query sees (the useful work: 14 * pairs * D FLOP for forward + backward), GFLOP/s on that
useful work, and the peak extra memory of each (the growth of the peak RSS of a fresh
process over its inputs: both are O(T), no (T, T) matrix). Then a table with the growth
exponents fitted over T (log time against log T, least squares): about 2 for dense, about
1.5 for sparse once the strided blocks dominate. The load average is printed with it.

--gpt: GPT.loss_and_grads (the C fast path) of a 4-layer, 4-head, 256-wide GPT at T = 1024
(B = 2), dense and block-sparse (GPT_PATTERN), interleaved; the model FLOP per step (6 * parameters per
token for the matrices, plus 14 * HS * visible (query, key) pairs per head and layer for the
attention) over the time: the sparse step's GFLOP/s against the dense step's.
"""
import argparse
import math
import os
import subprocess
import sys

import numpy as np

import transformer_c as tc
from benchmarks.common import cpu_times, emit, set_threads

F = tc.functional
D = 64


def pattern(T):
    """The O(T sqrt(T)) pattern for length T: block b = sqrt(T)/2 tokens (at least 8),
    window 2 blocks (a query's own and the previous one, causally), every sqrt(T)-th block
    strided: about 0.75 sqrt(T) local and at most sqrt(T) strided keys per query."""
    r = math.isqrt(T)
    return F.sparse_layout(block=max(8, r // 2), window=2, stride=max(2, r), global_blocks=0)


def keys_per_query(layout, T):
    """Mean keys a query of a causal length-T sequence sees (float): block by block from the
    block layout (no (T, T) matrix)."""
    b = layout.block
    nb = -(-T // b)
    blocks = layout.blocks(T)
    total = 0
    for qb in range(nb):
        q0, q1 = qb * b, min(T, qb * b + b)
        for kb in np.nonzero(blocks[qb, :qb + 1])[0]:
            k0, k1 = kb * b, min(T, kb * b + b)
            if kb < qb:
                total += (q1 - q0) * (k1 - k0)
            else:  # the diagonal block: causal triangle
                n = q1 - q0
                total += n * (n + 1) // 2
    return total / T


def _inputs(T, seed=0):
    r = np.random.default_rng(seed)
    q, k, v, g = (r.standard_normal((1, 1, T, D)).astype(np.float32) for _ in range(4))
    return q, k, v, g


def _step(q, k, v, g, sparse):
    out, lse = F.scaled_dot_product_attention(q, k, v, is_causal=True, sparse=sparse,
                                              return_lse=True)
    F.scaled_dot_product_attention_backward(g, q, k, v, is_causal=True, sparse=sparse,
                                            out=out, lse=lse)


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def child_memory(T, sparse):
    """In this (fresh) process: the peak RSS (VmHWM, reset through /proc/self/clear_refs
    after the inputs are allocated) of one forward + backward minus the RSS before it, MiB."""
    q, k, v, g = _inputs(T)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak RSS to the current RSS
    base = _status_kib("VmRSS")
    _step(q, k, v, g, pattern(T) if sparse else None)
    return (_status_kib("VmHWM") - base) / 1024.0


def peak_extra_mib(T, sparse, threads):
    """child_memory in a fresh process (so the peak belongs to this case alone)."""
    code = (f"import transformer_c as tc; tc.set_num_threads({threads}); "
            f"from benchmarks.sparse_attention import child_memory; "
            f"print(child_memory({T}, {bool(sparse)}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    return float(out.stdout.strip().splitlines()[-1])


def run(Ts=(256, 1024, 4096, 16384), threads=1, opts=None, memory=True, quiet=False):
    """One record per T (see the module doc)."""
    opts = dict({"repeats": 3, "warmup": 1}, **(opts or {}))
    set_threads(threads)
    load = os.getloadavg()[0]
    recs = []
    for T in Ts:
        q, k, v, g = _inputs(T)
        sp = pattern(T)
        times = cpu_times({"dense": lambda: _step(q, k, v, g, None),
                           "sparse": lambda: _step(q, k, v, g, sp)}, opts["repeats"],
                          opts["warmup"])
        kq_dense, kq_sparse = (T + 1) / 2, keys_per_query(sp, T)
        flop = lambda kq: 14.0 * D * kq * T  # noqa: E731
        rec = {"bench": "sparse_attention", "T": T, "D": D, "threads": threads,
               "dtype": "float32", "pattern": dict(sp._asdict()),
               "dense_s": times["dense"][0], "sparse_s": times["sparse"][0],
               "dense_best_s": times["dense"][1], "sparse_best_s": times["sparse"][1],
               "speedup": times["dense"][0] / times["sparse"][0],
               "keys_per_query_dense": kq_dense, "keys_per_query_sparse": kq_sparse,
               "dense_gflops": flop(kq_dense) / times["dense"][0] / 1e9,
               "sparse_gflops": flop(kq_sparse) / times["sparse"][0] / 1e9,
               "loadavg_1m": load}
        if memory:
            rec["dense_extra_mib"] = peak_extra_mib(T, False, threads)
            rec["sparse_extra_mib"] = peak_extra_mib(T, True, threads)
        recs.append(emit(rec, quiet=quiet))
    return recs


def growth(recs, key):
    """The least-squares slope of log(rec[key]) against log(T) (the growth exponent)."""
    x = np.log([r["T"] for r in recs])
    y = np.log([r[key] for r in recs])
    return float(np.polyfit(x, y, 1)[0]) if len(recs) > 1 else float("nan")


def table(recs):
    """A markdown table of the records and the fitted growth exponents."""
    mem = "dense_extra_mib" in recs[0]
    head = "| T | dense ms | sparse ms | speedup | keys/query dense | keys/query sparse | " \
           "GFLOP/s dense | GFLOP/s sparse |" + (" extra MiB dense | extra MiB sparse |"
                                                  if mem else "")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in recs:
        row = (f"| {r['T']} | {1e3 * r['dense_s']:.2f} | {1e3 * r['sparse_s']:.2f} | "
               f"{r['speedup']:.1f} | {r['keys_per_query_dense']:.0f} | "
               f"{r['keys_per_query_sparse']:.0f} | {r['dense_gflops']:.1f} | "
               f"{r['sparse_gflops']:.1f} |")
        if mem:
            row += f" {r['dense_extra_mib']:.1f} | {r['sparse_extra_mib']:.1f} |"
        lines.append(row)
    work = [growth(recs, k) + 1 for k in ("keys_per_query_dense", "keys_per_query_sparse")]
    lines.append(f"| growth exponent | {growth(recs, 'dense_s'):.2f} | "
                 f"{growth(recs, 'sparse_s'):.2f} | | {work[0]:.2f} (work) | "
                 f"{work[1]:.2f} (work) | | |" + (" | |" if mem else ""))
    return "\n".join(lines)


# ------------------------------------------------------------------ the GPT step

GPT_CFG = dict(n_layer=4, n_head=4, n_embd=256, vocab_size=65, block_size=1024)


GPT_PATTERN = dict(block=64, window=3, stride=4, global_blocks=0)


def gpt_run(B=2, T=1024, threads=1, opts=None, quiet=False, cfg=None, layout=None):
    """Dense and block-sparse GPT.loss_and_grads (fast path) interleaved; one record.
    layout: the pattern (default GPT_PATTERN: blocks of 64, a window of 3, every 4th block
    strided: a query sees about a third of the keys at T = 1024)."""
    from transformer_c.nn import GPT, GPTConfig

    cfg = dict(cfg or GPT_CFG, block_size=T)
    opts = dict({"repeats": 3, "warmup": 1}, **(opts or {}))
    set_threads(threads)
    sp = layout or F.sparse_layout(**GPT_PATTERN)
    dense = GPT.create(GPTConfig(**cfg), np.random.default_rng(0), dtype=np.float32)
    sparse_cfg = GPTConfig(**cfg, attention="block_sparse", sparse_block=sp.block,
                           sparse_window=sp.window, sparse_stride=sp.stride,
                           sparse_global=sp.global_blocks)
    sparse = GPT(sparse_cfg, dense.parameters)
    r = np.random.default_rng(1)
    idx = r.integers(0, cfg["vocab_size"], (B, T))
    tgt = r.integers(0, cfg["vocab_size"], (B, T))
    times = cpu_times({"dense": lambda: dense.loss_and_grads(idx, tgt),
                       "sparse": lambda: sparse.loss_and_grads(idx, tgt)}, opts["repeats"],
                      opts["warmup"])
    C, L, NH = cfg["n_embd"], cfg["n_layer"], cfg["n_head"]
    mat = 6.0 * (12 * C * C * L + cfg["vocab_size"] * C) * B * T
    att = lambda kq: 14.0 * (C // NH) * kq * T * NH * L * B  # noqa: E731
    fl_d, fl_s = mat + att((T + 1) / 2), mat + att(keys_per_query(sp, T))
    rec = {"bench": "sparse_attention_gpt", "B": B, "T": T, "threads": threads, **cfg,
           "pattern": dict(sp._asdict()), "dense_ms": 1e3 * times["dense"][0],
           "sparse_ms": 1e3 * times["sparse"][0],
           "dense_gflops": fl_d / times["dense"][0] / 1e9,
           "sparse_gflops": fl_s / times["sparse"][0] / 1e9,
           "loadavg_1m": os.getloadavg()[0]}
    rec["per_flop_ratio"] = rec["sparse_gflops"] / rec["dense_gflops"]
    return emit(rec, quiet=quiet)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--T", type=int, nargs="+", default=[256, 1024, 4096, 16384])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    p.add_argument("--gpt", action="store_true", help="the GPT step, dense vs block-sparse")
    a = p.parse_args(argv)
    if a.threads != 1 or a.repeats < 1 or any(t < 1 for t in a.T):
        p.error("--threads must be 1 (CPU time measures one thread's work); --repeats and "
                "every --T must be >= 1")
    print(f"# uptime load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if a.gpt:
        gpt_run(threads=a.threads, opts={"repeats": a.repeats})
        return
    print(table(run(a.T, a.threads, {"repeats": a.repeats}, memory=not a.no_memory)))


if __name__ == "__main__":
    main()
