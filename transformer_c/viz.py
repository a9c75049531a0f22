"""Plots (optional: needs matplotlib, ``pip install "transformer_c[plot]"``)."""
import json
import os

__all__ = ["read_log", "plot_loss_curve", "have_matplotlib"]


def have_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def read_log(path):
    """The records of a training log (log.jsonl), a list of dicts, in file order."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                out.append(json.loads(line))
    return out


def plot_loss_curve(log_path, png_path, *, title=None):
    """Draw the training loss (every logged step) and the train/validation evaluation losses
    of ``log_path`` (log.jsonl) against the step, into ``png_path``. Returns png_path, or
    None when matplotlib is not installed."""
    if not have_matplotlib():
        return None
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    records = read_log(log_path)
    train = [(r["step"], r["loss"]) for r in records if r.get("type") == "train"]
    evals = [r for r in records if r.get("type") == "eval"]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    if train:
        ax.plot(*zip(*train), lw=0.8, alpha=0.6, label="train (batch)")
    for key, style in (("train_loss", "o-"), ("val_loss", "s-")):
        pts = [(r["step"], r[key]) for r in evals if key in r]
        if pts:
            ax.plot(*zip(*pts), style, ms=4, label=key.replace("_", " ") + " (eval)")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats per token)")
    ax.set_title(title or os.path.basename(os.path.dirname(os.path.abspath(log_path))))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return png_path
