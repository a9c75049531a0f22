"""GPT decoding speed: tokens/s of greedy generation, batch 1, with transformer_c's KV cache
(prefill once, then one C call per token: ``transformer_c.generate.GPTModel``), without a
cache (every step reruns GPT.forward on the whole prefix, the C fast path), and with an
equivalent PyTorch model that keeps its own KV cache (preallocated (L, B, NH, Smax, HS)
tensors, SDPA over the filled prefix), same weights (float32), same thread count, in one
process.

python -m benchmarks.decode [--threads 1 2] [--new-tokens 256] [--prompt-len 16]
                            [--repeats 5] [--no-uncached]

Every loop is the same Python greedy loop (argmax of the last logits, fed back): tc_cached
calls the C decoder directly, torch_cached runs the torch twin under inference_mode,
tc_uncached calls GPT.forward on the prefix. ``tc_generate`` is the library's
``generate(gpt, ...)`` end to end (its decoder bookkeeping included). Cached samples of tc
and torch alternate (a machine shared with other work slows both alike); the median and
best are reported, with the 1-minute load average. Before timing, the tokens and logits of
all three paths are checked against each other.
"""
import argparse
import os
import statistics
import time

import numpy as np

import transformer_c as tc
from benchmarks.common import emit, peak_rss_mib, set_threads
from transformer_c import _C
from transformer_c.generate import GPTModel, generate
from transformer_c.nn import GPT, GPTConfig

CONFIG = dict(n_layer=6, n_head=6, n_embd=384, vocab_size=65, block_size=512)


def torch_kv_gpt(torch, cfg, params, max_batch, max_len):
    """A GPT-2-style PyTorch model (pre-LN, learned positions, tanh GELU, tied head) with the
    weights of ``params`` and a KV cache: ``prefill(idx (B, T)) -> logits (B, V)`` runs the
    prompt and stores every layer's keys and values; ``step(tokens (B,)) -> logits (B, V)``
    appends one token per row. What a PyTorch user writes for cached decoding."""
    nn, TF = torch.nn, torch.nn.functional
    C, NH = cfg.n_embd, cfg.n_head
    HS = C // NH

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.ln_2 = nn.LayerNorm(C, eps=cfg.layer_norm_epsilon), \
                nn.LayerNorm(C, eps=cfg.layer_norm_epsilon)
            self.c_attn, self.attn_proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
            self.c_fc, self.mlp_proj = nn.Linear(C, cfg.hidden_size), \
                nn.Linear(cfg.hidden_size, C)

        def forward(self, x, k_cache, v_cache, pos):
            B, T, _ = x.shape
            q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
            q, k, v = (t.view(B, T, NH, HS).transpose(1, 2) for t in (q, k, v))
            k_cache[:B, :, pos:pos + T] = k
            v_cache[:B, :, pos:pos + T] = v
            keys, values = k_cache[:B, :, :pos + T], v_cache[:B, :, :pos + T]
            # a prompt attends causally; one new token sees every cached position
            y = TF.scaled_dot_product_attention(q, keys, values, is_causal=T > 1)
            x = x + self.attn_proj(y.transpose(1, 2).reshape(B, T, C))
            return x + self.mlp_proj(TF.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(cfg.vocab_size, C)
            self.wpe = nn.Embedding(cfg.block_size, C)
            self.h = nn.ModuleList([Block() for _ in range(cfg.n_layer)])
            self.ln_f = nn.LayerNorm(C, eps=cfg.layer_norm_epsilon)
            shape = (cfg.n_layer, max_batch, NH, max_len, HS)
            self.register_buffer("k_cache", torch.zeros(shape), persistent=False)
            self.register_buffer("v_cache", torch.zeros(shape), persistent=False)
            self.pos = 0

        def _run(self, idx):
            T = idx.shape[1]
            if self.pos + T > max_len:
                raise ValueError("the KV cache is full")
            x = self.wte(idx) + self.wpe(torch.arange(self.pos, self.pos + T))
            for layer, block in enumerate(self.h):
                x = block(x, self.k_cache[layer], self.v_cache[layer], self.pos)
            self.pos += T
            return self.ln_f(x[:, -1]) @ self.wte.weight.T

        def prefill(self, idx):
            self.pos = 0
            return self._run(idx)

        def step(self, tokens):
            return self._run(tokens[:, None])

    assert cfg.position == "learned" and cfg.norm == "pre" and cfg.bias and \
        cfg.tie_embeddings and cfg.activation == "gelu_tanh", "the twin covers GPT-2's options"
    model = Model().eval()
    with torch.no_grad():
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
        model.wte.weight.copy_(t(params["wte"]["weight"]))
        model.wpe.weight.copy_(t(params["wpe"]["weight"]))
        model.ln_f.weight.copy_(t(params["ln_f"]["weight"]))
        model.ln_f.bias.copy_(t(params["ln_f"]["bias"]))
        for blk, h in zip(model.h, params["h"]):
            for mod, p in [(blk.ln_1, h["ln_1"]), (blk.ln_2, h["ln_2"]),
                           (blk.c_attn, h["attn"]["c_attn"]), (blk.attn_proj, h["attn"]["c_proj"]),
                           (blk.c_fc, h["mlp"]["c_fc"]), (blk.mlp_proj, h["mlp"]["c_proj"])]:
                mod.weight.copy_(t(p["weight"]))
                mod.bias.copy_(t(p["bias"]))
    return model


def make_gpt(cfg, seed=0):
    """A GPT whose greedy output is not a constant: GPT-2 init, then the weights scaled up
    so the next-token distribution is peaked and depends on the context."""
    model = GPT.create(cfg, np.random.default_rng(seed)).eval()
    r = np.random.default_rng(seed + 1)
    for name, leaf in model.state_dict().items():
        if name.endswith("bias"):
            leaf[...] = r.normal(0.0, 0.1, leaf.shape)
        elif "ln_" not in name:
            leaf *= 10.0
    return model


# ------------------------------------------------------------------ the three greedy loops

def tc_cached(model, prompt, n):
    dec = _C.gpt_kv_create(model.flat_parameters, model.config.c_fields(), 1,
                           prompt.size + n - 1)
    logits = _C.gpt_kv_prefill(dec, prompt[None], np.zeros(1, np.int64))
    out, trace = [], []
    for i in range(n):
        tok = int(np.argmax(logits[0]))
        out.append(tok)
        trace.append(logits[0])
        if i < n - 1:
            logits = _C.gpt_kv_step(dec, np.array([tok]))
    return out, trace


def tc_uncached(model, prompt, n):
    seq = list(prompt.tolist())
    out, trace = [], []
    for i in range(n):
        logits = model.forward(np.array([seq]))[0, -1]
        tok = int(np.argmax(logits))
        out.append(tok)
        trace.append(logits)
        seq.append(tok)
    return out, trace


def torch_cached(torch, twin, prompt, n):
    out, trace = [], []
    with torch.inference_mode():
        logits = twin.prefill(torch.from_numpy(prompt[None]))
        for i in range(n):
            tok = int(torch.argmax(logits[0]))
            out.append(tok)
            trace.append(logits[0])
            if i < n - 1:
                logits = twin.step(torch.tensor([tok]))
    return out, [t.numpy() for t in trace]


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run(threads, n, prompt_len, repeats, uncached):
    try:
        import torch
    except ImportError:
        torch = None
    cfg = GPTConfig(**CONFIG)
    model = make_gpt(cfg)
    prompt = np.random.default_rng(2).integers(0, cfg.vocab_size, prompt_len).astype(np.int64)
    twin = torch_kv_gpt(torch, cfg, model.parameters, 1, prompt_len + n) if torch else None

    # the same tokens and (to float32 rounding) logits on every path, before any timing
    ref_tokens, ref_logits = tc_cached(model, prompt, n)
    check = {"distinct_tokens": len(set(ref_tokens))}
    if twin is not None:
        tt, tl = torch_cached(torch, twin, prompt, n)
        check["same_tokens_as_torch"] = tt == ref_tokens
        check["max_logit_diff_vs_torch"] = float(max(np.abs(a - b).max()
                                                     for a, b in zip(ref_logits, tl)))
    gen = generate(model, [prompt], max_new_tokens=n)
    check["generate_same_tokens"] = gen.tokens[0].tolist() == ref_tokens
    assert isinstance(tc.generate.as_model(model), GPTModel)

    for t in threads:
        set_threads(t)
        rec = {"bench": "gpt_decode", **CONFIG, "dtype": "float32", "threads": t, "batch": 1,
               "prompt_len": prompt_len, "new_tokens": n, "params": model.num_parameters,
               **check}
        fns = {"tc_cached": lambda: tc_cached(model, prompt, n),
               "tc_generate": lambda: generate(model, [prompt], max_new_tokens=n)}
        if twin is not None:
            fns["torch_cached"] = lambda: torch_cached(torch, twin, prompt, n)
        samples = {k: [] for k in fns}
        for fn in fns.values():
            fn()
        for _ in range(repeats):
            for k, fn in fns.items():
                samples[k].append(timed(fn))
        if uncached:
            tokens, logits = tc_uncached(model, prompt, n)  # warm-up and check
            rec["uncached_same_tokens"] = tokens == ref_tokens
            rec["uncached_max_logit_diff"] = float(max(np.abs(a - b).max()
                                                       for a, b in zip(ref_logits, logits)))
            samples["tc_uncached"] = [timed(lambda: tc_uncached(model, prompt, n))
                                      for _ in range(max(1, repeats // 3))]
        for k, times in samples.items():
            rec[f"{k}_s"] = round(statistics.median(times), 4)
            rec[f"{k}_tokens_per_s"] = round(n / statistics.median(times), 1)
            rec[f"{k}_best_tokens_per_s"] = round(n / min(times), 1)
        if uncached:
            rec["cache_speedup"] = round(rec["tc_uncached_s"] / rec["tc_cached_s"], 2)
        if twin is not None:
            rec["speedup_vs_torch"] = round(rec["torch_cached_s"] / rec["tc_cached_s"], 3)
            rec["speedup_vs_torch_best"] = round(
                rec["tc_cached_best_tokens_per_s"] / rec["torch_cached_best_tokens_per_s"], 3)
            rec["speedup_vs_torch_paired"] = round(statistics.median(
                a / b for a, b in zip(samples["torch_cached"], samples["tc_cached"])), 3)
        rec["kv_cache_mib"] = round(2 * cfg.n_layer * (prompt_len + n - 1) * cfg.n_embd * 4
                                    / 2 ** 20, 2)
        rec["load_avg_1min"] = os.getloadavg()[0]
        rec["peak_rss_mib"] = round(peak_rss_mib(), 1)
        emit(rec)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--new-tokens", type=int, default=256)
    p.add_argument("--prompt-len", type=int, default=16)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--no-uncached", action="store_true", help="skip the slow uncached runs")
    a = p.parse_args(argv)
    run(a.threads, a.new_tokens, a.prompt_len, a.repeats, not a.no_uncached)


if __name__ == "__main__":
    main()
