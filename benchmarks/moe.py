"""Mixture of experts vs the dense MLP of equal active parameters, forward+backward.

python -m benchmarks.moe [--threads 1 2] [--experts 4 8] [--quick]
python -m benchmarks.moe --gpt [--threads 1] [--quick]

--gpt: the whole GPT training step (loss_and_grads) of the efficient study's GPT (4 layers,
C = 128, 4 heads, T = 256, batch 16, 65 characters; its MoE: 4 experts, top-1, capacity
1.25) with ffn="moe" on the C fast path against the same model on the module path, and the
dense GPT's fast path for reference, the three timed interleaved in one process.

Shapes are the benchmark GPT's feed-forward (N = B*T = 1024 token rows, C = 384): an MoE of
E experts of width H = 4C with top-k routing (capacity factor 1.25) against the dense MLP
of width k*H, which has the parameters a token uses in the MoE (its k experts). Both run
the kernels the models run: the dense MLP as the GPT fast path does (fused linear + GELU
(tanh), linear; their backward), the MoE through functional.moe / moe_backward (router
GEMM, softmax, routing, each expert the same fused MLP on its gathered rows, the combine,
the gate and router gradients). The two are timed interleaved in one process
(benchmarks.common.paired_times). FLOPs counted: the dense MLP 12 C H_dense per token
(forward 2 GEMMs, backward 4, 2 flops per multiply-add); the MoE 12 C H per kept choice
plus 6 C E per token for the router (dropped choices do no expert work).
"""
import argparse
import os

import numpy as np

import transformer_c as tc
from benchmarks.common import cpu_times, emit, paired_times, set_threads

F = tc.functional
GPT = dict(N=1024, C=384)
TINY = dict(N=16, C=8)


def _dense(x, g, W1, b1, W2, b2):
    h, pre = F.linear_gelu(x, W1, b1, approximate="tanh", return_pre=True)
    F.linear(h, W2, b2)
    dh, dW2, db2 = F.linear_backward(g, h, W2, b2)
    F.linear_gelu_backward(dh, x, W1, b1, approximate="tanh", pre=pre)


def run(threads=(1, 2), dtype=np.float32, cfg=None, experts=(4, 8), top_ks=(1, 2),
        opts=None, quiet=False, capacity_factor=1.25):
    """Time MoE and dense fwd+bwd for every (threads, E, k); returns the records."""
    cfg, opts = cfg or GPT, opts or {}
    N, C = cfg["N"], cfg["C"]
    H = 4 * C
    r = np.random.default_rng(0)

    def arr(*shape, scale=1.0):
        return (r.standard_normal(shape) * scale).astype(dtype)

    x, g = arr(N, C), arr(N, C)
    out = []
    for t in threads:
        set_threads(t)
        for E in experts:
            for k in top_ks:
                if k > E:
                    continue
                R = arr(E, C, scale=C ** -0.5)
                w1, b1 = arr(E, H, C, scale=C ** -0.5), arr(E, H, scale=0.1)
                w2, b2 = arr(E, C, H, scale=H ** -0.5), arr(E, C, scale=0.1)
                Hd = k * H
                W1, B1 = arr(Hd, C, scale=C ** -0.5), arr(Hd, scale=0.1)
                W2, B2 = arr(C, Hd, scale=Hd ** -0.5), arr(C, scale=0.1)
                kw = dict(top_k=k, capacity_factor=capacity_factor, activation="gelu_tanh")
                _, _, routing = F.moe(x, R, w1, b1, w2, b2, **kw)
                kept = int(routing.tokens_per_expert.sum())

                def moe():
                    _, _, rt = F.moe(x, R, w1, b1, w2, b2, **kw)
                    F.moe_backward(g, x, R, w1, b1, w2, b2, routing=rt, aux_grad=0.01, **kw)

                times = paired_times({"dense": lambda: _dense(x, g, W1, B1, W2, B2),
                                      "moe": moe}, opts)
                dense_flops = 12.0 * C * Hd * N
                moe_flops = 12.0 * C * H * kept + 6.0 * C * E * N
                rec = {"bench": "moe", "threads": t, "dtype": np.dtype(dtype).name, "N": N,
                       "C": C, "H": H, "experts": E, "top_k": k,
                       "capacity_factor": capacity_factor, "kept": kept,
                       "dropped": routing.dropped, "dense_s": times["dense"][0],
                       "moe_s": times["moe"][0], "dense_best_s": times["dense"][1],
                       "moe_best_s": times["moe"][1]}
                rec["dense_us_per_token"] = round(rec["dense_s"] / N * 1e6, 3)
                rec["moe_us_per_token"] = round(rec["moe_s"] / N * 1e6, 3)
                rec["dense_gflops"] = round(dense_flops / rec["dense_s"] / 1e9, 2)
                rec["moe_gflops"] = round(moe_flops / rec["moe_s"] / 1e9, 2)
                # > 1: the MoE does more useful work per second than the dense MLP
                rec["per_flop_ratio"] = round(rec["moe_gflops"] / rec["dense_gflops"], 3)
                out.append(emit(rec, quiet=quiet))
    return out


STUDY_GPT = dict(vocab_size=65, block_size=256, n_layer=4, n_head=4, n_embd=128)
STUDY_MOE = dict(ffn="moe", moe_experts=4, moe_top_k=1, moe_capacity=1.25,
                 moe_aux_weight=0.01)


def gpt_run(threads=1, B=16, cfg=None, moe=None, opts=None, quiet=False):
    """One GPT training step (loss_and_grads) timed three ways, interleaved: the MoE GPT on
    the fast path and on the module path (the same parameters), and the dense GPT's fast
    path; one record (median ms per step, the speed-up of the fast path, the load). One
    thread: CPU time of each call (clock "cpu"); more: wall time (clock "wall")."""
    from transformer_c.nn import GPT, GPTConfig

    cfg, moe = dict(cfg or STUDY_GPT), dict(moe or STUDY_MOE)
    opts = dict({"repeats": 5, "warmup": 1, "min_time": 0.0}, **(opts or {}))
    set_threads(threads)
    T = cfg["block_size"]
    dense = GPT.create(GPTConfig(**cfg), np.random.default_rng(0), dtype=np.float32)
    model = GPT.create(GPTConfig(**cfg, **moe), np.random.default_rng(0), dtype=np.float32)
    r = np.random.default_rng(1)
    idx = r.integers(0, cfg["vocab_size"], (B, T))
    tgt = r.integers(0, cfg["vocab_size"], (B, T))
    fns = {"moe_fast": lambda: model.loss_and_grads(idx, tgt),
           "moe_module": lambda: model.loss_and_grads(idx, tgt, fast=False),
           "dense_fast": lambda: dense.loss_and_grads(idx, tgt)}
    # one thread: CPU time, the work done whatever share of a core a busy machine gives
    clock = "cpu" if threads == 1 else "wall"
    times = (cpu_times(fns, opts["repeats"], opts["warmup"]) if clock == "cpu"
             else paired_times(fns, opts))
    rec = {"bench": "moe_gpt", "threads": threads, "clock": clock, "B": B, "T": T, **cfg,
           **moe,
           **{f"{k}_ms": round(1e3 * v[0], 2) for k, v in times.items()},
           "loadavg_1m": os.getloadavg()[0]}
    rec["fast_speedup"] = round(rec["moe_module_ms"] / rec["moe_fast_ms"], 3)
    rec["moe_over_dense"] = round(rec["moe_fast_ms"] / rec["dense_fast_ms"], 3)
    return emit(rec, quiet=quiet)


def gpt_table(records):
    """Markdown table of moe_gpt records."""
    lines = ["| threads | clock | MoE fast ms/step | MoE module ms/step | fast speed-up "
             "| dense fast ms/step | MoE / dense | load |", "|---|---|---|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| {r['threads']} | {r['clock']} | {r['moe_fast_ms']:.1f} "
                     f"| {r['moe_module_ms']:.1f} "
                     f"| {r['fast_speedup']:.2f} | {r['dense_fast_ms']:.1f} "
                     f"| {r['moe_over_dense']:.2f} | {r['loadavg_1m']:.1f} |")
    return "\n".join(lines)


def table(records):
    """Markdown table of moe records."""
    lines = ["| threads | E | k | kept / dropped | dense us/token | MoE us/token "
             "| dense GFLOP/s | MoE GFLOP/s | MoE / dense per FLOP |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| {r['threads']} | {r['experts']} | {r['top_k']} "
                     f"| {r['kept']} / {r['dropped']} | {r['dense_us_per_token']:.2f} "
                     f"| {r['moe_us_per_token']:.2f} | {r['dense_gflops']:.1f} "
                     f"| {r['moe_gflops']:.1f} | {r['per_flop_ratio']:.2f} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--experts", type=int, nargs="+", default=[4, 8])
    p.add_argument("--quick", action="store_true", help="fewer repeats")
    p.add_argument("--gpt", action="store_true",
                   help="the GPT training step: MoE fast path vs module path (and dense)")
    a = p.parse_args(argv)
    if a.gpt:
        opts = {"repeats": 3} if a.quick else {}
        print(gpt_table([gpt_run(t, opts=opts, quiet=True) for t in a.threads]))
        return
    opts = {"repeats": 3, "min_time": 0.02} if a.quick else {}
    print(table(run(a.threads, experts=a.experts, opts=opts, quiet=True)))


if __name__ == "__main__":
    main()
