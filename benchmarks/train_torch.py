"""The PyTorch twin of ``transformer_c train``: the same training run in PyTorch eager.

    python -m benchmarks.train_torch --data ../shared/data/tinyshakespeare.txt \
        --preset shakespeare-4x128 --threads 2

Same everything as ``python -m transformer_c train --data FILE --preset NAME``: the character
tokenizer (transformer_c.data.CharTokenizer, specials included), the 90/10 split, the
initial weights (copied from transformer_c.nn.GPT.create with the same seed, so the GPT-2
init scheme and the very same numbers), the training windows (the same NumPy generator draws
the same starts each step), the model (pre-LN, learned positions, tanh GELU, tied head,
SDPA causal attention, biases as the preset says), AdamW with weight decay on the linear
weights only (betas, eps, weight decay, the warmup + cosine schedule of
transformer_c.schedules), global-norm clipping, and evaluation on the same evenly spaced
windows every eval_every steps. At the end: the loss over every non-overlapping window of
the validation split (what ``transformer_c eval`` reports).

Prints one JSON line: the final and best validation losses, the training time (steps only)
and the wall time (steps + evaluations), tokens/s, and the load average before and after (the
machine is shared: the numbers mean little when it is busy).
"""
import argparse
import math
import os
import time

import numpy as np

from benchmarks.common import emit
from transformer_c.data import CharTokenizer, StreamDataset, read_text, split_text
from transformer_c.nn import GPT, GPTConfig
from transformer_c.presets import ARCH_DEFAULTS, PRESETS
from transformer_c.train import TrainConfig, _window_starts


def torch_model(torch, cfg, params):
    nn, TF = torch.nn, torch.nn.functional
    C, bias = cfg.n_embd, cfg.bias

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.ln_2 = nn.LayerNorm(C, bias=bias), nn.LayerNorm(C, bias=bias)
            self.c_attn = nn.Linear(C, 3 * C, bias=bias)
            self.attn_proj = nn.Linear(C, C, bias=bias)
            self.c_fc = nn.Linear(C, 4 * C, bias=bias)
            self.mlp_proj = nn.Linear(4 * C, C, bias=bias)

        def forward(self, x):
            B, T, _ = x.shape
            q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
            q, k, v = (t.view(B, T, cfg.n_head, C // cfg.n_head).transpose(1, 2)
                       for t in (q, k, v))
            y = TF.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.attn_proj(y.transpose(1, 2).reshape(B, T, C))
            return x + self.mlp_proj(TF.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(cfg.vocab_size, C)
            self.wpe = nn.Embedding(cfg.block_size, C)
            self.h = nn.ModuleList([Block() for _ in range(cfg.n_layer)])
            self.ln_f = nn.LayerNorm(C, bias=bias)

        def forward(self, idx, targets):
            T = idx.shape[1]
            x = self.wte(idx) + self.wpe(torch.arange(T))
            for block in self.h:
                x = block(x)
            logits = self.ln_f(x) @ self.wte.weight.T
            return TF.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))

    model = Model()
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    with torch.no_grad():
        model.wte.weight.copy_(t(params["wte"]["weight"]))
        model.wpe.weight.copy_(t(params["wpe"]["weight"]))
        pairs = [(model.ln_f, params["ln_f"])]
        for blk, h in zip(model.h, params["h"]):
            pairs += [(blk.ln_1, h["ln_1"]), (blk.ln_2, h["ln_2"]),
                      (blk.c_attn, h["attn"]["c_attn"]), (blk.attn_proj, h["attn"]["c_proj"]),
                      (blk.c_fc, h["mlp"]["c_fc"]), (blk.mlp_proj, h["mlp"]["c_proj"])]
        for mod, p in pairs:
            mod.weight.copy_(t(p["weight"]))
            if bias:
                mod.bias.copy_(t(p["bias"]))
    return model


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    # the twin is GPT-2's block: presets that set other block options (tiny-llama) have none
    ap.add_argument("--preset", default="shakespeare-4x128",
                    choices=sorted(k for k, p in PRESETS.items()
                                   if all(p[a] == d for a, d in ARCH_DEFAULTS.items())))
    ap.add_argument("--max-iters", type=int, default=None)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)

    import torch
    torch.set_num_threads(a.threads)
    load_before = os.getloadavg()
    s = dict(PRESETS[a.preset])
    if a.max_iters:
        s["max_iters"] = a.max_iters
    text = read_text(a.data)
    tok = CharTokenizer.train(text)
    tr_text, va_text = split_text(text, 0.1)
    T = s["block_size"]
    train, val = StreamDataset(tok.encode(tr_text), T), StreamDataset(tok.encode(va_text), T)
    cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=T, n_layer=s["n_layer"],
                    n_head=s["n_head"], n_embd=s["n_embd"], dropout=s["dropout"],
                    bias=s["bias"])
    assert cfg.dropout == 0, "the twin implements dropout-free training only"
    tcfg = TrainConfig(**{k: s[k] for k in TrainConfig.__dataclass_fields__ if k in s},
                       seed=a.seed)
    init = GPT.create(cfg, np.random.default_rng(a.seed))
    model = torch_model(torch, cfg, init.parameters)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and
             not n.startswith(("wte", "wpe"))]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and
                not n.startswith(("wte", "wpe")))]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": tcfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=tcfg.lr,
                            betas=(tcfg.beta1, tcfg.beta2), eps=tcfg.eps, foreach=False)
    schedule = tcfg.make_schedule()
    rng = np.random.default_rng(a.seed)
    B = tcfg.batch_size

    def eval_loss(data, iters):
        starts = _window_starts(len(data), T, iters * B)
        total, n = 0.0, 0
        model.eval()
        with torch.no_grad():
            for i in range(0, starts.size, B):
                x, y = data.batch_at(starts[i:i + B])
                total += model(torch.from_numpy(x), torch.from_numpy(y)).item() * y.size
                n += y.size
        model.train()
        return total / n

    evals, best = [], math.inf
    t_wall = time.perf_counter()
    train_seconds = 0.0

    def do_eval(step):
        nonlocal best
        tl, vl = eval_loss(train, tcfg.eval_iters), eval_loss(val, tcfg.eval_iters)
        best = min(best, vl)
        evals.append({"step": step, "train_loss": round(tl, 4), "val_loss": round(vl, 4)})
        print(f"step {step}: train loss {tl:.4f}, val loss {vl:.4f}", flush=True)

    do_eval(0)
    for it in range(tcfg.max_iters):
        t0 = time.perf_counter()
        lr = schedule(it)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = train.batch_at(rng.integers(0, len(train), size=B))
        loss = model(torch.from_numpy(x), torch.from_numpy(y))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if tcfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip)
        opt.step()
        train_seconds += time.perf_counter() - t0
        step = it + 1
        if (tcfg.eval_every and step % tcfg.eval_every == 0) or step == tcfg.max_iters:
            do_eval(step)
    wall = time.perf_counter() - t_wall
    full_val = eval_loss(val, 0)
    emit({"bench": "train_torch", "preset": a.preset, "data": os.path.basename(a.data),
          "threads": a.threads, "max_iters": tcfg.max_iters, "batch_size": B, "block_size": T,
          "params": sum(p.numel() for p in model.parameters()),
          "final_val_loss": evals[-1]["val_loss"], "best_val_loss": round(best, 4),
          "full_val_loss": round(full_val, 4), "train_seconds": round(train_seconds, 1),
          "wall_seconds": round(wall, 1),
          "tokens_per_s": round(tcfg.max_iters * B * T / train_seconds),
          "load_avg_before": [round(v, 2) for v in load_before],
          "load_avg_after": [round(v, 2) for v in os.getloadavg()],
          "torch_version": torch.__version__, "evals": evals})


if __name__ == "__main__":
    main()
