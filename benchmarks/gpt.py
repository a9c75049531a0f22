"""GPT training step: transformer_c's loss_and_grads (the whole forward + backward in C)
against the same model in PyTorch eager (forward + cross-entropy + backward), float32,
same thread count, same weights, in one process. Also the step with AdamW (one in-place
update of the flat parameter buffer vs torch.optim.AdamW).

python -m benchmarks.gpt [--threads 1 2] [--configs small medium] [--repeats 7] [--one-pass] [--no-peak]
python -m benchmarks.gpt --rss [--threads 1 2]   (peak RSS, each library in its own process)
python -m benchmarks.gpt --blocks [--threads 1] [--configs small]   (the block options)

--blocks: the fast path's loss_and_grads of each config as it is and with the modern block
options (relu2, beside relu: both with a fused linear + activation pair, as the GELUs;
SwiGLU at n_inner = 8C/3, LLaMA's width for the MLP's parameter count;
grouped-query attention with n_head / 2 and 1 kv heads; QK-norm alone and with n_head / 2
kv heads), the variants alternating sample
by sample, each with its matrix-product FLOPs per step (forward 2 x multiply-adds of every
product and the causal attention, backward twice that) and its GFLOP/s relative to the
plain config's (per_flop_vs_base: 1.0 = as fast per FLOP as today's GPT step); on one
thread the times are CPU times (benchmarks.common.cpu_times: the work done, whatever share
of a core a busy machine gives), on more the wall time.

One JSON line per (config, threads): ms per step (median and best of the samples, tc and
torch alternating) and tokens/s for both, their ratio, the activation arena's bytes per
token, and the 1-minute load average (the numbers mean little on a busy machine).

MFU (model FLOP utilisation): the step's matrix-product FLOPs (step_flops: 6 x the
matrix-multiply weights (the blocks' and the tied head's; embeddings and norms are not
products) x tokens, plus the causal attention's 6 T C per token and layer) / the
loss_and_grads time (median: tc_mfu, torch_mfu; best sample: *_mfu_best) / the peak FP32
FLOP/s that benchmarks.peak measures first at the same thread count with the kernel the
GEMM runs (the AVX-512 loop on a CPU with AVX-512F; peak_gflops and peak_kernel in the
record; --no-peak skips it and the MFU).
"""
import argparse
import math
import os
import statistics

import numpy as np

import transformer_c as tc
from benchmarks.common import cpu_times, emit, median_time, peak_rss_mib, set_threads
from transformer_c.nn import GPT, GPTConfig

CONFIGS = {
    # nanoGPT's Shakespeare-char baby GPT at llm.c-tutorial size, and the 6x6x384 one
    "small": (dict(n_layer=4, n_head=4, n_embd=128, vocab_size=65, block_size=64), 12, 64),
    "medium": (dict(n_layer=6, n_head=6, n_embd=384, vocab_size=65, block_size=256), 4, 256),
}


def torch_gpt(torch, cfg, params):
    """A GPT-2-style torch.nn.Module with the weights of ``params`` (pre-LN, learned
    positions, tanh GELU, tied head, SDPA causal attention): what a PyTorch user writes."""
    nn, TF = torch.nn, torch.nn.functional

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            C = cfg.n_embd
            self.ln_1, self.ln_2 = nn.LayerNorm(C), nn.LayerNorm(C)
            self.c_attn, self.attn_proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
            self.c_fc, self.mlp_proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

        def forward(self, x):
            B, T, C = x.shape
            q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
            q, k, v = (t.view(B, T, cfg.n_head, C // cfg.n_head).transpose(1, 2) for t in (q, k, v))
            y = TF.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.attn_proj(y.transpose(1, 2).reshape(B, T, C))
            return x + self.mlp_proj(TF.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
            self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
            self.h = nn.ModuleList([Block() for _ in range(cfg.n_layer)])
            self.ln_f = nn.LayerNorm(cfg.n_embd)

        def forward(self, idx, targets):
            T = idx.shape[1]
            x = self.wte(idx) + self.wpe(torch.arange(T))
            for block in self.h:
                x = block(x)
            logits = self.ln_f(x) @ self.wte.weight.T
            return TF.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))

    model = Model()
    with torch.no_grad():
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
        model.wte.weight.copy_(t(params["wte"]["weight"]))
        model.wpe.weight.copy_(t(params["wpe"]["weight"]))
        model.ln_f.weight.copy_(t(params["ln_f"]["weight"]))
        model.ln_f.bias.copy_(t(params["ln_f"]["bias"]))
        for blk, h in zip(model.h, params["h"]):
            pairs = [(blk.ln_1, h["ln_1"]), (blk.ln_2, h["ln_2"]),
                     (blk.c_attn, h["attn"]["c_attn"]),
                     (blk.attn_proj, h["attn"]["c_proj"]), (blk.c_fc, h["mlp"]["c_fc"]),
                     (blk.mlp_proj, h["mlp"]["c_proj"])]
            for mod, p in pairs:
                mod.weight.copy_(t(p["weight"]))
                mod.bias.copy_(t(p["bias"]))
    return model


def run(names, threads, repeats, peaks=None):
    """One record per (config, threads), see the module doc. peaks: {threads: a record of
    benchmarks.peak.run} to add the MFU against (none for a thread count not in it)."""
    peaks = peaks or {}
    try:
        import torch
    except ImportError:
        torch = None
    for name in names:
        kw, B, T = CONFIGS[name]
        cfg = GPTConfig(**kw)
        model = GPT.create(cfg, np.random.default_rng(0))
        r = np.random.default_rng(1)
        x = r.integers(0, cfg.vocab_size, (B, T))
        y = r.integers(0, cfg.vocab_size, (B, T))
        tm = None
        if torch is not None:
            tm = torch_gpt(torch, cfg, model.parameters)
            tx, ty = torch.from_numpy(x), torch.from_numpy(y)
            opt = torch.optim.AdamW(tm.parameters(), lr=1e-4)
        flat = model.flat_parameters
        exp_avg, exp_avg_sq = np.zeros_like(flat), np.zeros_like(flat)
        step = [0]

        def tc_step():
            return model.loss_and_grads(x, y)

        def tc_train_step():
            model.loss_and_grads(x, y)
            step[0] += 1
            tc.functional.adamw_update_(flat, model.flat_grads, exp_avg, exp_avg_sq, step=step[0],
                                        lr=1e-4)

        def torch_step():
            tm.zero_grad(set_to_none=True)
            tm(tx, ty).backward()

        def torch_train_step():
            torch_step()
            opt.step()

        check = {}
        if tm is not None:  # the same loss from the same weights (before any update)
            loss_tc = tc_step()[0]
            with torch.no_grad():
                loss_torch = tm(tx, ty).item()
            check = {"loss_tc": round(loss_tc, 6), "loss_torch": round(loss_torch, 6)}
            assert math.isclose(loss_tc, loss_torch, rel_tol=1e-4), (loss_tc, loss_torch)
        for t in threads:
            set_threads(t)
            rec = {"bench": "gpt_loss_and_grads", "config": name, **kw, "B": B, "T": T,
                   "dtype": "float32", "threads": t, "params": model.num_parameters,
                   "attention": "tc_attention_* (tiled)", "data_parallel": tc.get_data_parallel(),
                   "activation_bytes_per_token": model.activation_bytes(B, T) // (B * T),
                   "activation_mib": round(model.activation_bytes(B, T) / 2**20, 1)}
            rec.update(check)
            # tc and torch alternate sample by sample, so a machine shared with other work
            # slows both alike; the median and the best of the samples are reported
            fns = {"tc": tc_step, "tc_adamw": tc_train_step}
            if tm is not None:
                fns.update(torch=torch_step, torch_adamw=torch_train_step)
            samples = {k: [] for k in fns}
            for fn in fns.values():
                fn()
                fn()
            for _ in range(repeats):
                for k, fn in fns.items():
                    samples[k].append(median_time(fn, repeats=1, warmup=0, min_time=0.2))
            for k, times in samples.items():
                rec[f"{k}_ms"] = round(statistics.median(times) * 1e3, 2)
                rec[f"{k}_best_ms"] = round(min(times) * 1e3, 2)
            # loss_and_grads alone, and the whole training step (+ AdamW: the measure)
            rec["tc_tokens_per_s"] = round(B * T / (rec["tc_ms"] / 1e3))
            rec["tc_step_tokens_per_s"] = round(B * T / (rec["tc_adamw_ms"] / 1e3))
            if tm is not None:
                rec["torch_tokens_per_s"] = round(B * T / (rec["torch_ms"] / 1e3))
                rec["torch_step_tokens_per_s"] = round(B * T / (rec["torch_adamw_ms"] / 1e3))
                rec["speedup_vs_torch"] = round(rec["torch_ms"] / rec["tc_ms"], 3)
                rec["speedup_vs_torch_best"] = round(rec["torch_best_ms"] / rec["tc_best_ms"], 3)
                rec["step_speedup_vs_torch"] = round(rec["torch_adamw_ms"] / rec["tc_adamw_ms"], 3)
                rec["step_speedup_vs_torch_best"] = round(
                    rec["torch_adamw_best_ms"] / rec["tc_adamw_best_ms"], 3)
            rec["gflop_per_step"] = round(step_flops(cfg, B, T) / 1e9, 3)
            if t in peaks:  # MFU: the step's matrix-product FLOPs against the measured peak
                p = peaks[t]
                rec["peak_gflops"], rec["peak_kernel"] = p["peak_gflops"], p["kernel"]
                for k in ("tc", "torch"):
                    for sfx, ms_key in (("", f"{k}_ms"), ("_best", f"{k}_best_ms")):
                        if ms_key in rec:
                            rec[f"{k}_mfu{sfx}"] = round(mfu(step_flops(cfg, B, T), rec[ms_key],
                                                             p["peak_gflops"]), 4)
            rec["load_avg_1min"] = os.getloadavg()[0]
            rec["peak_rss_mib"] = round(peak_rss_mib(), 1)
            emit(rec)


def rss_child(name, lib, threads, steps=3):
    """One library alone in this process: build the model, run `steps` training steps
    (loss_and_grads + AdamW, or torch forward/backward + AdamW), print the peak RSS."""
    import json
    import resource

    kw, B, T = CONFIGS[name]
    cfg = GPTConfig(**kw)
    model = GPT.create(cfg, np.random.default_rng(0))
    r = np.random.default_rng(1)
    x = r.integers(0, cfg.vocab_size, (B, T))
    y = r.integers(0, cfg.vocab_size, (B, T))
    if lib == "tc":
        tc.set_num_threads(threads)  # (benchmarks.common.set_threads would import torch)
        flat = model.flat_parameters
        m1, m2 = np.zeros_like(flat), np.zeros_like(flat)
        for k in range(1, steps + 1):
            model.loss_and_grads(x, y)
            tc.functional.adamw_update_(flat, model.flat_grads, m1, m2, step=k, lr=1e-4)
    else:
        import torch

        set_threads(threads)
        tm = torch_gpt(torch, cfg, model.parameters)
        del model  # only the torch model's own memory from here on
        opt = torch.optim.AdamW(tm.parameters(), lr=1e-4)
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        for _ in range(steps):
            tm.zero_grad(set_to_none=True)
            tm(tx, ty).backward()
            opt.step()
    print(json.dumps({"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def run_rss(names, threads):
    """Peak RSS of the training step, each library alone in a fresh process (in one shared
    process the larger one hides the other): the torch process imports torch, the
    transformer_c one does not."""
    import json
    import subprocess
    import sys

    for name in names:
        for t in threads:
            rec = {"bench": "gpt_train_step_peak_rss", "config": name, "threads": t}
            for lib in ("tc", "torch"):
                out = subprocess.run([sys.executable, "-m", "benchmarks.gpt", "--rss-child", lib,
                                      "--configs", name, "--threads", str(t)],
                                     capture_output=True, text=True, check=True)
                rec[f"{lib}_peak_rss_mib"] = round(json.loads(out.stdout.splitlines()[-1])
                                                   ["peak_rss_mib"], 1)
            rec["rss_ratio_tc_over_torch"] = round(rec["tc_peak_rss_mib"] /
                                                   rec["torch_peak_rss_mib"], 3)
            emit(rec)


BLOCK_VARIANTS = {
    "base": lambda kw: {},
    "relu": lambda kw: dict(activation="relu"),  # today's activation without a fused pair
    "relu2": lambda kw: dict(activation="relu2"),
    "swiglu": lambda kw: dict(gated=True, activation="silu", n_inner=8 * kw["n_embd"] // 3),
    "gqa_half": lambda kw: dict(n_kv_head=kw["n_head"] // 2),
    "mqa": lambda kw: dict(n_kv_head=1),
    "swiglu_gqa": lambda kw: dict(gated=True, activation="silu", n_inner=8 * kw["n_embd"] // 3,
                                  n_kv_head=kw["n_head"] // 2),
    "qk_norm": lambda kw: dict(qk_norm=True),
    "qk_norm_gqa": lambda kw: dict(qk_norm=True, n_kv_head=kw["n_head"] // 2),
}


def mfu(flops, ms, peak_gflops):
    """Model FLOP utilisation: flops done in ms milliseconds, over peak_gflops GFLOP/s."""
    return flops / (ms / 1e3) / (peak_gflops * 1e9)


def step_flops(cfg, B, T):
    """Matrix-product FLOPs of one loss_and_grads of cfg on (B, T): 3 x the forward's (the
    backward's two products per forward product); the forward per token and layer: q, k, v
    (C + 2 KC wide), c_proj, the MLP's two (gated: three) products, causal attention's
    scores and weighted sum over T/2 keys on average; the head. So 6 x the matrix-multiply
    weights x tokens plus 6 T C per token and layer: for medium (6 x 384, B 4, T 256, V 65)
    6 x 10,641,792 x 1024 + 6 x 6 x 256 x 384 x 1024 = 65.38 + 3.62 = 69.01 GFLOP (the
    6 N D rule with all 10,770,816 parameters, embeddings and norms included, gives 66.18;
    with the non-causal 12 L C T attention term 73.42)."""
    C, H, KC = cfg.n_embd, cfg.hidden_size, cfg.kv_heads * cfg.head_size
    layer = 2 * C * (C + 2 * KC) + 2 * C * C + 2 * C * H * (3 if cfg.gated else 2) + 2 * T * C
    return 3 * B * T * (cfg.n_layer * layer + 2 * C * cfg.vocab_size)


def run_blocks(names, threads, repeats):
    """--blocks: the variants of BLOCK_VARIANTS interleaved (see the module doc)."""
    for name in names:
        kw, B, T = CONFIGS[name]
        r = np.random.default_rng(1)
        x = r.integers(0, kw["vocab_size"], (B, T))
        y = r.integers(0, kw["vocab_size"], (B, T))
        models = {}
        for v, extra in BLOCK_VARIANTS.items():
            cfg = GPTConfig(**kw, **extra(kw))
            models[v] = (cfg, GPT.create(cfg, np.random.default_rng(0)))
        for t in threads:
            set_threads(t)
            fns = {v: (lambda m=m: m.loss_and_grads(x, y)) for v, (_, m) in models.items()}
            if t == 1:  # CPU time: the work done, whatever share of a core a busy machine gives
                times = cpu_times(fns, repeats=repeats)
            else:
                samples = {v: [] for v in fns}
                for fn in fns.values():
                    fn()
                for _ in range(repeats):
                    for v, fn in fns.items():
                        samples[v].append(median_time(fn, repeats=1, warmup=0, min_time=0.2))
                times = {v: (statistics.median(x_), min(x_)) for v, x_ in samples.items()}
            base = None
            for v, (cfg, m) in models.items():
                ms = times[v][0] * 1e3
                gflops = step_flops(cfg, B, T) / (ms / 1e3) / 1e9
                base = gflops if base is None else base
                emit({"bench": "gpt_blocks", "config": name, "variant": v,
                      **BLOCK_VARIANTS[v](kw), "B": B, "T": T, "threads": t,
                      "clock": "cpu" if t == 1 else "wall",
                      "params": m.num_parameters, "ms": round(ms, 2),
                      "best_ms": round(times[v][1] * 1e3, 2),
                      "gflop_per_step": round(step_flops(cfg, B, T) / 1e9, 3),
                      "gflops": round(gflops, 2), "per_flop_vs_base": round(gflops / base, 3),
                      "load_avg_1min": os.getloadavg()[0]})


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--threads", type=int, nargs="+", default=[2])
    p.add_argument("--configs", nargs="+", default=["small", "medium"], choices=sorted(CONFIGS))
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--rss", action="store_true",
                   help="measure peak RSS instead: each library alone in a fresh process")
    p.add_argument("--rss-child", choices=["tc", "torch"], help=argparse.SUPPRESS)
    p.add_argument("--blocks", action="store_true",
                   help="the fast path with the block options (relu2, SwiGLU, GQA), interleaved")
    p.add_argument("--no-peak", action="store_true",
                   help="skip the peak FLOP/s measurement (benchmarks.peak) and the MFU")
    p.add_argument("--one-pass", action="store_true",
                   help="transformer_c without its data-parallel split (tc.set_data_parallel)")
    a = p.parse_args(argv)
    if a.one_pass:
        tc.set_data_parallel(False)
    if a.rss_child:
        rss_child(a.configs[0], a.rss_child, a.threads[0])
    elif a.rss:
        run_rss(a.configs, a.threads)
    elif a.blocks:
        run_blocks(a.configs, a.threads, a.repeats)
    else:
        peaks = {}
        if not a.no_peak:
            from benchmarks import peak
            peaks = {r["threads"]: r for r in peak.run(a.threads)}
        run(a.configs, a.threads, a.repeats, peaks)


if __name__ == "__main__":
    main()
