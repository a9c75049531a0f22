"""``python -m transformer_c classify train|eval``: a BERT-style sentence-pair classifier
(transformer_c.nn.Bert) on JSONL files of (text_a, text_b, label), with the checkpoint,
resume and logging behaviour of ``train`` (OUT/last, OUT/best by validation accuracy
or --select val_loss, OUT/log.jsonl, OUT/loss.png; --resume continues bitwise; SIGINT/SIGTERM save and exit).

    classify train --data TRAIN.jsonl [--val VAL.jsonl] --out DIR [model/training flags]
    classify eval  --ckpt DIR --data TEST.jsonl [--confusion PNG]

A row is one JSON object: {"text_a": str, "text_b": str or null, "label": str or int}
(--fields names other keys, e.g. sentence1,sentence2,gold_label for SNLI). The classes are
--labels (comma-separated, in id order) or the sorted distinct labels of the training file;
rows with other labels (e.g. SNLI's "-") are skipped. The tokenizer is a byte-level BPE
trained on the training texts with the BERT specials (<CLS>, <SEP>, <MASK>).
"""
import hashlib
import json
import os
import sys
import time

TRAIN_FLAGS = ("max_iters", "batch_size", "grad_accum", "lr", "min_lr", "warmup_iters",
               "weight_decay", "grad_clip", "select")
MODEL_FLAGS = ("n_layer", "n_head", "n_embd", "dropout", "pooling")
DEFAULTS = dict(n_layer=2, n_head=4, n_embd=128, dropout=0.1, pooling="cls", max_len=128,
                vocab_size=2048, max_iters=1000, batch_size=32, grad_accum=1, lr=3e-4,
                min_lr=3e-5, warmup_iters=None, weight_decay=0.01, grad_clip=1.0,
                eval_every=100, eval_iters=0, log_every=10, select="val_accuracy")
# flags a resumed run may change
RESUME_FREE = ("max_iters", "eval_every", "eval_iters", "log_every", "save_every")


def arch_keys():
    """The architecture flags of classify train: train's (presets.ARCH_KEYS, from GPTConfig's
    block options) that BertConfig has, less logit_softcap (Bert has no LM logits to cap)."""
    import dataclasses

    from .nn import BertConfig
    from .presets import ARCH_KEYS
    names = {f.name for f in dataclasses.fields(BertConfig)}
    return tuple(k for k in ARCH_KEYS if k in names and
                 (k != "logit_softcap" or getattr(BertConfig, "_softcap_logits", False)))


def add_parser(sub, positive, non_negative):
    """The ``classify`` sub-command (with its train / eval sub-commands) on ``sub``."""
    from .options import POOLINGS
    from .train import SELECTIONS
    c = sub.add_parser("classify", help="train / evaluate a BERT-style pair classifier on "
                       "JSONL (text_a, text_b, label)", description=__doc__,
                       formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    csub = c.add_subparsers(dest="classify_command", metavar="train|eval", required=True)
    t = csub.add_parser("train", help="train (or --resume) a classifier")
    g = t.add_argument_group("data")
    g.add_argument("--data", metavar="FILE", help="training JSONL (with --resume: default the "
                   "run's)")
    g.add_argument("--val", metavar="FILE", help="validation JSONL (model selection: OUT/best "
                   "has the highest validation accuracy, see --select; without it no best/; "
                   "with --resume: default the run's)")
    g.add_argument("--fields", default=None, metavar="A,B,LABEL",
                   help="the JSON keys of text_a, text_b and the label (default "
                   "text_a,text_b,label)")
    g.add_argument("--labels", default=None, metavar="L1,L2,...",
                   help="the classes in id order (default: sorted labels of --data)")
    g.add_argument("--vocab-size", type=positive(int), help="BPE vocabulary (default 2048)")
    g.add_argument("--max-len", type=positive(int), help="tokens per pair (default 128)")
    g = t.add_argument_group("model")
    g.add_argument("--n-layer", type=positive(int))
    g.add_argument("--n-head", type=positive(int))
    g.add_argument("--n-embd", type=positive(int))
    g.add_argument("--dropout", type=non_negative(float))
    g.add_argument("--pooling", choices=POOLINGS)
    from .cli import _add_arch_flags
    from .nn import BertConfig
    from .nn.encoder import POSITIONS
    _add_arch_flags(t.add_argument_group(
        "architecture", "the Bert's block options (BertConfig, nn.BlockOptions; default: "
        "BertConfig's)"), arch_keys(), BertConfig, choices={"position": POSITIONS})
    g.add_argument("--init-from", metavar="CKPT", help="start from the weights and tokenizer "
                   "of a Bert checkpoint (e.g. masked-LM pretrained); fresh optimizer")
    g = t.add_argument_group("training")
    g.add_argument("--max-iters", type=positive(int), help="optimizer steps (default 1000)")
    g.add_argument("--batch-size", type=positive(int), help="pairs per micro-batch")
    g.add_argument("--grad-accum", type=positive(int))
    g.add_argument("--lr", type=positive(float))
    g.add_argument("--min-lr", type=non_negative(float))
    g.add_argument("--warmup-iters", type=non_negative(int),
                   help="default: max-iters / 10, at most 50")
    g.add_argument("--weight-decay", type=non_negative(float))
    g.add_argument("--grad-clip", type=non_negative(float))
    g.add_argument("--eval-every", type=non_negative(int))
    g.add_argument("--select", choices=tuple(SELECTIONS),
                   help="the --val metric that picks OUT/best: val_accuracy (highest; the "
                   "default) or val_loss (lowest); step 0's evaluation counts")
    g.add_argument("--eval-iters", type=non_negative(int),
                   help="batches per evaluation (0, the default: every example)")
    g.add_argument("--log-every", type=positive(int))
    g.add_argument("--save-every", type=non_negative(int), metavar="N")
    g.add_argument("--seed", type=non_negative(int), default=1337)
    g.add_argument("--time-limit", type=positive(float), metavar="MINUTES")
    g = t.add_argument_group("output")
    g.add_argument("--out", default="out-classify", metavar="DIR")
    g.add_argument("--resume", action="store_true", help="continue the run in --out")
    g.add_argument("--overwrite", action="store_true", help="replace a run in --out")
    g.add_argument("--threads", type=positive(int))
    g.add_argument("--quiet", action="store_true")

    e = csub.add_parser("eval", help="accuracy and confusion matrix of a checkpoint")
    e.add_argument("--ckpt", default="out-classify", metavar="DIR",
                   help="a checkpoint or run directory (its best/, else last/)")
    e.add_argument("--data", required=True, metavar="FILE", help="JSONL to evaluate")
    e.add_argument("--fields", default=None, metavar="A,B,LABEL",
                   help="JSON keys (default: the ones the model was trained with)")
    e.add_argument("--confusion", metavar="PNG", help="also plot the confusion matrix")
    e.add_argument("--batch-size", type=positive(int), default=64)
    e.add_argument("--threads", type=positive(int))
    return c


def _fields(s, CLIError):
    if s is None:
        return None
    f = tuple(x.strip() for x in s.split(","))
    if len(f) != 3 or not all(f):
        raise CLIError(f"--fields must name three JSON keys A,B,LABEL, got {s!r}")
    return f


def _read(path, fields, labels, CLIError, flag="--data"):
    """(pairs, label strings, info) of a JSONL file; CLIError for a missing / bad file."""
    from .data import read_pairs
    if not os.path.isfile(path):
        raise CLIError(f"{flag} {path}: no such file")
    try:
        pairs, ys = read_pairs(path, fields=fields, labels=labels)
    except (ValueError, UnicodeDecodeError) as e:
        raise CLIError(f"{flag} {e}") from None
    if not pairs:
        raise CLIError(f"{flag} {path} holds no usable rows (fields {','.join(fields)}"
                       f"{'' if labels is None else ', labels ' + ','.join(labels)})")
    with open(path, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    return pairs, ys, {"path": os.path.abspath(path), "rows": len(pairs), "sha256": sha}


def _dataset(tokenizer, pairs, ys, labels, max_len):
    import numpy as np
    from .data import PairDataset
    return PairDataset(tokenizer, pairs, np.array([labels.index(y) for y in ys]), max_len)


def _settings(args, saved=None):
    """Every model / training value: the flag if given, else saved (resume), else default."""
    out = {}
    for key, default in DEFAULTS.items():
        v = getattr(args, key, None)
        out[key] = v if v is not None else (saved or {}).get(key, default)
    if out["warmup_iters"] is None:  # default: a tenth of the run, at most 50 steps
        out["warmup_iters"] = min(50, out["max_iters"] // 10)
    return out


def cmd_classify(args, CLIError, say, load_checkpoint):
    """Dispatch ``classify train`` / ``classify eval``."""
    if args.classify_command == "eval":
        return _eval(args, CLIError, load_checkpoint)
    return _train(args, CLIError, say, load_checkpoint)


def _train(args, CLIError, say, load_checkpoint):
    import numpy as np

    from . import set_num_threads
    from .cli import (_arch_contradictions, _arch_summary, _check_fresh_out, _config_error,
                      _remove_run)
    from .data import BERT_SPECIALS, BPETokenizer
    from .nn import Bert, BertConfig
    from .train import TrainConfig, Trainer, TrainingInterrupted

    if args.threads:
        set_num_threads(args.threads)
    if args.resume and args.init_from:
        raise CLIError("--resume continues the run in --out; --init-from starts a new one: "
                       "pass one of them")
    ckpt = None
    if args.resume:
        ckpt = load_checkpoint(args.out, prefer="last")
        if not isinstance(ckpt.model, Bert):
            raise CLIError(f"{ckpt.path} holds a {type(ckpt.model).__name__}, not a classifier "
                           "(resume it with the train command)")
        info = ckpt.state.get("data") or {}
        saved = dict(info.get("settings") or {})
        bad = [f"--{k.replace('_', '-')} {getattr(args, k)} (the run uses {saved.get(k)})"
               for k in DEFAULTS if k not in RESUME_FREE and getattr(args, k, None) is not None
               and getattr(args, k) != saved.get(k)]
        for key, flag in (("fields", args.fields), ("labels", args.labels)):
            if flag is not None and list(flag.split(",")) != list(info.get(key, [])):
                bad.append(f"--{key} {flag} (the run uses {','.join(info.get(key, []))})")
        bad += _arch_contradictions(args, arch_keys(), ckpt.model.config,
                                    "the checkpoint's model")
        if bad:
            raise CLIError(f"--resume continues {ckpt.path} with its own settings; these flags "
                           f"contradict it: {'; '.join(bad)}")
        s = _settings(args, saved)
        fields, labels = tuple(info["fields"]), list(info["labels"])
        args.data = args.data or info.get("train", {}).get("path")
        args.val = args.val or info.get("val", {}).get("path")
        tokenizer, model = ckpt.tokenizer, ckpt.model
    else:
        if args.data is None:
            raise CLIError("classify train needs --data FILE (a JSONL of text_a, text_b, "
                           "label)")
        held = _check_fresh_out(args)
        s = _settings(args)
        fields = _fields(args.fields, CLIError) or ("text_a", "text_b", "label")
        labels = None if args.labels is None else [x.strip() for x in args.labels.split(",")]
        if labels is not None and (len(labels) < 2 or len(set(labels)) != len(labels)):
            raise CLIError(f"--labels must name at least two distinct classes, got "
                           f"{args.labels!r}")
    pairs, ys, tinfo = _read(args.data, fields, labels, CLIError)
    if labels is None:
        labels = sorted(set(ys))
        if len(labels) < 2:
            raise CLIError(f"--data {args.data} holds a single label ({labels[0]!r}): a "
                           "classifier needs at least two")
    val = None
    if args.val:
        vpairs, vys, vinfo = _read(args.val, fields, labels, CLIError, "--val")
    if ckpt is None:
        if args.init_from:
            src = load_checkpoint(args.init_from, optimizer=False)
            if not isinstance(src.model, Bert):
                raise CLIError(f"--init-from {args.init_from} holds a "
                               f"{type(src.model).__name__}, not a Bert")
            tokenizer, model = src.tokenizer, src.model
            bad = _arch_contradictions(args, arch_keys(), model.config, "the model")
            if bad:
                raise CLIError(f"--init-from {args.init_from} fine-tunes that model; these "
                               f"flags contradict it: {'; '.join(bad)}")
            if model.config.num_labels != len(labels):
                raise CLIError(f"--init-from {args.init_from}: its classifier has "
                               f"{model.config.num_labels} classes, the data {len(labels)}")
            s["max_len"] = min(s["max_len"], model.config.block_size)
        else:
            t0 = time.perf_counter()
            text = "\n".join(f"{a}\n{b or ''}" for a, b in pairs)
            try:
                tokenizer = BPETokenizer.train(text, s["vocab_size"], specials=BERT_SPECIALS)
            except ValueError as e:
                raise CLIError(f"--vocab-size: {e}") from None
            say(args, f"trained a {tokenizer.vocab_size}-token BPE tokenizer in "
                      f"{time.perf_counter() - t0:.1f}s")
            try:
                cfg = BertConfig(vocab_size=tokenizer.vocab_size, block_size=s["max_len"],
                                 n_layer=s["n_layer"], n_head=s["n_head"], n_embd=s["n_embd"],
                                 dropout=s["dropout"], pooling=s["pooling"],
                                 num_labels=len(labels),
                                 **{k: getattr(args, k) for k in arch_keys()
                                    if getattr(args, k) is not None})
            except ValueError as e:
                raise _config_error(e, MODEL_FLAGS + arch_keys()) from None
            model = Bert.create(cfg, np.random.default_rng(args.seed))
    train = _dataset(tokenizer, pairs, ys, labels, s["max_len"])
    if args.val:
        val = _dataset(tokenizer, vpairs, vys, labels, s["max_len"])
    decay = None
    if ckpt is not None and s["max_iters"] != ckpt.state["train_config"]["max_iters"]:
        # a longer run keeps the schedule it had (as train --resume --max-iters)
        decay = ckpt.state["train_config"]["decay_iters"] or \
            ckpt.state["train_config"]["max_iters"]
    try:
        config = TrainConfig(**{k: s[k] for k in TRAIN_FLAGS}, eval_every=s["eval_every"],
                             decay_iters=decay,
                             eval_iters=s["eval_iters"], log_every=s["log_every"],
                             seed=args.seed if ckpt is None else
                             ckpt.state["train_config"]["seed"],
                             save_every=args.save_every or 0)
    except ValueError as e:
        raise CLIError(str(e)) from None
    info = {"source": "file", "task": "classify", "train": tinfo, "fields": list(fields),
            "labels": labels, "settings": s, "path": tinfo["path"]}
    if args.val:
        info["val"] = vinfo
    trainer = Trainer(model, train, val, config, tokenizer=tokenizer, out_dir=args.out,
                      data_info=info, quiet=args.quiet)
    if ckpt is not None:
        if (ckpt.state.get("data") or {}).get("train", {}).get("sha256") != tinfo["sha256"]:
            say(args, "warning: --data differs from the data this run started with: the "
                      "continuation will differ from an uninterrupted run")
        trainer.load_state(ckpt)
        if trainer.step >= config.max_iters:
            raise CLIError(f"the run in {args.out} is complete ({trainer.step} of "
                           f"{config.max_iters} steps): pass a larger --max-iters to extend it")
        say(args, f"resuming {ckpt.path} at step {trainer.step} of {config.max_iters}")
    else:
        _remove_run(args, held)
    mc = model.config
    say(args, f"Training a Bert classifier ({mc.n_layer} layers, {mc.n_head} heads, "
              f"{mc.n_embd} wide, {model.num_parameters / 1e6:.2f}M parameters, {mc.pooling} "
              f"pooling) on {tinfo['path']}: {len(train)} pairs, classes {', '.join(labels)}"
              f"{f', validation {len(val)} pairs' if val else ''}; {config.max_iters} steps "
              f"of {config.batch_size} pairs, writing {args.out}/"
              f"{_arch_summary(mc, arch_keys())}")
    t0 = time.perf_counter()
    try:
        trainer.train(time_limit=None if args.time_limit is None else args.time_limit * 60)
    except TrainingInterrupted as e:
        what = (f"saved a resumable checkpoint of step {e.step} to {e.checkpoint} (continue "
                f"with: python -m transformer_c classify train --data {args.data} --out "
                f"{args.out} --resume)" if e.checkpoint else "nothing was saved")
        print(f"\ntransformer_c: {e.signal_name} at step {e.step}: {what}", file=sys.stderr,
              flush=True)
        return 130 if e.signal_name == "SIGINT" else 143
    from .viz import plot_loss_curve
    png = os.path.join(args.out, "loss.png")
    if plot_loss_curve(trainer.log_path, png) is not None:
        say(args, f"loss curve: {png}")
    last = trainer.history[-1] if trainer.history else {}
    acc = f", validation accuracy {last['val_acc']:.4f}" if "val_acc" in last else ""
    if trainer.best_selected is not None:
        acc += (f"; best {config.select} {trainer.best_selected:.4f} "
                f"({os.path.join(args.out, 'best')})")
    say(args, f"done: {trainer.step} steps in {time.perf_counter() - t0:.0f}s{acc}")
    return 0


def _eval(args, CLIError, load_checkpoint):
    import numpy as np

    from . import set_num_threads
    from .nn import Bert
    from .viz import confusion_matrix

    if args.threads:
        set_num_threads(args.threads)
    c = load_checkpoint(args.ckpt, optimizer=False)
    if not isinstance(c.model, Bert):
        raise CLIError(f"{c.path} holds a {type(c.model).__name__}, not a classifier (use "
                       "the eval command for language models)")
    info = c.state.get("data") or {}
    labels = list(info.get("labels") or [])
    if len(labels) != c.model.config.num_labels:
        raise CLIError(f"{c.path}: checkpoint.json does not list the model's "
                       f"{c.model.config.num_labels} class names (data.labels)")
    fields = _fields(args.fields, CLIError) or tuple(info.get("fields") or
                                                     ("text_a", "text_b", "label"))
    max_len = (info.get("settings") or {}).get("max_len", c.model.config.block_size)
    pairs, ys, _ = _read(args.data, fields, labels, CLIError)
    ds = _dataset(c.tokenizer, pairs, ys, labels, max_len)
    model = c.model
    model.eval()
    pred = []
    for i in range(0, len(ds), args.batch_size):
        b = ds.batch_at(np.arange(i, min(i + args.batch_size, len(ds))))
        pred.append(model.predict(b["src"], b["token_types"], b["src_lengths"]))
    pred = np.concatenate(pred)
    counts = confusion_matrix(ds.labels, pred, len(labels))
    acc = float(np.mean(pred == ds.labels))
    print(f"{c.path} (step {c.state.get('step')}) on {args.data}: accuracy {acc:.4f} "
          f"({int((pred == ds.labels).sum())}/{len(ds)})")
    width = max(len(x) for x in labels)
    print(" " * (width + 2) + "predicted: " + " ".join(f"{x[:10]:>10}" for x in labels))
    for i, name in enumerate(labels):
        print(f"  {name:>{width}} " + " " * 11 + " ".join(f"{n:>10}" for n in counts[i]))
    if args.confusion:
        from .viz import have_matplotlib, plot_confusion_matrix
        if not have_matplotlib():
            raise CLIError("--confusion needs matplotlib (pip install \"transformer_c[plot]\")")
        fig = plot_confusion_matrix(counts, labels, title=f"accuracy {acc:.3f}")
        fig.savefig(args.confusion, dpi=110)
        print(f"confusion matrix: {args.confusion}")
    print(json.dumps({"accuracy": acc, "n": len(ds), "labels": labels,
                      "confusion": counts.tolist()}))
    return 0
