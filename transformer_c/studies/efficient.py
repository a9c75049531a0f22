"""Study "efficient" (seed 002 assignment 3; issue 16 item 4 / issue 18 study 7): the
efficient blocks against the vanilla one, speed against accuracy.

Two tasks, each trained once per variant for the same wall-clock budget (same initial
weights where the variants share parameters, same batches):

- language modelling: a character GPT on Tiny Shakespeare (the embedded corpus when
  ../shared/data is absent) with dense attention, block-sparse attention
  (``attention="block_sparse"``) and a mixture-of-experts FFN (``ffn="moe"``, when the
  installed package has it); validation loss per character;
- natural language inference: a small Bert trained from scratch on the SNLI 1% sample
  (../shared/data/snli/compact; when absent a synthetic three-class pair task built from the
  embedded corpus), the same three variants; dev and test accuracy.

Every variant runs in a fresh Python process (:func:`run_variant`), so its peak resident
set size (the kernel's VmHWM, reset once the data is loaded; C buffers included, which
tracemalloc does not see) is its own; the table also gives the training time, the time per step, the parameter count
and the parameters active per token (an MoE token runs moe_top_k of moe_experts experts).
Figures: validation loss against training time (GPT), dev accuracy against training time
(Bert).
"""
import dataclasses
import json
import math
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

from . import Report, register

__all__ = ["efficient", "settings", "variants", "moe_available", "active_parameters",
           "run_variant", "nli_data", "VARIANTS", "LABELS"]

VARIANTS = ("dense", "block_sparse", "moe")
LABELS = ("entailment", "neutral", "contradiction")
SNLI = {"train": "snli_train_0.01.jsonl", "dev": "snli_dev.jsonl", "test": "snli_test.jsonl"}


def moe_available():
    """Whether the installed package has the mixture-of-experts FFN (GPTConfig.ffn)."""
    from ..nn import BertConfig, GPTConfig
    return all("ffn" in {f.name for f in dataclasses.fields(c)} for c in (GPTConfig, BertConfig))


def settings(quick):
    """The study's settings (a dict): per task the model, the per-variant training budget
    in seconds, the block-sparse pattern and the MoE shape."""
    if quick:
        return dict(
            seconds=6.0, evals=3,
            gpt=dict(block_size=64, n_layer=2, n_head=2, n_embd=32, batch_size=8, lr=3e-3,
                     eval_batches=4, sparse=dict(sparse_block=16, sparse_window=2,
                                                 sparse_global=1)),
            nli=dict(max_len=48, n_layer=1, n_head=2, n_embd=32, batch_size=16, lr=1e-3,
                     vocab_size=400, limit=300, dev_eval=128,
                     sparse=dict(sparse_block=8, sparse_window=2, sparse_global=1)),
            moe=dict(moe_experts=4, moe_top_k=1, moe_capacity=1.25, moe_aux_weight=0.01))
    return dict(
        seconds=180.0, evals=6,
        gpt=dict(block_size=256, n_layer=4, n_head=4, n_embd=128, batch_size=16, lr=2e-3,
                 eval_batches=40, sparse=dict(sparse_block=32, sparse_window=2,
                                              sparse_global=1)),
        nli=dict(max_len=64, n_layer=4, n_head=4, n_embd=128, batch_size=32, lr=5e-4,
                 vocab_size=4096, limit=None, dev_eval=1024,
                 sparse=dict(sparse_block=8, sparse_window=2, sparse_global=1)),
        moe=dict(moe_experts=4, moe_top_k=1, moe_capacity=1.25, moe_aux_weight=0.01))


def variants():
    """The variants this installation can run (VARIANTS without "moe" when it lacks MoE)."""
    return VARIANTS if moe_available() else VARIANTS[:2]


def _variant_fields(s, task, variant):
    """The config fields that make ``variant`` of task ("gpt" or "nli")."""
    if variant == "dense":
        return {}
    if variant == "block_sparse":
        return dict(attention="block_sparse", **s[task]["sparse"])
    if variant == "moe":
        return dict(ffn="moe", **s["moe"])
    raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")


def active_parameters(model):
    """Parameters used per token: all of them for a dense FFN; with ffn="moe" the
    (moe_experts - moe_top_k) idle experts of every layer are not counted (the router is)."""
    cfg = model.config
    if getattr(cfg, "ffn", "mlp") != "moe":
        return model.num_parameters
    C = cfg.n_embd
    H = cfg.n_inner or 4 * C
    per_expert = 2 * H * C + ((H + C) if cfg.bias else 0)
    return model.num_parameters - cfg.n_layer * (cfg.moe_experts - cfg.moe_top_k) * per_expert


# ---------------------------------------------------------------------- data

def _words(text):
    return re.findall(r"[A-Za-z']+", text)


def nli_data(ctx, limit=None):
    """({split: (pairs [(premise, hypothesis)], labels (N,) int64)} for train / dev / test,
    description): SNLI (the 1% train sample, dev, test) from ../shared/data/snli/compact, or,
    when absent, a synthetic task over lines of the embedded corpus: the hypothesis is a
    contiguous run of the premise's words (0, "entailment"), the same words shuffled (1) or
    words of another line (2). limit: the first N of each split."""
    from ..data import read_pairs
    try:
        d = ctx.data_path(os.path.join("snli", "compact", SNLI["train"]))
    except FileNotFoundError:                  # an explicit data_dir without snli/
        d = None
    out = {}
    if d is not None:
        folder = pathlib.Path(d).parent
        for split, name in SNLI.items():
            pairs, labels = read_pairs(folder / name, labels=LABELS,
                                       fields=("sentence1", "sentence2", "gold_label"))
            y = np.array([LABELS.index(s) for s in labels], dtype=np.int64)
            out[split] = (pairs[:limit], y[:limit]) if limit else (pairs, y)
        return out, f"snli ({folder})"
    from ..data import default_corpus
    lines = [w for w in (_words(x) for x in default_corpus(2_000_000).splitlines())
             if len(w) >= 6]
    rng = ctx.rng(77)
    n = {"train": 5000, "dev": 1000, "test": 1000}
    start = 0
    for split in ("train", "dev", "test"):
        k = n[split] if limit is None else min(n[split], limit)
        pairs, labels = [], rng.integers(0, 3, k)
        for i in range(k):
            p = lines[start + i]
            j = int(rng.integers(0, len(p) - 3))
            run = p[j:j + int(rng.integers(3, min(8, len(p) - j) + 1))]
            if labels[i] == 1:
                run = list(rng.permutation(run))
            elif labels[i] == 2:
                q = lines[int(rng.integers(0, len(lines)))]
                run = q[:len(run)]
            pairs.append((" ".join(p), " ".join(run)))
        start += k
        out[split] = (pairs, labels.astype(np.int64))
    return out, "synthetic pairs from the embedded corpus (SNLI absent)"


# ---------------------------------------------------------------------- one variant

def _timed(trainer, seconds, evals, evaluate):
    """Train for ``seconds`` of training time (evaluation excluded), calling evaluate() at
    ``evals`` evenly spaced times and at the end. Returns (curve [{"t", "step", **metrics}],
    train losses [(t, loss)], seconds trained)."""
    marks = [seconds * (i + 1) / evals for i in range(evals)]
    curve, losses, clock = [], [], 0.0
    while True:
        t0 = time.perf_counter()
        s = trainer.train_step()
        clock += time.perf_counter() - t0
        losses.append((round(clock, 3), s["loss"]))
        if not math.isfinite(s["loss"]):
            curve.append({"t": clock, "step": trainer.step, "diverged": True})
            break
        if marks and clock >= marks[0]:
            while marks and clock >= marks[0]:
                marks.pop(0)
            curve.append({"t": clock, "step": trainer.step, **evaluate()})
        if not marks:
            break
    return curve, losses, clock


def _status_mb(field):
    """A memory field of /proc/self/status (VmRSS, VmHWM) in MB, or None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _reset_peak():
    """Start a new peak-RSS window: the resident set size now (MB), after resetting the
    kernel's high-water mark (VmHWM) through /proc/self/clear_refs (Linux >= 4.0). Returns
    (rss_now, reset_worked); without /proc the peak is getrusage's, from process start."""
    import resource
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status_mb("VmRSS"), True
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, False


def _peak_rss_mb(reset_worked):
    """The peak resident set size (MB) since _reset_peak (VmHWM), or since the process
    started (getrusage ru_maxrss, KiB on Linux) when the reset did not work."""
    import resource
    if reset_worked:
        return _status_mb("VmHWM")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_variant(spec):
    """Train one variant in this process and return its measurements (a JSON-able dict).
    spec: {"task": "gpt" | "nli", "variant", "quick", "seed", "threads", "data_dir",
    "tokenizer" (nli: a saved BPETokenizer path)}. Meant for a fresh process (see
    :func:`_spawn`) so that peak_rss_mb is this variant's alone."""
    import transformer_c as tc
    from ..data import BPETokenizer, PairDataset, StreamDataset
    from ..nn import GPT, Bert, BertConfig, GPTConfig
    from ..train import TrainConfig, Trainer
    from ._context import Context
    if spec.get("threads"):
        tc.set_num_threads(int(spec["threads"]))
    ctx = Context(quick=spec["quick"], seed=spec["seed"], data_dir=spec.get("data_dir"))
    s = settings(ctx.quick)
    task, variant = spec["task"], spec["variant"]
    extra = _variant_fields(s, task, variant)
    g = s[task]
    tcfg = TrainConfig(max_iters=10**9, batch_size=g["batch_size"], lr=g["lr"],
                       min_lr=g["lr"], warmup_iters=20, schedule="constant",
                       weight_decay=0.01 if task == "nli" else 0.1, eval_every=0,
                       eval_iters=g.get("eval_batches", 0), seed=ctx.seed)
    if task == "gpt":
        corpus = ctx.shakespeare()
        train = StreamDataset(corpus.train_ids, g["block_size"])
        val = StreamDataset(corpus.val_ids, g["block_size"])
        rss0, reset = _reset_peak()
        cfg = GPTConfig(vocab_size=corpus.vocab_size, block_size=g["block_size"],
                        n_layer=g["n_layer"], n_head=g["n_head"], n_embd=g["n_embd"],
                        dropout=0.0, **extra)
        model = GPT.create(cfg, ctx.rng(1))
        trainer = Trainer(model, train, val, tcfg, quiet=True, progress=False)

        def evaluate():
            return {"val_loss": trainer.eval_loss(val)[0]}
    else:
        data, _ = nli_data(ctx, g["limit"])
        tok = BPETokenizer.load(spec["tokenizer"])
        train = PairDataset(tok, *data["train"], g["max_len"])
        dev = PairDataset(tok, *data["dev"], g["max_len"])
        test = PairDataset(tok, *data["test"], g["max_len"])
        rss0, reset = _reset_peak()
        cfg = BertConfig(vocab_size=tok.vocab_size, block_size=g["max_len"],
                         n_layer=g["n_layer"], n_head=g["n_head"], n_embd=g["n_embd"],
                         dropout=0.1, **extra)
        model = Bert.create(cfg, ctx.rng(1))
        trainer = Trainer(model, train, dev, tcfg, quiet=True, progress=False)

        def evaluate():
            loss, _, acc = trainer.eval_metrics(dev, max_batches=math.ceil(
                g["dev_eval"] / g["batch_size"]))
            return {"dev_loss": loss, "dev_acc": acc}
    curve, losses, seconds = _timed(trainer, s["seconds"], s["evals"], evaluate)
    out = {"task": task, "variant": variant, "config": cfg.to_dict(),
           "params": model.num_parameters, "active_params": active_parameters(model),
           "steps": trainer.step, "train_s": seconds,
           "ms_per_step": 1000.0 * seconds / max(trainer.step, 1),
           "tokens_per_step": trainer.tokens_per_step,
           "curve": curve, "train_losses": losses, "diverged": bool(curve[-1].get("diverged"))}
    if task == "gpt":
        out["val_loss"] = curve[-1].get("val_loss", math.inf)
    else:
        for name, ds in (("dev", dev), ("test", test)):
            out[f"{name}_acc"] = trainer.eval_metrics(ds, max_batches=0)[2]
    out["peak_rss_mb"] = _peak_rss_mb(reset)
    out["rss_before_model_mb"] = rss0
    out["peak_window"] = "after the data" if reset else "whole process"
    return out


def _child():
    """Entry point of a variant's process: a JSON spec on stdin, the result as the last
    line of stdout."""
    spec = json.loads(sys.stdin.read())
    print(json.dumps(run_variant(spec)), flush=True)


def _spawn(spec):
    """run_variant(spec) in a fresh Python process (this package first on sys.path)."""
    root = str(pathlib.Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    if spec.get("threads"):
        env["OMP_NUM_THREADS"] = str(spec["threads"])
    p = subprocess.run([sys.executable, "-c",
                        "from transformer_c.studies.efficient import _child; _child()"],
                       input=json.dumps(spec), capture_output=True, text=True, env=env,
                       cwd=root)
    if p.returncode != 0:
        raise RuntimeError(f"variant {spec['task']}/{spec['variant']} failed "
                           f"(exit {p.returncode}):\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------- the study

COLUMNS = ["task", "variant", "params", "active_params", "steps", "train_s", "ms_per_step",
           "peak_rss_mb", "model_rss_mb", "val_loss", "dev_acc", "test_acc"]


@register("efficient", "efficient blocks: dense vs block-sparse attention vs mixture of "
                       "experts, GPT on Shakespeare and Bert on SNLI, accuracy vs time and "
                       "memory")
def efficient(ctx):
    """Train every variant (:func:`variants`) of both tasks for the same wall-clock budget,
    each in its own process; returns the Report (one row per task and variant)."""
    from ..data import BERT_SPECIALS, BPETokenizer
    import transformer_c as tc
    s = settings(ctx.quick)
    names = variants()
    threads = ctx.threads if ctx.threads is not None else tc.get_num_threads()
    base = {"quick": ctx.quick, "seed": ctx.seed, "threads": threads,
            "data_dir": ctx.data_dir}
    corpus = ctx.shakespeare()                          # records meta["data"]
    results = []
    for v in names:
        results.append(_spawn({**base, "task": "gpt", "variant": v}))
    data, nli_source = nli_data(ctx, s["nli"]["limit"])
    text = "\n".join(f"{a}\n{b}" for a, b in data["train"][0])
    with tempfile.TemporaryDirectory() as tmp:
        tok_path = os.path.join(tmp, "bpe.json")
        BPETokenizer.train(text, s["nli"]["vocab_size"], specials=BERT_SPECIALS).save(tok_path)
        for v in names:
            results.append(_spawn({**base, "task": "nli", "variant": v,
                                   "tokenizer": tok_path}))
    rep = Report("efficient", "Efficient blocks: dense vs block-sparse attention vs mixture "
                 "of experts (same wall-clock budget per variant)", columns=COLUMNS)
    for r in results:
        rep.add_row({"task": "GPT / " + corpus.name if r["task"] == "gpt" else "Bert / NLI",
                     "variant": r["variant"], "params": r["params"],
                     "active_params": r["active_params"], "steps": r["steps"],
                     "train_s": r["train_s"], "ms_per_step": r["ms_per_step"],
                     "peak_rss_mb": r["peak_rss_mb"],
                     "model_rss_mb": r["peak_rss_mb"] - r["rss_before_model_mb"],
                     "val_loss": r.get("val_loss"), "dev_acc": r.get("dev_acc"),
                     "test_acc": r.get("test_acc")})
    g, n = s["gpt"], s["nli"]
    rep.notes += [
        f"Each variant trained for {s['seconds']:.0f} s of training time (evaluations not "
        f"counted) in its own process with {threads} thread(s), AdamW at a constant learning "
        "rate after 20 warm-up steps, the same seed (initial weights of the shared "
        "parameters, batches). GPT: "
        f"{g['n_layer']} layers, {g['n_head']} heads, width {g['n_embd']}, windows of "
        f"{g['block_size']} characters, batch {g['batch_size']}, lr {g['lr']}; val_loss = "
        f"nats per character on {g['eval_batches']} batches of evenly spaced validation "
        f"windows. Bert: {n['n_layer']} layers, {n['n_head']} heads, width {n['n_embd']}, "
        f"max_len {n['max_len']}, BPE vocabulary {n['vocab_size']} (trained on the train "
        f"pairs), dropout 0.1, batch {n['batch_size']}, lr {n['lr']}, no pretraining; data: "
        f"{nli_source}; dev_acc and test_acc on the whole splits at the end of training.",
        f"block_sparse: GPT blocks of {g['sparse']['sparse_block']} positions, window "
        f"{g['sparse']['sparse_window']}, {g['sparse']['sparse_global']} global block; Bert "
        f"blocks of {n['sparse']['sparse_block']}, window {n['sparse']['sparse_window']} "
        f"(each side), {n['sparse']['sparse_global']} global block (the [CLS] token's). "
        + (f"moe: {s['moe']['moe_experts']} experts of the dense MLP's width, top-"
           f"{s['moe']['moe_top_k']} routing, capacity factor {s['moe']['moe_capacity']}, "
           f"load-balancing weight {s['moe']['moe_aux_weight']}; active_params counts the "
           "experts a token runs." if "moe" in names else
           "moe: not run (this build has no ffn='moe')."),
        "peak_rss_mb: the variant process's peak resident set size (Python, NumPy and the C "
        "buffers; tracemalloc would miss the C ones) from the moment its data was loaded "
        "(the kernel's high-water mark VmHWM, reset then through /proc/self/clear_refs); "
        "model_rss_mb: that peak minus the resident size at the reset, i.e. what the model, "
        "its optimizer state, the activations and the evaluations added.",
        "Paths: every GPT (dense, block-sparse, MoE) trains on the C fast path; every Bert "
        "runs the module path (layer by layer over the C kernels), so ms_per_step compares "
        "like with like within a task.",
    ]
    rep.meta["settings"] = s
    rep.meta["nli_data"] = nli_source
    rep.meta["variants"] = list(names)
    rep.meta["results"] = results
    _figures(ctx, rep, results)
    return rep


def _figures(ctx, rep, results):
    fig = ctx.figure(11, 4)
    a, b = fig.subplots(1, 2)
    for r in results:
        c = [p for p in r["curve"] if not p.get("diverged")]
        if r["task"] == "gpt":
            a.plot([p["t"] for p in c], [p["val_loss"] for p in c], "o-", label=r["variant"])
        else:
            b.plot([p["t"] for p in c], [p["dev_acc"] for p in c], "o-", label=r["variant"])
    a.set_xlabel("training time (s)")
    a.set_ylabel("validation loss (nats / char)")
    a.set_title("GPT: validation loss vs training time")
    a.legend()
    b.set_xlabel("training time (s)")
    b.set_ylabel("dev accuracy")
    b.set_title("Bert NLI: dev accuracy vs training time")
    b.legend()
    rep.add_figure(fig, "efficient_curves.png")
    fig = ctx.figure(11, 4)
    a, b = fig.subplots(1, 2)
    for r in results:
        if r["task"] == "gpt":
            t, l = zip(*r["train_losses"])
            k = max(1, len(l) // 100)
            sm = np.convolve(l, np.ones(k) / k, mode="valid")
            a.plot(np.asarray(t)[k - 1:], sm, label=r["variant"], lw=1)
    a.set_xlabel("training time (s)")
    a.set_ylabel("training loss (smoothed)")
    a.set_title("GPT: training loss vs time")
    a.legend()
    labels = [f"{'GPT' if r['task'] == 'gpt' else 'Bert'}\n{r['variant']}" for r in results]
    b.bar(range(len(results)), [r["peak_rss_mb"] for r in results], color="tab:gray",
          label="peak RSS")
    b.bar(range(len(results)), [r["peak_rss_mb"] - r["rss_before_model_mb"] for r in results],
          color="tab:blue", label="growth after the data")
    b.set_xticks(range(len(results)), labels, fontsize=8)
    b.set_ylabel("MB")
    b.set_title("memory per variant process")
    b.legend()
    rep.add_figure(fig, "efficient_memory.png")
