"""Encoder-decoder training step: transformer_c's EncoderDecoder.loss_and_grads (the whole
forward + backward in C) against the same model in PyTorch eager, built the way a PyTorch
user would (nn.TransformerEncoderLayer / nn.TransformerDecoderLayer, batch_first, pre-LN,
with the weights copied in; forward + cross-entropy + backward), float32, same thread count,
same padded batch, in one process.

python -m benchmarks.encdec [--threads 1 2] [--configs small base] [--repeats 7]

One JSON line per (config, threads): ms per step (median and best of the samples, tc and
torch alternating) and target tokens/s for both, their ratio, the activation arena's bytes
per (source + target) token, and the 1-minute load average (the numbers mean little on a
busy machine).
"""
import argparse
import math
import os
import statistics

import numpy as np

from benchmarks.common import emit, median_time, peak_rss_mib, set_threads
from transformer_c.nn import EncoderDecoder, EncoderDecoderConfig

CONFIGS = {
    # (config, B, S, T): sources and targets padded to S and T (lengths drawn in [S/2, S])
    "small": (dict(src_vocab_size=1000, n_encoder_layer=3, n_decoder_layer=3, n_head=4,
                   n_embd=128, block_size=64), 16, 32, 32),
    "base": (dict(src_vocab_size=8000, n_encoder_layer=6, n_decoder_layer=6, n_head=8,
                  n_embd=512, block_size=128), 8, 64, 64),
}
COMMON = dict(dropout=0.0, position="learned", norm="pre", activation="relu",
              share_embeddings=True, tie_embeddings=True, pad_id=0)


def torch_model(torch, cfg, params):
    """A torch.nn.Module of the same model with the weights of ``params``."""
    nn, TF = torch.nn, torch.nn.functional
    C, H = cfg.n_embd, cfg.hidden_size

    def layer(decoder):
        cls = nn.TransformerDecoderLayer if decoder else nn.TransformerEncoderLayer
        return cls(C, cfg.n_head, H, dropout=0.0, activation="relu", batch_first=True,
                   norm_first=True)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(cfg.src_vocab_size, C)
            self.enc_wpe = nn.Embedding(cfg.block_size, C)
            self.dec_wpe = nn.Embedding(cfg.block_size, C)
            self.enc = nn.ModuleList([layer(False) for _ in range(cfg.n_encoder_layer)])
            self.dec = nn.ModuleList([layer(True) for _ in range(cfg.n_decoder_layer)])
            self.enc_ln, self.dec_ln = nn.LayerNorm(C), nn.LayerNorm(C)

        def forward(self, src, src_pad, tgt_in, tgt_out):
            S, T = src.shape[1], tgt_in.shape[1]
            x = self.wte(src) + self.enc_wpe(torch.arange(S))
            for blk in self.enc:
                x = blk(x, src_key_padding_mask=src_pad)
            memory = self.enc_ln(x)
            y = self.wte(tgt_in) + self.dec_wpe(torch.arange(T))
            causal = nn.Transformer.generate_square_subsequent_mask(T)
            for blk in self.dec:
                y = blk(y, memory, tgt_mask=causal, tgt_is_causal=True,
                        memory_key_padding_mask=src_pad)
            logits = self.dec_ln(y) @ self.wte.weight.T
            return TF.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt_out.reshape(-1),
                                    ignore_index=cfg.pad_id)

    model = Model()
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    with torch.no_grad():
        def copy(mod, p):
            mod.weight.copy_(t(p["weight"]))
            mod.bias.copy_(t(p["bias"]))

        model.wte.weight.copy_(t(params["wte"]["weight"]))
        model.enc_wpe.weight.copy_(t(params["encoder"]["wpe"]["weight"]))
        model.dec_wpe.weight.copy_(t(params["decoder"]["wpe"]["weight"]))
        copy(model.enc_ln, params["encoder"]["ln_f"])
        copy(model.dec_ln, params["decoder"]["ln_f"])
        for blk, h in zip(list(model.enc) + list(model.dec),
                          params["encoder"]["h"] + params["decoder"]["h"]):
            blk.self_attn.in_proj_weight.copy_(t(h["attn"]["c_attn"]["weight"]))
            blk.self_attn.in_proj_bias.copy_(t(h["attn"]["c_attn"]["bias"]))
            copy(blk.self_attn.out_proj, h["attn"]["c_proj"])
            copy(blk.linear1, h["mlp"]["c_fc"])
            copy(blk.linear2, h["mlp"]["c_proj"])
            copy(blk.norm1, h["ln_1"])
            if "crossattention" in h:
                x = h["crossattention"]
                blk.multihead_attn.in_proj_weight.copy_(
                    t(np.concatenate([x["q_attn"]["weight"], x["c_attn"]["weight"]])))
                blk.multihead_attn.in_proj_bias.copy_(
                    t(np.concatenate([x["q_attn"]["bias"], x["c_attn"]["bias"]])))
                copy(blk.multihead_attn.out_proj, x["c_proj"])
                copy(blk.norm2, h["ln_cross_attn"])
                copy(blk.norm3, h["ln_2"])
            else:
                copy(blk.norm2, h["ln_2"])
    return model


def make_batch(cfg, B, S, T, seed=1):
    r = np.random.default_rng(seed)
    V = cfg.src_vocab_size
    src_len, tgt_len = r.integers(S // 2, S + 1, B), r.integers(T // 2, T + 1, B)
    src = r.integers(1, V, (B, S))
    src[np.arange(S)[None] >= src_len[:, None]] = cfg.pad_id
    tin, tout = r.integers(1, V, (B, T)), r.integers(1, V, (B, T))
    pad = np.arange(T)[None] >= tgt_len[:, None]
    tin[pad], tout[pad] = cfg.pad_id, cfg.pad_id
    return src, src_len, tin, tout


def run(names, threads, repeats):
    try:
        import torch
    except ImportError:
        torch = None
    for name in names:
        kw, B, S, T = CONFIGS[name]
        cfg = EncoderDecoderConfig(**kw, **COMMON)
        model = EncoderDecoder.create(cfg, np.random.default_rng(0))
        src, src_len, tin, tout = make_batch(cfg, B, S, T)

        def tc_step():
            return model.loss_and_grads(src, tin, tout, src_lengths=src_len)

        tm = None
        check = {}
        if torch is not None:
            tm = torch_model(torch, cfg, model.parameters)
            args = (torch.from_numpy(src), torch.from_numpy(np.arange(S)[None] >= src_len[:, None]),
                    torch.from_numpy(tin), torch.from_numpy(tout))

            def torch_step():
                tm.zero_grad(set_to_none=True)
                tm(*args).backward()

            loss_tc = tc_step()[0]  # the same loss from the same weights
            with torch.no_grad():
                loss_torch = tm(*args).item()
            check = {"loss_tc": round(loss_tc, 6), "loss_torch": round(loss_torch, 6)}
            assert math.isclose(loss_tc, loss_torch, rel_tol=1e-4), (loss_tc, loss_torch)
        for t in threads:
            set_threads(t)
            rec = {"bench": "encdec_loss_and_grads", "config": name, **kw, "B": B, "S": S,
                   "T": T, "dtype": "float32", "threads": t, "params": model.num_parameters,
                   "real_src_tokens": int(src_len.sum()), "real_tgt_tokens": int((tout != 0).sum()),
                   "activation_bytes_per_token":
                       model.activation_bytes(B, S, T) // (B * S + B * T),
                   "activation_mib": round(model.activation_bytes(B, S, T) / 2**20, 1)}
            rec.update(check)
            fns = {"tc": tc_step}
            if tm is not None:
                fns["torch"] = torch_step
            samples = {k: [] for k in fns}
            for fn in fns.values():
                fn()
                fn()
            for _ in range(repeats):  # alternating samples: a busy machine slows both alike
                for k, fn in fns.items():
                    samples[k].append(median_time(fn, repeats=1, warmup=0, min_time=0.2))
            for k, times in samples.items():
                rec[f"{k}_ms"] = round(statistics.median(times) * 1e3, 2)
                rec[f"{k}_best_ms"] = round(min(times) * 1e3, 2)
            rec["tc_tgt_tokens_per_s"] = round(B * T / (rec["tc_ms"] / 1e3))
            if tm is not None:
                rec["torch_tgt_tokens_per_s"] = round(B * T / (rec["torch_ms"] / 1e3))
                rec["speedup_vs_torch"] = round(rec["torch_ms"] / rec["tc_ms"], 3)
                rec["speedup_vs_torch_best"] = round(rec["torch_best_ms"] / rec["tc_best_ms"], 3)
            rec["load_avg_1min"] = os.getloadavg()[0]
            rec["peak_rss_mib"] = round(peak_rss_mib(), 1)
            emit(rec)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--threads", type=int, nargs="+", default=[2])
    p.add_argument("--configs", nargs="+", default=["small"], choices=sorted(CONFIGS))
    p.add_argument("--repeats", type=int, default=7)
    a = p.parse_args(argv)
    run(a.configs, a.threads, a.repeats)


if __name__ == "__main__":
    main()
