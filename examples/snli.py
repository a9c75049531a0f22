"""SNLI natural language inference with a small BERT-style encoder (nn.Bert), end to end.

Data: ../shared/data/snli/compact (see its README): the 1% train sample (5,498 labelled
pairs), dev (9,842), test (9,824) and test_hard (3,261, a subset of test). Labels:
entailment 0, neutral 1, contradiction 2. Two ways to split (--train-on):
"train" fits the 1% sample and selects on dev; "train+dev" fits train and dev pooled
except --holdout pairs drawn at random from the pool, which replace dev for selection
(the data README's suggestion; test and test_hard are never used to choose anything).

1. a byte-level BPE trained from scratch on the fit pairs' text (specials BERT_SPECIALS;
   --lowercase lower-cases every sentence first);
2. optional masked-LM pretraining (--pretrain-steps N > 0): 15% of tokens, 80/10/10, on
   --pretrain-corpus: the Gutenberg books and WikiText-2 ("books"), the fit pairs'
   premises and hypotheses ("snli"), or both (never selection or test text);
3. fine-tuning on the fit pairs ([CLS] premise [SEP] hypothesis [SEP]), evaluated on
   --eval-iters batches of evenly spaced selection examples (0: all) every --eval-every
   steps; the checkpoint with the highest selection accuracy is kept (--select; the
   Trainer's OUT/finetune/best, step 0 included); --time-limit MINUTES stops early;
4. that model's accuracy on test and test_hard, their confusion matrices (OUT/confusion.png),
   against two baselines measured here on the same splits: the majority class of the fit
   pairs, and a hypothesis-only bag-of-words logistic regression on them (NumPy, L2
   strength chosen on the selection split; --no-baselines skips them).

python examples/snli.py [--out runs/snli] [--train-on train+dev] [--lowercase]
                        [--pretrain-steps N] [--steps N] [--threads 2] [--quick]
(from a checkout with the in-place build: PYTHONPATH=. python examples/snli.py)

--quick: a tiny model and a few hundred examples per split (seconds; what the tests run).
--evaluate CKPT [--figure PNG]: only the accuracies (and the figure) of a saved checkpoint
(e.g. OUT/finetune/last, or a run stopped early), with the run's split and lower-casing.
Prints progress and one final JSON line with every number; OUT/results.json holds it too.
The measured runs and what each change bought: README.md, section "SNLI".
"""
import argparse
import collections
import json
import os
import pathlib
import re
import sys
import time

import numpy as np

import transformer_c as tc
import transformer_c.checkpoint
from transformer_c.data import (BERT_SPECIALS, BPETokenizer, MaskedLMDataset, PairDataset,
                                read_pairs)
from transformer_c.nn import Bert, BertConfig
from transformer_c.train import TrainConfig, Trainer
from transformer_c.viz import confusion_matrix

LABELS = ("entailment", "neutral", "contradiction")
DATA = pathlib.Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
SPLITS = {"train": "snli_train_0.01.jsonl", "dev": "snli_dev.jsonl",
          "test": "snli_test.jsonl", "test_hard": "snli_test_hard.jsonl"}


def load_snli(data_dir, limit=None, lowercase=False):
    """{split: (pairs [(premise, hypothesis)], labels (N,) int64)} of the compact JSONL
    files (rows labelled "-" are already dropped there); limit: the first N rows each;
    lowercase: both sentences lower-cased."""
    out = {}
    for split, name in SPLITS.items():
        pairs, labels = read_pairs(os.path.join(data_dir, "snli", "compact", name),
                                   fields=("sentence1", "sentence2", "gold_label"),
                                   labels=LABELS)
        y = np.array([LABELS.index(s) for s in labels], dtype=np.int64)
        if lowercase:
            pairs = [(a.lower(), b.lower()) for a, b in pairs]
        out[split] = (pairs[:limit], y[:limit]) if limit else (pairs, y)
    return out


def training_split(data, train_on, holdout, seed):
    """(fit pairs, fit labels, selection pairs, selection labels, selection name).

    train_on "train": fit on the 1% train sample, select on dev. "train+dev": fit on train
    and dev pooled, except ``holdout`` pairs drawn from the pool at random (``seed``) that
    replace dev for selection ("holdout"). test and test_hard are never used for either."""
    if train_on == "train":
        return (*data["train"], *data["dev"], "dev")
    pairs = data["train"][0] + data["dev"][0]
    y = np.concatenate([data["train"][1], data["dev"][1]])
    if not 0 < holdout < len(pairs):
        raise ValueError(f"holdout must lie in (0, {len(pairs)}), got {holdout}")
    perm = np.random.default_rng(seed).permutation(len(pairs))
    sel, fit = np.sort(perm[:holdout]), np.sort(perm[holdout:])
    return ([pairs[i] for i in fit], y[fit], [pairs[i] for i in sel], y[sel], "holdout")


# ---------------------------------------------------------------------- baselines

def words(text):
    return re.findall(r"[a-z0-9']+", text.lower())


def bow_features(texts, vocab):
    """(N, len(vocab) + 1) float32: word presence (0/1) and a constant 1 for the bias."""
    X = np.zeros((len(texts), len(vocab) + 1), dtype=np.float32)
    for i, t in enumerate(texts):
        for w in words(t):
            j = vocab.get(w)
            if j is not None:
                X[i, j] = 1.0
    X[:, -1] = 1.0
    return X


def fit_logistic(X, y, k, l2, iters=300, lr=0.5):
    """Multinomial logistic regression by full-batch gradient descent with Adam on the mean
    cross-entropy + l2/2 |W|^2 (bias column not penalised); returns W (D, k)."""
    W = np.zeros((X.shape[1], k), dtype=X.dtype)
    m = np.zeros_like(W)
    v = np.zeros_like(W)
    Y = np.eye(k, dtype=X.dtype)[y]
    pen = np.ones((X.shape[1], 1), dtype=X.dtype)
    pen[-1] = 0.0
    for t in range(1, iters + 1):
        z = X @ W
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        g = X.T @ (p - Y) / len(y) + l2 * pen * W
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        W -= lr * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    return W


def baselines(splits, sel_name):
    """Accuracy of the majority class and of the hypothesis-only BoW logistic regression
    on the selection split and test / test_hard. splits: {"fit": (pairs, labels),
    sel_name: ..., "test": ..., "test_hard": ...}; both baselines learn from "fit" only,
    the BoW's l2 picked on sel_name."""
    (tr_pairs, ytr) = splits["fit"]
    majority = int(np.bincount(ytr, minlength=3).argmax())
    out = {"majority_class": LABELS[majority]}
    reported = (sel_name, "test", "test_hard")
    for split in reported:
        out[f"majority_{split}_acc"] = float(np.mean(splits[split][1] == majority))
    counts = collections.Counter(w for _, h in tr_pairs for w in set(words(h)))
    vocab = {w: i for i, w in enumerate(sorted(w for w, c in counts.items() if c >= 2))}
    hyp = {s: bow_features([h for _, h in splits[s][0]], vocab) for s in splits}
    best = None
    for l2 in (1e-3, 1e-2, 3e-2):
        W = fit_logistic(hyp["fit"], ytr, 3, l2)
        acc = float(np.mean((hyp[sel_name] @ W).argmax(1) == splits[sel_name][1]))
        if best is None or acc > best[0]:
            best = (acc, l2, W)
    acc, l2, W = best
    out.update(bow_vocab=len(vocab), bow_l2=l2)
    for split in reported:
        out[f"bow_hypothesis_{split}_acc"] = float(np.mean((hyp[split] @ W).argmax(1) ==
                                                           splits[split][1]))
    return out


# ---------------------------------------------------------------------- the model

def pretrain_text(data_dir, pairs, corpus="books+snli", lowercase=False):
    """The MLM corpus: "books" every Gutenberg book and WikiText-2 valid + test; "snli" the
    fit pairs' premises (each once) and hypotheses; "books+snli" both. Never selection,
    dev (unless trained on) or test text."""
    parts = []
    for sub in (("gutenberg", "wikitext-2") if "books" in corpus else ()):
        d = os.path.join(data_dir, sub)
        if os.path.isdir(d):
            for name in sorted(os.listdir(d)):
                with open(os.path.join(d, name), encoding="utf-8", errors="replace") as f:
                    text = f.read()
                    parts.append(text.lower() if lowercase else text)
    if "snli" in corpus:
        parts.append("\n".join(dict.fromkeys(a for a, _ in pairs)))
        parts.append("\n".join(b for _, b in pairs))
    return "\n".join(parts)


def predict(model, ds, batch_size=256):
    """Class ids (N,) of every example of a PairDataset, in eval mode."""
    out = []
    for i in range(0, len(ds), batch_size):
        b = ds.batch_at(np.arange(i, min(i + batch_size, len(ds))))
        out.append(model.predict(b["src"], b["token_types"], b["src_lengths"]))
    return np.concatenate(out)


def plot_confusion(counts, accs, title, png):
    """Draw the test and test_hard confusion matrices (counts[split] (3, 3), rows true,
    columns predicted; accs[f"bert_{split}_acc"]) with row fractions to png; returns png,
    or None without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4))
    for ax, split in zip(axes, ("test", "test_hard")):
        c = np.asarray(counts[split])
        rows = c / c.sum(axis=1, keepdims=True)
        ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
        for (i, j), x in np.ndenumerate(c):
            ax.text(j, i, f"{x}\n{rows[i, j]:.2f}", ha="center", va="center",
                    color="white" if rows[i, j] > 0.6 else "black", fontsize=9)
        ax.set_xticks(range(3), LABELS, rotation=20)
        ax.set_yticks(range(3), LABELS)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{split}: accuracy {accs[f'bert_{split}_acc']:.3f} (n={c.sum()})")
    fig.suptitle(title + ", counts and row fractions")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


def run(args):
    """The whole experiment (module docstring); returns the results dict."""
    t_start = time.perf_counter()
    tc.set_num_threads(args.threads)
    data = load_snli(args.data_dir, 300 if args.quick else None, args.lowercase)
    fit_pairs, yfit, sel_pairs, ysel, sel_name = training_split(
        data, args.train_on, args.holdout, args.seed)
    splits = {"fit": (fit_pairs, yfit), sel_name: (sel_pairs, ysel),
              "test": data["test"], "test_hard": data["test_hard"]}
    os.makedirs(args.out, exist_ok=True)
    results = {"command": " ".join(sys.argv), "threads": args.threads,
               "load": os.getloadavg()[0], "selection_split": sel_name,
               "sizes": {s: len(v[0]) for s, v in data.items()},
               "fit_size": len(fit_pairs), "selection_size": len(sel_pairs)}
    t0 = time.perf_counter()
    if not args.no_baselines:
        results.update(baselines(splits, sel_name))
    results["baseline_seconds"] = time.perf_counter() - t0
    print(json.dumps({k: v for k, v in results.items() if "acc" in k or "size" in k}),
          flush=True)

    text = "\n".join(f"{a}\n{b}" for a, b in fit_pairs)
    t0 = time.perf_counter()
    tok = BPETokenizer.train(text, args.vocab_size, specials=BERT_SPECIALS)
    results["bpe_seconds"] = time.perf_counter() - t0
    results["vocab_size"] = tok.vocab_size
    cfg = BertConfig(vocab_size=tok.vocab_size, block_size=args.max_len, n_layer=args.n_layer,
                     n_head=args.n_head, n_embd=args.n_embd, dropout=args.dropout,
                     pooling=args.pooling)
    model = Bert.create(cfg, np.random.default_rng(args.seed))
    results["parameters"] = model.num_parameters
    results["model_config"] = cfg.to_dict()
    train = PairDataset(tok, fit_pairs, yfit, args.max_len)
    select = PairDataset(tok, sel_pairs, ysel, args.max_len)

    if args.pretrain_steps:
        corpus = pretrain_text(args.data_dir, fit_pairs, args.pretrain_corpus, args.lowercase)
        ids = np.asarray(tok.encode(corpus), dtype=np.int64)
        n_val = max(ids.size // 50, args.max_len)
        mtrain = MaskedLMDataset(ids[:-n_val], args.max_len, tok, seed=args.seed)
        mval = MaskedLMDataset(ids[-n_val:], args.max_len, tok, seed=args.seed + 1)
        pcfg = TrainConfig(max_iters=args.pretrain_steps, batch_size=args.batch_size,
                           lr=args.pretrain_lr, min_lr=args.pretrain_lr / 10,
                           warmup_iters=min(200, args.pretrain_steps // 10),
                           weight_decay=0.01, eval_every=max(args.pretrain_steps // 5, 1),
                           eval_iters=10, log_every=50, seed=args.seed)
        t0 = time.perf_counter()
        pre = Trainer(model, mtrain, mval, pcfg, tokenizer=tok,
                      out_dir=os.path.join(args.out, "pretrain"), progress=False)
        hist = pre.train()
        results.update(pretrain_seconds=time.perf_counter() - t0,
                       pretrain_tokens=int(ids.size),
                       pretrain_val_mlm_loss=hist[-1]["val_loss"],
                       pretrain_first_val_mlm_loss=pre.history[0]["val_loss"])

    warmup = min(100, args.steps // 10) if args.warmup is None else args.warmup
    fcfg = TrainConfig(max_iters=args.steps, batch_size=args.batch_size, lr=args.lr,
                       min_lr=args.lr * args.min_lr_ratio, warmup_iters=warmup,
                       weight_decay=args.weight_decay, eval_every=args.eval_every,
                       eval_iters=args.eval_iters, log_every=20, seed=args.seed,
                       select=args.select)
    t0 = time.perf_counter()
    info = {"lowercase": args.lowercase, "train_on": args.train_on,
            "holdout": args.holdout, "seed": args.seed}
    trainer = Trainer(model, train, select, fcfg, tokenizer=tok, data_info=info,
                      out_dir=os.path.join(args.out, "finetune"), progress=False)
    trainer.train(time_limit=None if args.time_limit is None else args.time_limit * 60)
    results["finetune_steps"] = trainer.step
    results["finetune_seconds"] = time.perf_counter() - t0
    best = tc.checkpoint.load(os.path.join(args.out, "finetune"), prefer="best",
                              optimizer=False)
    model = best.model
    results["best_step"] = best.state["step"]
    results["curve"] = [{"step": r["step"], "val_loss": round(r["val_loss"], 4),
                         "val_acc": round(r["val_acc"], 4),
                         "train_acc": round(r["train_acc"], 4)}
                        for r in trainer.history]
    counts = {}
    for split in (sel_name, "test", "test_hard"):
        ds = select if split == sel_name else PairDataset(tok, *data[split], args.max_len)
        pred = predict(model, ds)
        results[f"bert_{split}_acc"] = float(np.mean(pred == ds.labels))
        counts[split] = confusion_matrix(ds.labels, pred, 3)
        results[f"confusion_{split}"] = counts[split].tolist()
    results["wall_seconds"] = time.perf_counter() - t_start
    results["load_end"] = os.getloadavg()[0]
    title = (f"Bert on SNLI (fit on {args.train_on.replace('train', '1% train')}, "
             f"{len(fit_pairs)} pairs; step {results['best_step']})")
    results["confusion_png"] = plot_confusion(counts, results, title,
                                              os.path.join(args.out, "confusion.png"))
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(json.dumps(results), flush=True)
    return results


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=str(DATA), help="the folder holding snli/ (and "
                   "gutenberg/, wikitext-2/ for pretraining)")
    p.add_argument("--out", default="runs/snli")
    p.add_argument("--quick", action="store_true", help="tiny model and data (tests)")
    p.add_argument("--vocab-size", type=int, default=4096)
    p.add_argument("--max-len", type=int, default=64)
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=128)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--pooling", choices=tc.options.POOLINGS, default="cls")
    p.add_argument("--lowercase", action="store_true", help="lower-case every sentence")
    p.add_argument("--train-on", choices=("train", "train+dev"), default="train",
                   help="train: fit the 1%% sample, select on dev; train+dev: fit both "
                   "pooled but --holdout pairs of the pool, which select instead of dev")
    p.add_argument("--holdout", type=int, default=1000, help="with --train-on train+dev: "
                   "pairs held out of the pool for selection")
    p.add_argument("--select", choices=("val_accuracy", "val_loss"), default="val_accuracy",
                   help="what picks OUT/finetune/best on the selection split")
    p.add_argument("--pretrain-corpus", choices=("books+snli", "books", "snli"),
                   default="books+snli", help="masked-LM text: the shared books and "
                   "WikiText-2, the fit pairs' sentences, or both")
    p.add_argument("--no-baselines", action="store_true", help="skip the majority-class "
                   "and bag-of-words baselines (they depend only on the split and --seed)")
    p.add_argument("--pretrain-steps", type=int, default=0)
    p.add_argument("--pretrain-lr", type=float, default=5e-4)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--time-limit", type=float, default=None, metavar="MINUTES",
                   help="stop fine-tuning after this wall time (evaluating there; the "
                   "schedule still spans --steps)")
    p.add_argument("--warmup", type=int, default=None, help="fine-tuning warmup steps "
                   "(default: a tenth of --steps, at most 100)")
    p.add_argument("--min-lr-ratio", type=float, default=0.1, help="the cosine schedule "
                   "ends at lr times this")
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--eval-iters", type=int, default=64, help="batches of evenly spaced dev "
                   "(and train) examples per evaluation during fine-tuning (0: all); the "
                   "final dev / test numbers use every example")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--figure", metavar="PNG", help="with --evaluate: also draw the test "
                   "and test_hard confusion matrices there")
    p.add_argument("--evaluate", metavar="CKPT", help="only evaluate this checkpoint (e.g. "
                   "OUT/finetune/last) on dev, test and test_hard")
    args = p.parse_args(argv)
    if args.quick:
        args.vocab_size, args.n_layer, args.n_embd, args.n_head = 400, 1, 32, 2
        args.steps, args.eval_every = 40, 20
        args.pretrain_steps = min(args.pretrain_steps, 20)
        args.max_len = 48
    return args


def evaluate_checkpoint(args):
    """--evaluate CKPT: accuracy and confusion matrices on the run's selection split (dev,
    or the held-out part of train+dev), test and test_hard of a saved checkpoint (e.g.
    OUT/finetune/last, the model at the end of fine-tuning, where OUT/finetune/best is the
    selected one), with the run's lower-casing; one JSON line."""
    tc.set_num_threads(args.threads)
    c = tc.checkpoint.load(args.evaluate, optimizer=False)
    info = c.state.get("data") or {}
    data = load_snli(args.data_dir, 300 if args.quick else None, info.get("lowercase", False))
    _, _, sel_pairs, ysel, sel_name = training_split(
        data, info.get("train_on", "train"), info.get("holdout", 0), info.get("seed", 0))
    data[sel_name] = (sel_pairs, ysel)
    out = {"checkpoint": c.path, "step": c.state["step"], "command": " ".join(sys.argv)}
    for split in (sel_name, "test", "test_hard"):
        ds = PairDataset(c.tokenizer, *data[split], c.model.config.block_size)
        pred = predict(c.model, ds)
        out[f"bert_{split}_acc"] = float(np.mean(pred == ds.labels))
        out[f"confusion_{split}"] = confusion_matrix(ds.labels, pred, 3).tolist()
    if args.figure:
        accs = {f"bert_{k}_acc": out[f"bert_{k}_acc"] for k in ("test", "test_hard")}
        counts = {k: out[f"confusion_{k}"] for k in ("test", "test_hard")}
        title = (f"Bert on SNLI (fit on {info.get('train_on', 'train').replace('train', '1% train')}"
                 f"; step {c.state['step']})")
        out["confusion_png"] = plot_confusion(counts, accs, title, args.figure)
    print(json.dumps(out), flush=True)
    return out


if __name__ == "__main__":
    a = parse_args()
    evaluate_checkpoint(a) if a.evaluate else run(a)
