"""Study "scaling": validation loss against parameter count at a fixed compute budget
(seed 004, Experiment 3, at CPU scale).

Character-level GPTs of 4-5 sizes are trained on Tiny Shakespeare (or the embedded corpus),
each for the same compute budget in floating-point operations, C = 6 N D (N parameters,
D training tokens: forward 2 N D, backward 4 N D, the usual estimate), so a smaller model
sees more tokens. The validation losses are fitted with a power law L(N) = a N^(-alpha)
(least squares on log L against log N) twice, and both exponents reported: over all sizes,
and over the compute-efficient frontier (:func:`frontier_sizes`: the sizes up to the one
with the lowest validation loss). Past that size a model gets too few tokens at this budget
and its loss rises again because it is undertrained, not because of its size; a power law
in N describes the side where data is not the limit.

The budget is counted in FLOPs rather than seconds so that the result does not depend on the
machine's load; the wall time of every run is recorded beside it.
"""
import math

import numpy as np

from ..data import StreamDataset
from ..nn import GPT, GPTConfig
from ..train import TrainConfig
from . import Report, register

__all__ = ["scaling", "settings", "fit_power_law", "frontier_sizes",
           "non_embedding_parameters", "learning_rate"]


def settings(quick):
    """The study's settings (a dict): the model sizes (n_layer, n_head, n_embd), the compute
    budget in FLOPs, the batch and the validation windows."""
    if quick:
        return dict(sizes=[(1, 2, 16), (1, 2, 32), (2, 2, 32), (2, 4, 48)], budget=2e10,
                    block_size=32, batch_size=16, eval_windows=128, log_points=20)
    return dict(sizes=[(1, 2, 16), (1, 2, 24), (1, 2, 32), (2, 2, 32), (2, 4, 48)],
                budget=1e12, block_size=64, batch_size=16, eval_windows=512, log_points=40)


def learning_rate(n_embd):
    """The peak learning rate of a width: 2e-3 * sqrt(64 / n_embd), within [1e-3, 4e-3]
    (narrow models take larger steps)."""
    return float(min(4e-3, max(1e-3, 2e-3 * math.sqrt(64.0 / n_embd))))


def non_embedding_parameters(model):
    """The parameters outside the token and position embeddings (Kaplan et al.'s N)."""
    p = model.parameters
    emb = p["wte"]["weight"].size + (p["wpe"]["weight"].size if "wpe" in p else 0)
    return model.num_parameters - emb


def fit_power_law(n, loss):
    """Least-squares fit of log(loss) = log(a) - alpha log(n). n, loss: (K,) positive,
    K >= 2. Returns dict(a, alpha, r2) (r2: the coefficient of determination in log
    space)."""
    n, loss = np.asarray(n, np.float64), np.asarray(loss, np.float64)
    if n.ndim != 1 or n.shape != loss.shape or n.size < 2:
        raise ValueError(f"n and loss must be 1-D of one length >= 2, got {n.shape} and "
                         f"{loss.shape}")
    if not (np.all(n > 0) and np.all(loss > 0) and np.all(np.isfinite(loss))):
        raise ValueError("n and loss must be positive and finite")
    x, y = np.log(n), np.log(loss)
    slope, icpt = np.polyfit(x, y, 1)
    resid = y - (icpt + slope * x)
    ss = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((resid ** 2).sum()) / ss if ss > 0 else 1.0
    return {"a": float(np.exp(icpt)), "alpha": float(-slope), "r2": r2}


def frontier_sizes(params, val_loss):
    """The compute-efficient frontier of a fixed-budget sweep: the indices of the sizes, in
    increasing parameter count, up to and including the one with the lowest validation loss
    (the smallest such size on a tie). params: (K,) distinct positive counts, val_loss: (K,)
    finite losses, any order. Returns an int64 array of indices into them (length >= 1).

    At a fixed compute budget the sizes past the lowest loss see too few tokens and their
    loss rises because they are undertrained; the power law in N is fitted up to there."""
    n, loss = np.asarray(params, np.float64), np.asarray(val_loss, np.float64)
    if n.ndim != 1 or n.shape != loss.shape or n.size < 1:
        raise ValueError(f"params and val_loss must be 1-D of one length >= 1, got {n.shape} "
                         f"and {loss.shape}")
    if not (np.all(n > 0) and np.all(np.isfinite(n)) and np.all(np.isfinite(loss))):
        raise ValueError("params must be positive and finite, val_loss finite")
    if np.unique(n).size != n.size:
        raise ValueError(f"params must be distinct, got {n.tolist()}")
    order = np.argsort(n, kind="stable")
    return order[:int(np.argmin(loss[order])) + 1].astype(np.int64)


def _law(fit, tex=False):
    """The fitted law as text, "L(N) = a N^-alpha" (the exponent's sign written once)."""
    e = -fit["alpha"]
    if tex:
        return rf"$L = {fit['a']:.3g}\,N^{{{e:+.3f}}}$"
    return f"L(N) = {fit['a']:.4g} N^{e:+.4f}"


def _fit_label(name, fit):
    return rf"{name}: {_law(fit, tex=True)}, $R^2$ = {fit['r2']:.2f}"


def _fit_figure(ctx, rows, fit, frontier, fit_frontier, budget):
    fig = ctx.figure(6.8, 4.4)
    ax = fig.subplots()
    n = np.array([r["params"] for r in rows], np.float64)
    loss = np.array([r["val_loss"] for r in rows])
    on = np.zeros(len(rows), bool)
    on[frontier] = True
    ax.plot(n[on], loss[on], "o", color="tab:green", ms=7,
            label="validation loss, on the frontier" +
            (" (one size: no fit)" if fit_frontier is None else ""))
    if (~on).any():
        ax.plot(n[~on], loss[~on], "o", color="tab:gray", mfc="none", ms=7, mew=1.5,
                label="validation loss, past the lowest loss")
    for r in rows:
        ax.annotate(f"{r['n_layer']}L x {r['n_embd']}", (r["params"], r["val_loss"]),
                    xytext=(5, 5), textcoords="offset points", fontsize=8)
    grid = np.geomspace(n.min() / 1.3, n.max() * 1.3, 50)
    ax.plot(grid, fit["a"] * grid ** -fit["alpha"], "--", color="tab:red",
            label=_fit_label(f"fit over all {len(rows)} sizes", fit))
    if fit_frontier is not None:                       # drawn over the sizes it was fitted on
        g = np.geomspace(n[on].min() / 1.3, n[on].max() * 1.3, 50)
        ax.plot(g, fit_frontier["a"] * g ** -fit_frontier["alpha"], "-", color="tab:green",
                label=_fit_label(f"fit over the frontier ({len(frontier)} sizes)",
                                 fit_frontier))
    ax.set_xscale("log")
    ax.set_yscale("log")
    from matplotlib.ticker import FormatStrFormatter, NullFormatter
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_minor_formatter(NullFormatter())
    ax.set_xticks(n, [f"{v / 1e3:.1f}k" for v in n])
    lo, hi = ax.get_ylim()
    ax.set_yticks(np.unique(np.round(np.geomspace(lo, hi, 7)[1:-1], 2)))
    ax.yaxis.set_major_formatter(FormatStrFormatter("%.2f"))
    ax.set_xlabel("parameters N")
    ax.set_ylabel("validation loss (nats / char)")
    ax.set_title(f"loss vs size at a fixed budget of {budget:.2g} FLOPs (6 N D)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return fig


def _curves_figure(ctx, curves, budget):
    from ..viz import _mpl
    fig = ctx.figure(6.8, 4.4)
    ax = fig.subplots()
    colors = _mpl.colors("viridis", len(curves))
    for (label, flops, losses), c in zip(curves, colors):
        ax.plot(flops, losses, "-", color=c, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("training compute so far (FLOPs, 6 N D)")
    ax.set_ylabel("training loss (mean over the last logged steps)")
    ax.set_title(f"training curves against compute, up to {budget:.2g} FLOPs")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return fig


@register("scaling", "validation loss vs parameter count at a fixed compute budget (4-5 "
                     "sizes), a fitted power law and its exponent")
def scaling(ctx):
    """Train each size for the same FLOP budget, fit L = a N^-alpha to the validation losses
    of all sizes and of the compute-efficient frontier (:func:`frontier_sizes`). Returns the
    Report (one row per size; meta["fit"], meta["fit_frontier"]: dict(a, alpha, r2), the
    latter None when the frontier is a single size, else with its "sizes" (row indices))."""
    import time
    s = settings(ctx.quick)
    corpus = ctx.shakespeare()
    T, B = s["block_size"], s["batch_size"]
    val = StreamDataset(corpus.val_ids, T)
    starts = np.linspace(0, len(val) - 1, s["eval_windows"]).round().astype(np.int64)
    xs, ys = val.batch_at(starts)
    rows, curves = [], []
    rep = Report("scaling", "Scaling: validation loss against size at a fixed compute budget",
                 columns=["n_layer", "n_head", "n_embd", "params", "non_embedding_params",
                          "lr", "steps", "tokens", "train_loss", "val_loss", "frontier",
                          "fit_all_val_loss", "fit_frontier_val_loss", "wall_s"])
    for i, (L, H, C) in enumerate(s["sizes"]):
        cfg = GPTConfig(vocab_size=corpus.vocab_size, block_size=T, n_layer=L, n_head=H,
                        n_embd=C)
        model = GPT.create(cfg, ctx.rng(i))
        N = model.num_parameters
        steps = max(1, int(s["budget"] // (6 * N * B * T)))
        lr = learning_rate(C)
        tcfg = TrainConfig(max_iters=steps, batch_size=B, lr=lr, min_lr=lr / 10,
                           warmup_iters=max(1, steps // 20), eval_every=0, seed=ctx.seed)
        t0 = time.perf_counter()
        log = ctx.train_lm(model, corpus.train_ids, config=tcfg,
                           log_every=max(1, steps // (4 * s["log_points"])))
        wall = time.perf_counter() - t0
        model.eval()
        val_loss = float(np.mean([model.loss(xs[j:j + 64], ys[j:j + 64])
                                  for j in range(0, len(xs), 64)]))
        k = max(1, len(log.losses) // s["log_points"])
        sm = np.convolve(log.losses, np.ones(k) / k, mode="valid")
        flops = 6.0 * N * B * T * np.asarray(log.steps[k - 1:], np.float64)
        curves.append((f"{L}L x {C} ({N / 1e3:.0f}k)", flops, sm))
        rows.append(dict(n_layer=L, n_head=H, n_embd=C, params=N,
                         non_embedding_params=non_embedding_parameters(model), lr=lr,
                         steps=steps, tokens=steps * B * T, train_loss=log.final_loss(),
                         val_loss=val_loss, wall_s=round(wall, 1)))
    params = [r["params"] for r in rows]
    losses = [r["val_loss"] for r in rows]
    fit = fit_power_law(params, losses)
    frontier = frontier_sizes(params, losses)
    fit_frontier = (fit_power_law([params[i] for i in frontier], [losses[i] for i in frontier])
                    if len(frontier) >= 2 else None)
    for i, r in enumerate(rows):
        r["frontier"] = bool(i in frontier)
        r["fit_all_val_loss"] = fit["a"] * r["params"] ** -fit["alpha"]
        r["fit_frontier_val_loss"] = (None if fit_frontier is None else
                                      fit_frontier["a"] * r["params"] ** -fit_frontier["alpha"])
        rep.add_row(r)
    best = rows[frontier[-1]]
    if fit_frontier is None:
        frontier_note = (f"**Fit over the compute-efficient frontier: none**: the smallest "
                         f"size already has the lowest validation loss, so the frontier is "
                         f"one size and no power law can be fitted to it.")
    else:
        frontier_note = (
            f"**Fit over the compute-efficient frontier (the {len(frontier)} sizes up to "
            f"the lowest validation loss, {best['params']:,} parameters): "
            f"{_law(fit_frontier)}, alpha = {fit_frontier['alpha']:.4f}, R^2 = "
            f"{fit_frontier['r2']:.3f}** (`fit_frontier_val_loss`).")
    rep.notes += [
        f"**Fit over all {len(rows)} sizes: {_law(fit)}, alpha = {fit['alpha']:.4f}, "
        f"R^2 = {fit['r2']:.3f}** (least squares in log-log space; `fit_all_val_loss`).",
        frontier_note + " Why the frontier: at a fixed compute budget a larger model trains "
        "on fewer tokens; past the size with the lowest loss the models are undertrained "
        "(data-limited) and their loss rises again, which is a property of the budget, not "
        "of the size. The power law L ~ N^-alpha describes how the loss falls with size when "
        "data is not the limit, so it is fitted on the sizes up to the lowest loss "
        "(`frontier` = yes), the compute-efficient frontier.",
        f"Every size trains for the same compute, {s['budget']:.3g} FLOPs counted as 6 N D "
        f"(N = params, all parameters: the tied lm_head makes the embedding part of the "
        f"compute; D = steps x {B} windows x {T} characters); AdamW, cosine schedule from "
        f"lr = 2e-3 sqrt(64 / n_embd) (in [1e-3, 4e-3]) to a tenth of it, 5% warmup, batch "
        f"{B}. val_loss: nats per character over {len(xs)} validation windows; train_loss: the "
        "mean of the last 20 logged steps; wall_s: the training time on this machine (it "
        "depends on the load, the FLOP budget does not).",
        "At a fixed budget a larger model sees fewer tokens (tokens per parameter: "
        + ", ".join(f"{r['tokens'] / r['params']:.0f}" for r in rows) + "; about 20 per "
        "parameter is compute-optimal in Hoffmann et al.'s rule of thumb for word-piece "
        "models).",
    ]
    rep.meta["settings"] = {k: v for k, v in s.items()}
    rep.meta["fit"] = fit
    rep.meta["fit_frontier"] = (None if fit_frontier is None else
                                dict(fit_frontier, sizes=[int(i) for i in frontier]))
    rep.meta["frontier"] = [int(i) for i in frontier]
    rep.add_figure(_fit_figure(ctx, rows, fit, frontier, fit_frontier, s["budget"]),
                   "scaling_fit.png")
    rep.add_figure(_curves_figure(ctx, curves, s["budget"]), "scaling_curves.png")
    return rep
