"""Training logs: loss and learning-rate curves, gradient norms."""
import json
import os

from . import _mpl

__all__ = ["read_log", "plot_training_curves", "plot_loss_curve", "plot_grad_norms"]


def read_log(path):
    """The records of a training log (log.jsonl), a list of dicts, in file order."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                out.append(json.loads(line))
    return out


def _records(log):
    return read_log(log) if isinstance(log, (str, os.PathLike)) else list(log)


def plot_training_curves(log, *, title=None, lr=True):
    """Loss curves of a training log: the training loss of every logged step, the train /
    validation evaluation losses, and (lr=True) the learning rate on a twin axis.

    log: a log.jsonl path or its records (read_log): {"type": "train", "step", "loss",
    "lr", ...} and {"type": "eval", "step", "train_loss", "val_loss", ...} dicts.
    Returns a matplotlib Figure.
    """
    _mpl.require("plot_training_curves")
    records = _records(log)
    train = [r for r in records if r.get("type") == "train"]
    evals = [r for r in records if r.get("type") == "eval"]
    fig = _mpl.figure("plot_training_curves", 7.5, 4.4)
    ax = fig.subplots()
    if train:
        ax.plot([r["step"] for r in train], [r["loss"] for r in train], lw=0.8, alpha=0.6,
                label="train (batch)")
    for key, style in (("train_loss", "o-"), ("val_loss", "s-")):
        pts = [(r["step"], r[key]) for r in evals if key in r]
        if pts:
            ax.plot(*zip(*pts), style, ms=4, label=key.replace("_", " ") + " (eval)")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats per token)")
    if title is None and isinstance(log, (str, os.PathLike)):
        title = os.path.basename(os.path.dirname(os.path.abspath(log)))
    ax.set_title(title or "training curves")
    ax.grid(alpha=0.3)
    handles, names = ax.get_legend_handles_labels()
    lrs = [(r["step"], r["lr"]) for r in train if "lr" in r]
    if lr and lrs:
        ax2 = ax.twinx()
        line, = ax2.plot(*zip(*lrs), color="tab:gray", lw=1.0, ls="--", label="learning rate")
        ax2.set_ylabel("learning rate")
        ax2.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
        handles, names = handles + [line], names + ["learning rate"]
    if handles:
        ax.legend(handles, names, fontsize=8)
    return fig


def plot_loss_curve(log_path, png_path, *, title=None):
    """Save plot_training_curves(log_path) to ``png_path`` (the CLI's loss.png).
    Returns png_path, or None when matplotlib is not installed."""
    if not _mpl.available():
        return None
    plot_training_curves(log_path, title=title).savefig(png_path, dpi=110)
    return png_path


def _grad_table(history):
    """{name: (steps, norms)} from a dict step -> {name: norm} or log records."""
    if isinstance(history, dict):
        items = sorted((int(s), v) for s, v in history.items())
    else:
        recs = [r for r in _records(history) if r.get("type", "train") == "train"]
        items = [(int(r["step"]), r["grad_norms"] if isinstance(r.get("grad_norms"), dict)
                  else {"global": r["grad_norm"]}) for r in recs
                 if "grad_norms" in r or "grad_norm" in r]
    series = {}
    for step, norms in items:
        if not isinstance(norms, dict):
            raise ValueError(f"history[{step}] must be a dict {{layer name: norm}}")
        for name, v in norms.items():
            series.setdefault(name, ([], []))
            series[name][0].append(step)
            series[name][1].append(float(v))
    if not series:
        raise ValueError("history holds no gradient norms")
    return series


def plot_grad_norms(history, *, log=True, title="gradient norms"):
    """Gradient norm of each layer (or the global norm) against the training step.

    history: a dict step -> {layer name: norm}, or a training log (a log.jsonl path or its
    records: "grad_norms" {name: norm} when present, else the global "grad_norm").
    log: logarithmic y axis. Returns a matplotlib Figure (one curve per name).
    """
    _mpl.require("plot_grad_norms")
    series = _grad_table(history)
    fig = _mpl.figure("plot_grad_norms", 7.5, 4.4)
    ax = fig.subplots()
    colors = _mpl.colors("viridis", len(series))
    for color, (name, (steps, norms)) in zip(colors, series.items()):
        ax.plot(steps, norms, color=color, lw=1.2, label=name)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("gradient L2 norm")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    if len(series) <= 24:
        ax.legend(fontsize=7, ncol=1 + len(series) // 9)
    return fig
