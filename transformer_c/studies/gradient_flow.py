"""Study 2, gradient flow.

(a) ReLU vs GELU: two GPTs identical but for the MLP activation trained on Tiny Shakespeare
    (character level); per layer the gradient norm over training and, at the end, the
    fraction of dead MLP units: units whose activation derivative is below 1e-3 in absolute
    value on every token of a fixed validation batch (for ReLU: never positive), and the
    fraction of (token, unit) pairs with such a derivative ("inactive").
(b) Pre-LN vs post-LN in a deep (12-layer) GPT, with and without learning-rate warmup and
    without gradient clipping: per-layer gradient norms over training, whether the loss
    became non-finite (diverged), and the final losses.

Gradient norms are those of the averaged gradient of each step before any clipping, of the
parameters of each block (ln_1, attention, ln_2, MLP), from Trainer.train_step's on_grads.
"""
import math

import numpy as np

from . import register
from ._report import Report

NAME = "gradient_flow"
DEAD_EPS = 1e-3


def _settings(ctx):
    full = dict(L=64, act=dict(n_layer=6, n_head=4, n_embd=96, batch_size=24, steps=300,
                               lr=3e-3, warmup=30),
                deep=dict(n_layer=12, n_head=4, n_embd=64, batch_size=16, steps=250,
                          lr=2e-3, warmup=80),
                eval_windows=64)
    quick = dict(L=32, act=dict(n_layer=3, n_head=2, n_embd=32, batch_size=8, steps=40,
                                lr=3e-3, warmup=5),
                 deep=dict(n_layer=12, n_head=2, n_embd=16, batch_size=4, steps=25,
                           lr=2e-3, warmup=10),
                 eval_windows=8)
    return ctx.pick(full, quick)


def layer_slices(model):
    """[(start, stop)] of each block's parameters in the model's flat buffer (a block's
    tensors are contiguous there: ln_1, attn, ln_2, mlp)."""
    flat = model.flat_parameters
    base = flat.__array_interface__["data"][0]
    out = []
    for layer in range(model.config.n_layer):
        spans = [((a.__array_interface__["data"][0] - base) // flat.itemsize, a.size)
                 for name, a in model.state_dict().items() if name.startswith(f"h.{layer}.")]
        start = min(s for s, _ in spans)
        stop = max(s + n for s, n in spans)
        if stop - start != sum(n for _, n in spans):
            raise RuntimeError(f"block {layer}'s parameters are not contiguous")
        out.append((start, stop))
    return out


def mlp_preactivations(model, idx):
    """Per block the MLP's pre-activation c_fc(ln_2(.)) (B, T, H) for idx (B, T), from the
    module path's forward caches (eval mode, no dropout)."""
    from ..nn.stack import stack_blocks, stack_forward
    cfg, p = model.config, model.parameters
    _, (_, _, caches, _) = stack_forward(cfg, p, p["wte"]["weight"], idx, 0, False,
                                         blocks=stack_blocks(cfg, p, 0, False, causal=True))
    return [c[1][1][1] for c in caches]     # block cache: (attention, (norm, (fc, h, proj)))


def dead_units(model, idx):
    """(dead, inactive) per block: the fraction of MLP units whose activation derivative is
    below DEAD_EPS in absolute value on every token of idx (B, T), and the fraction of
    (token, unit) pairs where it is; both (n_layer,) arrays."""
    from .. import functional as F
    dead, inactive = [], []
    for h in mlp_preactivations(model, idx):
        d = np.abs(F.activation_backward(model.config.activation, np.ones_like(h), h))
        small = (d < DEAD_EPS).reshape(-1, h.shape[-1])
        dead.append(small.all(0).mean())
        inactive.append(small.mean())
    return np.array(dead), np.array(inactive)


def _run(ctx, corpus, s, L, *, activation, norm, warmup, clip, seed_offset):
    """Train one configuration; returns (model, log, per-step per-layer grad norms)."""
    from .. import functional as F
    from ..nn import GPT, GPTConfig
    from ..train import TrainConfig
    cfg = GPTConfig(vocab_size=corpus.vocab_size, block_size=L, n_layer=s["n_layer"],
                    n_head=s["n_head"], n_embd=s["n_embd"], dropout=0.0,
                    activation=activation, norm=norm)
    model = GPT.create(cfg, ctx.rng(seed_offset))
    slices = layer_slices(model)
    norms = []

    def on_grads(step, grads):
        norms.append([F.global_grad_norm(grads[a:b]) for a, b in slices])

    # constant lr after the warmup: the effect of warmup alone, no decay to hide divergence
    tcfg = TrainConfig(max_iters=s["steps"], batch_size=s["batch_size"], lr=s["lr"],
                       warmup_iters=warmup, schedule="constant", weight_decay=0.1,
                       grad_clip=clip, seed=ctx.seed, eval_every=0)
    log = ctx.train_lm(model, corpus.train_ids, config=tcfg, on_grads=on_grads, log_every=1)
    return model, log, np.array(norms)


def _val_loss(model, x, y):
    model.eval()
    return float(model.loss(x, y))


@register(NAME, "gradient flow: ReLU vs GELU (dead units); pre- vs post-LN, 12 layers, warmup")
def study(ctx):
    """(a) ReLU vs GELU and (b) pre-LN vs post-LN with / without warmup; returns the Report
    (one row per run)."""
    s = _settings(ctx)
    corpus = ctx.shakespeare()
    L = s["L"]
    n = (corpus.val_ids.size - 1) // L
    starts = np.linspace(0, n - 1, s["eval_windows"]).round().astype(np.int64) * L
    w = corpus.val_ids[starts[:, None] + np.arange(L + 1)]
    xv, yv = np.ascontiguousarray(w[:, :-1]), np.ascontiguousarray(w[:, 1:])
    runs = [("a: activation", "relu", "pre", s["act"]["warmup"], 1.0, s["act"]),
            ("a: activation", "gelu", "pre", s["act"]["warmup"], 1.0, s["act"]),
            ("b: norm, 12 layers", "gelu", "pre", s["deep"]["warmup"], 0.0, s["deep"]),
            ("b: norm, 12 layers", "gelu", "pre", 0, 0.0, s["deep"]),
            ("b: norm, 12 layers", "gelu", "post", s["deep"]["warmup"], 0.0, s["deep"]),
            ("b: norm, 12 layers", "gelu", "post", 0, 0.0, s["deep"])]
    rows, traces = [], []
    for i, (part, act, norm, warmup, clip, rs) in enumerate(runs):
        offset = 1 if part.startswith("a") else 2      # same initial weights within a part
        model, log, g = _run(ctx, corpus, rs, L, activation=act, norm=norm, warmup=warmup,
                             clip=clip, seed_offset=offset)
        dead, inactive = dead_units(model, xv) if not log.diverged else (None, None)
        finite = g[np.isfinite(g).all(1)]
        ratio = float(np.median(finite[:, 0] / finite[:, -1])) if finite.size else None
        label = f"{act}, {norm}-LN, warmup {warmup}"
        traces.append((part, label, g, log))
        rows.append({
            "part": part, "activation": act, "norm": norm, "warmup steps": warmup,
            "layers": rs["n_layer"], "steps": log.step, "train s": round(log.seconds, 1),
            "diverged": log.diverged,
            "final train loss": log.final_loss(),
            "val loss": None if log.diverged else _val_loss(model, xv, yv),
            "grad norm first/last block": ratio,
            "max grad norm": float(np.nanmax(np.where(np.isfinite(g), g, np.nan))),
            "dead units %": None if dead is None else 100 * float(dead.mean()),
            "inactive %": None if inactive is None else 100 * float(inactive.mean()),
        })
        if dead is not None:
            rows[-1]["_dead_per_layer"] = dead
    per_layer_dead = {r["activation"]: r.pop("_dead_per_layer") for r in rows[:2]
                      if "_dead_per_layer" in r}
    for r in rows[2:]:
        r.pop("_dead_per_layer", None)
    report = Report(NAME, f"Gradient flow on {corpus.name} (character level): ReLU vs GELU, "
                    "pre-LN vs post-LN with and without warmup", columns=list(rows[0]),
                    rows=rows)
    a, d = s["act"], s["deep"]
    report.notes += [
        f"(a) {a['n_layer']} layers, width {a['n_embd']}, {a['steps']} steps of "
        f"{a['batch_size']} x {L} characters, AdamW lr {a['lr']} (constant after {a['warmup']} "
        f"warmup steps), clipping at 1. (b) {d['n_layer']} layers, width {d['n_embd']}, "
        f"{d['steps']} steps of {d['batch_size']} x {L}, lr {d['lr']} constant after the "
        f"warmup (0 = none), no gradient clipping. Same initial weights within each part.",
        f"'dead units %': MLP units whose activation derivative is below {DEAD_EPS} on every "
        f"token of {xv.shape[0]} validation windows, averaged over the blocks; 'inactive %': "
        "the (token, unit) pairs where it is. 'grad norm first/last block': the median over "
        "the steps of the first block's gradient norm over the last block's (pre-clipping). "
        "A diverged run (non-finite loss) stops there; its losses are inf.",
    ]
    report.meta["settings"] = s
    report.meta["grad_norms"] = {f"{p} | {lab}": g.tolist() for p, lab, g, _ in traces}
    report.meta["dead_per_layer"] = {k: v.tolist() for k, v in per_layer_dead.items()}
    _figures(ctx, report, traces, per_layer_dead)
    return report


def _figures(ctx, report, traces, per_layer_dead):
    from matplotlib import colormaps
    # (a): mean gradient norm per block, and dead units per block
    fig = ctx.figure(11, 4)
    ax1, ax2, ax3 = fig.subplots(1, 3)
    for part, label, g, log in traces[:2]:
        ax1.plot(np.arange(g.shape[1]), np.nanmean(g, 0), marker="o", label=label)
        ax2.plot(log.steps, log.losses, lw=1, label=label)
    for act, dead in per_layer_dead.items():
        ax3.plot(np.arange(dead.size), 100 * dead, marker="o", label=act)
    ax1.set_yscale("log")
    ax1.set_xlabel("block")
    ax1.set_ylabel("gradient norm (mean over steps)")
    ax1.set_title("(a) gradient norm per block")
    ax2.set_xlabel("step")
    ax2.set_ylabel("training loss")
    ax2.set_title("(a) training loss")
    ax3.set_xlabel("block")
    ax3.set_ylabel("dead MLP units (%)")
    ax3.set_title("(a) dead units at the end")
    for ax in (ax1, ax2, ax3):
        ax.legend(fontsize=8)
    report.add_figure(fig, "gradient_flow_activation.png")
    # (b): per-block gradient norms over training, one panel per run, and the losses
    deep = traces[2:]
    fig = ctx.figure(12, 7)
    axes = fig.subplots(2, 3)
    for k, (part, label, g, log) in enumerate(deep):
        ax = axes[k // 2, k % 2]
        n_layer = g.shape[1]
        cols = colormaps["viridis"](np.linspace(0, 0.9, n_layer))
        steps = np.arange(1, g.shape[0] + 1)
        for layer in range(n_layer):
            ax.plot(steps, g[:, layer], color=cols[layer], lw=0.8,
                    label=f"block {layer}" if layer in (0, n_layer - 1) else None)
        ax.set_yscale("log")
        ax.set_title(label + (" (diverged)" if log.diverged else ""), fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylabel("gradient norm")
        ax.legend(fontsize=7)
    lax = axes[0, 2]
    for part, label, g, log in deep:
        lax.plot(log.steps, np.minimum(log.losses, 10), lw=1, label=label)
    lax.set_title("(b) training loss (capped at 10)", fontsize=10)
    lax.set_xlabel("step")
    lax.legend(fontsize=7)
    rax = axes[1, 2]
    for part, label, g, log in deep:
        rax.plot(np.arange(g.shape[1]), np.nanmedian(g, 0), marker="o", label=label)
    rax.set_yscale("log")
    rax.set_title("(b) median gradient norm per block", fontsize=10)
    rax.set_xlabel("block")
    rax.legend(fontsize=7)
    report.add_figure(fig, "gradient_flow_norm.png")
