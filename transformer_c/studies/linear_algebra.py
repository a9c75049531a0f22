"""Study "linear_algebra": the linear algebra of training (seed 002, assignment 2).

A character-level GPT is trained; at log-spaced steps (0 = the initialisation) the study
records

- for every layer and head, the singular spectrum of the bilinear form of its scores,
  W_q^h W_k^h^T (C x C, rank <= HS: query-key similarity in the model's residual space),
  and of QK^T on validation windows (T x T, the scores before the mask and the
  1/sqrt(HS)), with their effective rank (:func:`transformer_c.viz.effective_rank`) and
  their rank at 1% (singular values above 1% of the largest);
- the singular values of the token embedding matrix wte (V x C) and its effective rank.

The numerical rank at machine precision is not informative here: every W_q^h W_k^h^T is
HS-dimensional from the start (random init) and stays so; what training changes is how the
energy spreads over those HS directions.
"""
import copy

import numpy as np

from .. import functional as F
from ..data import StreamDataset
from ..nn import GPT, GPTConfig
from ..train import TrainConfig
from . import Report, register

__all__ = ["linear_algebra", "settings", "record_steps", "qk_weight_spectra",
           "qk_activation_spectra", "rank_at"]


def settings(quick):
    """The study's settings (a dict): model shape, training, how many records and how many
    validation windows the activation spectra average over."""
    if quick:
        return dict(n_layer=2, n_head=4, n_embd=64, block_size=32, steps=200, batch_size=16,
                    lr=3e-3, records=8, windows=4, eval_windows=64)
    return dict(n_layer=4, n_head=4, n_embd=128, block_size=64, steps=1500, batch_size=16,
                lr=2e-3, records=16, windows=16, eval_windows=512)


def record_steps(steps, n):
    """n distinct steps from 0 to ``steps`` (inclusive), log-spaced after 0 (sorted list)."""
    pts = np.unique(np.round(np.geomspace(1, steps, max(n - 1, 1))).astype(int))
    return [0] + [int(p) for p in pts]


def rank_at(spectra, rtol=1e-2):
    """The number of singular values above rtol times the largest, over the last axis
    (an int array of spectra.shape[:-1])."""
    s = np.asarray(spectra, dtype=np.float64)
    return (s > rtol * s[..., :1]).sum(axis=-1)


def _qkv(model, layer):
    """(W_q, W_k) of a layer in the x @ W layout: (C, C) each, heads side by side."""
    w = model.parameters["h"][layer]["attn"]["c_attn"]["weight"]     # (3C, C), y = x W^T
    C = model.config.n_embd
    return w[:C].T.astype(np.float64), w[C:2 * C].T.astype(np.float64)


def qk_weight_spectra(model):
    """Singular values of W_q^h W_k^h^T for every layer and head: (L, H, C) float64,
    descending (from :func:`transformer_c.viz.qk_spectra`)."""
    from ..viz import qk_spectra
    out = []
    for layer in range(model.config.n_layer):
        wq, wk = _qkv(model, layer)
        out.append(qk_spectra(wq, wk, n_heads=model.config.n_head)[0])
    return np.stack(out)


def qk_activation_spectra(model, x):
    """Singular values of Q_h K_h^T (T x T) of every layer and head on the windows x (B, T)
    (queries and keys computed from the C forward's hidden states: ln_1, then c_attn's q
    and k parts; learned or sinusoidal positions are inside the hidden state). Returns
    (B, L, H, T) float64, descending. Needs norm="pre" and position != "rope"."""
    from ..viz import qk_spectra
    cfg = model.config
    if cfg.norm != "pre" or cfg.position == "rope":
        raise ValueError("qk_activation_spectra needs a pre-LN model without RoPE")
    hid = model.inspect(x, attentions=False).hidden_states
    C, H = cfg.n_embd, cfg.n_head
    out = np.zeros(x.shape[:1] + (cfg.n_layer, H, x.shape[1]))
    for layer in range(cfg.n_layer):
        p = model.parameters["h"][layer]
        h = F.layer_norm(hid[layer], p["ln_1"]["weight"], p["ln_1"].get("bias"),
                         cfg.layer_norm_epsilon)
        qkv = F.linear(h, p["attn"]["c_attn"]["weight"], p["attn"]["c_attn"].get("bias"))
        for b in range(x.shape[0]):
            q = qkv[b, :, :C].astype(np.float64)
            k = qkv[b, :, C:2 * C].astype(np.float64)
            out[b, layer] = qk_spectra(q=q, k=k, n_heads=H)[0]
    return out


def _effective(spectra):
    from ..viz import effective_rank
    return effective_rank(spectra)


def _rank_figure(ctx, steps, weight_eff, act_eff, hs):
    """Effective rank per head over training: weights (top row) and activations (bottom),
    one column per layer."""
    from ..viz import _mpl
    L, H = weight_eff.shape[1:]
    fig = ctx.figure(3.4 * L + 0.6, 6.2)
    axes = fig.subplots(2, L, squeeze=False, sharex=True)
    colors = _mpl.colors("tab10", H)
    x = np.maximum(steps, 0.5)
    for layer in range(L):
        for row, (vals, what) in enumerate(((weight_eff, r"$W_q W_k^\top$"),
                                            (act_eff, r"$QK^\top$ on text"))):
            ax = axes[row, layer]
            for h in range(H):
                ax.plot(x, vals[:, layer, h], ".-", color=colors[h], label=f"head {h}")
            ax.axhline(hs, color="gray", ls=":", lw=1)
            ax.set_xscale("log")
            ax.set_title(f"layer {layer}: {what}", fontsize=9)
            ax.grid(alpha=0.3, which="both")
            if layer == 0:
                ax.set_ylabel("effective rank")
            if row == 1:
                ax.set_xlabel("step (0 plotted at 0.5)")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"effective rank of each head's query-key product during training\n"
                 f"(dotted: the head size {hs}, the largest possible rank)", fontsize=10)
    return fig


def _spectrum_figure(ctx, first, last, steps, hs):
    """Each head's normalised W_q W_k^T spectrum (its first hs values: the rest are 0) at
    the first and last record."""
    from ..viz import _mpl
    first, last = first[..., :hs], last[..., :hs]
    L, H, r = last.shape
    fig = ctx.figure(3.4 * L + 0.6, 3.6)
    axes = fig.subplots(1, L, squeeze=False)[0]
    colors = _mpl.colors("tab10", H)
    idx = np.arange(1, r + 1)
    for layer in range(L):
        ax = axes[layer]
        for h in range(H):
            ax.plot(idx, first[layer, h] / first[layer, h, 0], ":", color=colors[h], lw=1)
            ax.plot(idx, last[layer, h] / last[layer, h, 0], "-", color=colors[h],
                    label=f"head {h}")
        ax.set_yscale("log")
        ax.set_ylim(max(1e-4, 0.5 * float(last[layer].min() / last[layer, :, :1].max())),
                    1.5)
        ax.set_xlim(0.5, r + 0.5)
        ax.set_title(f"layer {layer}", fontsize=9)
        ax.set_xlabel("index i")
        ax.grid(alpha=0.3, which="both")
        if layer == 0:
            ax.set_ylabel(r"$\sigma_i / \sigma_1$")
            ax.legend(fontsize=7)
    fig.suptitle(rf"singular spectrum of $W_q^h W_k^{{h\top}}$: step {steps[0]} (dotted) and "
                 f"step {steps[-1]} (solid)", fontsize=10)
    return fig


@register("linear_algebra", "the rank and singular spectrum of QK^T per head and the singular "
                            "values of the embedding matrix, tracked during training")
def linear_algebra(ctx):
    """Train a character GPT, recording at log-spaced steps the spectra of every head's
    W_q W_k^T and QK^T and of the token embedding. Returns the Report (one row per record)."""
    from ..viz import plot_singular_values
    s = settings(ctx.quick)
    corpus = ctx.shakespeare()
    T = s["block_size"]
    cfg = GPTConfig(vocab_size=corpus.vocab_size, block_size=T, n_layer=s["n_layer"],
                    n_head=s["n_head"], n_embd=s["n_embd"])
    hs = cfg.n_embd // cfg.n_head
    model = GPT.create(cfg, ctx.rng(0))
    tcfg = TrainConfig(max_iters=s["steps"], batch_size=s["batch_size"], lr=s["lr"],
                       min_lr=s["lr"] / 10, warmup_iters=max(1, s["steps"] // 20),
                       eval_every=0, seed=ctx.seed)
    steps = record_steps(s["steps"], s["records"])
    snaps = {}

    def on_grads(step, grads):
        if step in steps and step not in snaps:
            snaps[step] = copy.copy(model)       # the parameters after `step` updates

    log = ctx.train_lm(model, corpus.train_ids, config=tcfg, on_grads=on_grads, log_every=1)
    snaps[log.step] = copy.copy(model)
    steps = sorted(snaps)
    val = StreamDataset(corpus.val_ids, T)
    starts = np.linspace(0, len(val) - 1, s["eval_windows"]).round().astype(np.int64)
    xs, ys = val.batch_at(starts)
    xa = xs[np.linspace(0, len(xs) - 1, s["windows"]).round().astype(np.int64)]
    losses = dict(zip(log.steps, log.losses))
    wte_hist, w_spec, a_spec, rows = [], [], [], []
    rep = Report("linear_algebra", "Linear algebra of training: QK^T and embedding spectra",
                 columns=["step", "train_loss", "val_loss", "wte_sigma1", "wte_eff_rank",
                          "wte_rank_1pct", "qk_w_sigma1", "qk_w_rank", "qk_w_eff_rank",
                          "qk_w_rank_1pct",
                          "qk_act_eff_rank", "qk_act_rank_1pct"])
    for step in steps:
        m = snaps[step]
        m.eval()
        wte = m.parameters["wte"]["weight"].astype(np.float64)
        sv = np.linalg.svd(wte, compute_uv=False)
        wte_hist.append((step, sv))
        ws = qk_weight_spectra(m)                                # (L, H, C)
        acts = qk_activation_spectra(m, xa)                      # (B, L, H, T)
        w_spec.append(ws)
        a_spec.append(acts)
        val_loss = float(np.mean([m.loss(xs[i:i + 64], ys[i:i + 64])
                                  for i in range(0, len(xs), 64)]))
        rep.add_row(step=step, train_loss=losses.get(step + 1) if step < log.step
                    else log.final_loss(1), val_loss=val_loss,
                    wte_sigma1=float(sv[0]), wte_eff_rank=float(_effective(sv)),
                    wte_rank_1pct=int(rank_at(sv)),
                    qk_w_sigma1=float(ws[..., 0].mean()),
                    qk_w_rank=float(rank_at(ws, ws.shape[-1] * np.finfo(np.float64).eps)
                                    .mean()),
                    qk_w_eff_rank=float(_effective(ws).mean()),
                    qk_w_rank_1pct=float(rank_at(ws).mean()),
                    qk_act_eff_rank=float(_effective(acts).mean()),
                    qk_act_rank_1pct=float(rank_at(acts).mean()))
    w_spec, a_spec = np.stack(w_spec), np.stack(a_spec)         # (N, L, H, C), (N, B, L, H, T)
    weight_eff = _effective(w_spec)                              # (N, L, H)
    act_eff = _effective(a_spec).mean(axis=1)                    # (N, L, H)
    rep.notes += [
        f"Model: {cfg.n_layer} layers x {cfg.n_head} heads of size {hs}, n_embd "
        f"{cfg.n_embd}, block {T} characters, vocabulary {cfg.vocab_size} "
        f"({model.num_parameters:,} parameters), trained {log.step} steps of "
        f"{s['batch_size']} windows.",
        f"Columns: train_loss is the training loss of the step that starts at that record "
        f"(the last: of the last step); val_loss over {len(xs)} validation windows. "
        f"wte: the token embedding ({cfg.vocab_size} x {cfg.n_embd}): its largest singular "
        f"value, effective rank (exp of the entropy of sigma / sum sigma) and rank at 1% "
        f"(singular values above 1% of the largest). qk_w: the same for W_q^h W_k^h^T "
        f"(C x C, rank <= {hs}), averaged over the {cfg.n_layer * cfg.n_head} heads. "
        f"qk_act: for Q_h K_h^T ({T} x {T}) on {len(xa)} validation windows, averaged over "
        "heads and windows.",
        f"qk_w_rank: the numerical rank at machine precision (numpy.linalg.matrix_rank's "
        f"tolerance), averaged over heads: at most the head size {hs}, reached from the "
        f"random initialisation on; the effective rank and the rank at 1% show how training "
        "concentrates the energy in fewer directions.",
    ]
    rep.meta["settings"] = dict(s, parameters=model.num_parameters, head_size=hs)
    rep.meta["steps"] = steps
    rep.meta["qk_weight_effective_rank"] = weight_eff.tolist()
    rep.meta["qk_activation_effective_rank"] = act_eff.tolist()
    rep.meta["wte_singular_values"] = [sv.tolist() for _, sv in wte_hist]
    rep.meta["train_log"] = log.to_dict()
    fig = plot_singular_values(wte_hist, top_k=min(16, cfg.n_embd), name="token embedding wte")
    fig.axes[0].set_xscale("symlog", linthresh=1.0)
    fig.axes[0].set_xlim(left=0)
    fig.axes[0].set_xlabel("step (symmetric log scale)")
    rep.add_figure(fig, "la_wte_singular_values.png")
    rep.add_figure(_rank_figure(ctx, np.array(steps), weight_eff, act_eff, hs),
                   "la_qk_effective_rank.png")
    rep.add_figure(_spectrum_figure(ctx, w_spec[0], w_spec[-1], steps, hs), "la_qk_spectra.png")
    return rep
