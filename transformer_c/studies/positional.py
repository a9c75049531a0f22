"""Study 1, positional encodings: none vs sinusoidal vs learned vs RoPE.

Four GPTs identical but for ``position`` are trained on Tiny Shakespeare (character level;
the embedded corpus when ../shared/data is absent) for the same number of steps on windows
of L characters, from the same initial weights (where they share parameters) and the same
batches. Each is evaluated on every non-overlapping window of the validation split at the
training length L and at 2L (length extrapolation), and the loss is broken down by position
inside the 2L windows.

2L and the learned table: every model is built with block_size = 2L and trained on windows
of L, so the learned table has 2L rows of which only the first L are ever trained; rows
L..2L-1 keep their initial values (N(0, 0.02^2), no weight decay on wpe). The 2L column of
the learned row is therefore what a learned table does past its training length, which the
notes say. Sinusoidal and RoPE compute positions past L from the same formula; "none" has
no positions at all (only the causal mask).
"""
import math

import numpy as np

from . import register
from ._report import Report

NAME = "positional"
ENCODINGS = ("none", "sinusoidal", "learned", "rope")


def _settings(ctx):
    full = dict(L=64, n_layer=3, n_head=4, n_embd=96, batch_size=24, steps=600, lr=3e-3,
                warmup=60, eval_windows=0)
    quick = dict(L=32, n_layer=2, n_head=2, n_embd=48, batch_size=16, steps=80, lr=3e-3,
                 warmup=10, eval_windows=48)
    return ctx.pick(full, quick)


def _windows(ids, T, count):
    """Evenly spaced non-overlapping windows (x, y) int64 (N, T) of ids (count 0: all)."""
    n = (ids.size - 1) // T
    starts = np.arange(n) * T
    if count and count < n:
        starts = starts[np.linspace(0, n - 1, count).round().astype(np.int64)]
    w = ids[starts[:, None] + np.arange(T + 1)]
    return np.ascontiguousarray(w[:, :-1]), np.ascontiguousarray(w[:, 1:])


def position_losses(model, x, y, batch=64):
    """Mean cross-entropy (nats) at each position t of the windows x, y (N, T): (T,)."""
    from .. import functional as F
    model.eval()
    total = np.zeros(x.shape[1])
    for i in range(0, x.shape[0], batch):
        logits = model.forward(x[i:i + batch])
        total += F.cross_entropy(logits, y[i:i + batch], reduction="none").sum(0)
    return total / x.shape[0]


@register(NAME, "positional encodings: none / sinusoidal / learned / RoPE, ppl at L and 2L")
def study(ctx):
    """Train one GPT per position encoding at a fixed step budget; validation perplexity at
    the training length L and at 2L; returns the Report (rows: ENCODINGS)."""
    from ..nn import GPT, GPTConfig
    from ..train import TrainConfig
    s = _settings(ctx)
    corpus = ctx.shakespeare()
    L = s["L"]
    tcfg = TrainConfig(max_iters=s["steps"], batch_size=s["batch_size"], lr=s["lr"],
                       min_lr=s["lr"] / 10, warmup_iters=s["warmup"], weight_decay=0.1,
                       grad_clip=1.0, seed=ctx.seed, eval_every=0)
    xs, ys = _windows(corpus.val_ids, L, s["eval_windows"])
    x2, y2 = _windows(corpus.val_ids, 2 * L, s["eval_windows"])
    rows, curves, logs = [], {}, {}
    for enc in ENCODINGS:
        cfg = GPTConfig(vocab_size=corpus.vocab_size, block_size=2 * L, n_layer=s["n_layer"],
                        n_head=s["n_head"], n_embd=s["n_embd"], dropout=0.0, position=enc)
        model = GPT.create(cfg, ctx.rng(1))
        log = ctx.train_lm(model, corpus.train_ids, config=tcfg, block_size=L, log_every=10)
        at_l = position_losses(model, xs, ys)
        at_2l = position_losses(model, x2, y2)
        curves[enc], logs[enc] = at_2l, log
        ppl_l, ppl_2l = math.exp(at_l.mean()), math.exp(at_2l.mean())
        rows.append({
            "encoding": enc, "params": model.num_parameters, "steps": log.step,
            "train s": round(log.seconds, 1), "final train loss": log.final_loss(),
            "val ppl @L": ppl_l, "val ppl @2L": ppl_2l,
            "2L vs L %": 100.0 * (ppl_2l / ppl_l - 1.0),
            "ppl @2L, positions < L": math.exp(at_2l[:L].mean()),
            "ppl @2L, positions >= L": math.exp(at_2l[L:].mean()),
        })
    none = next(r for r in rows if r["encoding"] == "none")
    versus = ", ".join(f"{100 * (none['val ppl @L'] / r['val ppl @L'] - 1):+.1f}% against "
                       f"{r['encoding']}" for r in rows if r is not none)
    report = Report(NAME, f"Positional encodings on {corpus.name} (character level): "
                    f"validation perplexity at the training length L = {L} and at 2L = {2 * L}",
                    columns=list(rows[0]), rows=rows)
    report.notes += [
        f"Setup: GPT {s['n_layer']} layers, {s['n_head']} heads, width {s['n_embd']}, "
        f"block_size 2L = {2 * L}, trained {s['steps']} steps of {s['batch_size']} windows of "
        f"L = {L} characters (AdamW, lr {s['lr']} cosine to lr/10, warmup {s['warmup']}, same "
        f"initial weights and batches for all four); evaluated on "
        f"{xs.shape[0]} windows of L and {x2.shape[0]} of 2L of the validation split "
        f"({corpus.name}). ppl = exp(mean cross-entropy per character).",
        f"Without positions the perplexity at L is {none['val ppl @L']:.3f}: {versus}.",
        "The sinusoidal table's entries are of size 1 while the token embeddings start at "
        "std 0.02 (GPT-2's initialisation, no sqrt(C) scaling of the embeddings), so at the "
        "start the position signal swamps the token signal; 'train s' depends on the load "
        "of the shared machine at the time of each run.",
        "Learned at 2L: the model has block_size 2L but was trained on windows of L, so wpe "
        "rows L..2L-1 were never trained (they hold their N(0, 0.02^2) initial values); the "
        "'positions >= L' column isolates them. Sinusoidal and RoPE compute those positions "
        "from their formula; 'none' has no positions to extrapolate.",
    ]
    report.meta["settings"] = s
    report.meta["per_position_loss_2L"] = {k: v.round(5).tolist() for k, v in curves.items()}
    report.meta["train_curves"] = {k: {"steps": v.steps, "losses": v.losses}
                                   for k, v in logs.items()}
    _figures(ctx, report, curves, logs, L)
    return report


def _figures(ctx, report, curves, logs, L):
    fig = ctx.figure(10, 4)
    a, b = fig.subplots(1, 2)
    for enc in ENCODINGS:
        c = curves[enc]
        k = max(1, len(c) // 32)                 # smooth over k positions for readability
        sm = np.convolve(c, np.ones(k) / k, mode="valid")
        a.plot(np.arange(sm.size) + (k - 1) / 2, sm, label=enc)
        b.plot(logs[enc].steps, logs[enc].losses, label=enc, lw=1)
    a.axvline(L - 0.5, color="k", ls="--", lw=1)
    a.text(L, a.get_ylim()[1], " trained length L", va="top", fontsize=9)
    a.set_xlabel("position in the 2L window")
    a.set_ylabel("validation loss (nats / char)")
    a.set_title(f"Loss by position, windows of 2L = {2 * L}")
    a.legend()
    b.set_xlabel("step")
    b.set_ylabel("training loss")
    b.set_title("Training loss")
    b.legend()
    report.add_figure(fig, "positional.png")
