"""The command line: ``python -m transformer_c COMMAND`` (or ``transformer-c COMMAND``).

    train   train a GPT language model on a text file or the embedded corpus, then sample
    sample  generate text from a checkpoint (or a Hugging Face GPT-2 directory), streaming
    eval    per-token and per-character perplexity of a checkpoint on a text file
    demo    gradient-check a small Decoder, then train it on sequence reversal
    classify train / evaluate a BERT-style pair classifier on JSONL (text_a, text_b, label)
    prepare download a public corpus (e.g. shakespeare) into the cache, checksummed

With no command it runs ``train`` with its defaults: a small character-level GPT on the
embedded corpus (the Python standard library's source), about 70 s of training on 2 idle
cores (README.md states the measurements), then a
sample. Errors in the input (a missing, empty or non-UTF-8 file, a corpus shorter than one
block, a checkpoint from another version or a corrupt one) print one line and exit with 2.
"""
import argparse
import codecs
import hashlib
import math
import os
import re
import sys
import time

from .presets import DEFAULT_PRESET, MODEL_KEYS, PRESETS, TRAIN_KEYS

PROG = "transformer_c"


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


# ---------------------------------------------------------------------------- arguments

_A = {int: "an integer", float: "a number"}


def _positive(kind):
    def parse(s):
        try:
            v = kind(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {_A[kind]}, got {s!r}") from None
        if not v > 0 or (kind is float and not math.isfinite(v)):
            raise argparse.ArgumentTypeError(f"must be > 0, got {s}")
        return v
    parse.__name__ = kind.__name__
    return parse


def _non_negative(kind):
    def parse(s):
        try:
            v = kind(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {_A[kind]}, got {s!r}") from None
        if not v >= 0 or (kind is float and not math.isfinite(v)):
            raise argparse.ArgumentTypeError(f"must be >= 0, got {s}")
        return v
    parse.__name__ = kind.__name__
    return parse


def _number(kind):
    """An argparse type: a finite int / float (the ranges are the model config's to check)."""
    def parse(s):
        try:
            v = kind(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {_A[kind]}, got {s!r}") from None
        if kind is float and not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"must be finite, got {s}")
        return v
    parse.__name__ = kind.__name__
    return parse


# one line of help per architecture flag; the flag's name, type, choices and default come from
# the declaration (presets.ARCH_KEYS: GPTConfig and its BlockOptions)
ARCH_HELP = {
    "position": "position encoding",
    "norm": "where the norms sit: pre (GPT-2) or post (no ln_f)",
    "activation": "the MLP's activation",
    "tie_embeddings": "the output projection is the token embedding (--no-tie-embeddings: a "
                      "separate lm_head)",
    "n_inner": "the MLP width (default 4 * n_embd)",
    "attention": "self-attention pattern (block_sparse: --sparse-block/-window/-stride/-global)",
    "sparse_block": "tokens per block of block_sparse attention",
    "sparse_window": "blocks each query block sees to its left, its own included",
    "sparse_stride": "every N-th key block seen by all (0: none)",
    "sparse_global": "leading blocks that see and are seen by all",
    "ffn": "feed-forward sublayer: mlp, or moe (mixture of experts: --moe-*)",
    "moe_experts": "experts of ffn=moe",
    "moe_top_k": "experts per token of ffn=moe (1 or 2)",
    "moe_capacity": "capacity factor of ffn=moe",
    "moe_aux_weight": "weight of ffn=moe's load-balancing loss",
    "norm_type": "the norms' kernel",
    "qk_norm": "RMS-normalise each head's queries and keys (OLMo 2, Qwen 3)",
    "logit_softcap": "soft-cap the logits at c: c tanh(logits / c) (Gemma 2; 0: off)",
    "n_kv_head": "key/value heads (grouped-query attention; 1: multi-query; default n_head)",
    "gated": "gated MLP: c_proj(act(c_gate(x)) * c_fc(x)) (--activation silu: SwiGLU)",
}


def _flag(key):
    return "--" + key.replace("_", "-")


def _config_defaults(config_cls):
    """{field: default} of a model config dataclass (GPTConfig, BertConfig)."""
    import dataclasses
    return {f.name: f.default for f in dataclasses.fields(config_cls)}


def _arch_flag_kind(key, config_cls):
    """(kind, choices) of an architecture flag from its field of config_cls: an option's
    name (options._KINDS), bool, int or float."""
    import dataclasses

    from .options import _KINDS
    if key in _KINDS:
        return str, _KINDS[key]
    field = {f.name: f for f in dataclasses.fields(config_cls)}[key]
    if field.default is not None:
        return type(field.default), None
    if field.type is int or str(field.type).startswith("int"):  # int or None
        return int, None
    raise TypeError(f"no command-line flag for {config_cls.__name__}.{key} of type "
                    f"{field.type!r}")


def _add_arch_flags(g, keys=None, config_cls=None, choices=None):
    """A flag for every architecture option in ``keys`` (default presets.ARCH_KEYS), derived
    from its field of ``config_cls`` (default GPTConfig): options as choices (``choices``
    may narrow them: {key: names}), bools as --X / --no-X, numbers typed (their ranges are
    checked with the config, naming the flag). Every default is None (not given); the help
    states the config's default."""
    from .nn import GPTConfig
    from .presets import ARCH_KEYS
    config_cls = GPTConfig if config_cls is None else config_cls
    defaults = _config_defaults(config_cls)
    for key in ARCH_KEYS if keys is None else keys:
        kind, names = _arch_flag_kind(key, config_cls)
        names = (choices or {}).get(key, names)
        default = defaults[key]
        text = ARCH_HELP[key] if default is None else f"{ARCH_HELP[key]} (default {default})"
        if names is not None:
            g.add_argument(_flag(key), choices=names, default=None, help=text)
        elif kind is bool:
            g.add_argument(_flag(key), action=argparse.BooleanOptionalAction, default=None,
                           help=text)
        else:
            g.add_argument(_flag(key), type=_number(kind), default=None,
                           metavar=kind.__name__.upper(), help=text)


def _arch_contradictions(args, keys, config, whose):
    """['--norm-type layernorm (WHOSE has rmsnorm)', ...]: the given flags of ``keys`` whose
    value differs from ``config``'s."""
    return [f"{_flag_value(k, getattr(args, k))} ({whose} has {getattr(config, k)})"
            for k in keys if _given(args, k) and getattr(args, k) != getattr(config, k)]


def _flag_value(key, value):
    """How a flag gives ``value``: --qk-norm / --no-qk-norm for a bool, else --n-kv-head 2."""
    if isinstance(value, bool):
        return _flag(key) if value else "--no-" + key.replace("_", "-")
    return f"{_flag(key)} {value}"


def _config_error(e, keys):
    """A model config's ValueError as a CLIError naming the flags of the fields it names."""
    msg = str(e)
    found = sorted((m.start(), k) for k in keys
                   for m in [re.search(rf"(?<![\w-]){k}(?![\w-])", msg)] if m)
    named = ", ".join(_flag(k) for _, k in found)
    return CLIError(f"{named}: {msg}" if named else msg)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (the sub-command parsers inherit it): "transformer_c
    train: error: argument --norm-type: invalid choice: ... (see transformer_c train
    --help)", exit status 2, instead of the whole usage (dozens of lines) before it."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser():
    p = _Parser(prog=PROG, description=__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_version_flag(p)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser("train", help="train a GPT language model (the default command)",
                       description="Train a GPT on --data FILE (or the embedded corpus), "
                       "writing checkpoints (OUT/last, OUT/best), OUT/log.jsonl and "
                       "OUT/loss.png, then print a sample. Presets: "
                       + ", ".join(PRESETS) + f" (default {DEFAULT_PRESET}); explicit flags "
                       "override the preset.")
    g = t.add_argument_group("data")
    g.add_argument("--data", metavar="FILE", help="a UTF-8 text file, or the name of a "
                   "corpus downloaded with prepare (e.g. shakespeare) (default: the embedded "
                   "corpus, the Python standard library's source)")
    g.add_argument("--tokenizer", choices=("char", "bpe"), default="char",
                   help="character-level (default) or byte-level BPE trained on the data")
    g.add_argument("--vocab-size", type=_positive(int), default=1024,
                   help="BPE vocabulary size, specials and bytes included (default 1024)")
    g.add_argument("--val-fraction", type=float, default=0.1,
                   help="the last fraction of the text held out for validation (default 0.1)")
    g = t.add_argument_group("model")
    g.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help=f"model and training settings (default {DEFAULT_PRESET})")
    g.add_argument("--n-layer", type=_positive(int))
    g.add_argument("--n-head", type=_positive(int))
    g.add_argument("--n-embd", type=_positive(int))
    g.add_argument("--block-size", type=_positive(int), help="context length in tokens")
    g.add_argument("--dropout", type=_non_negative(float))
    g.add_argument("--bias", action=argparse.BooleanOptionalAction, default=None,
                   help="biases in linear layers and layer norms")
    _add_arch_flags(t.add_argument_group(
        "architecture", "the GPT's block options (GPTConfig, nn.BlockOptions; a preset may set "
        "them, explicit flags override it; default: GPTConfig's)"))
    g = t.add_argument_group("training")
    g.add_argument("--max-iters", type=_positive(int), help="optimizer steps")
    g.add_argument("--batch-size", type=_positive(int), help="windows per micro-batch")
    g.add_argument("--grad-accum", type=_positive(int), help="micro-batches per step")
    g.add_argument("--lr", type=_positive(float), help="peak learning rate")
    g.add_argument("--min-lr", type=_non_negative(float), help="final learning rate")
    g.add_argument("--warmup-iters", type=_non_negative(int))
    g.add_argument("--schedule", choices=("cosine", "inverse_sqrt", "constant"))
    g.add_argument("--weight-decay", type=_non_negative(float))
    g.add_argument("--beta2", type=_non_negative(float))
    g.add_argument("--optimizer", choices=("adamw", "muon"),
                   help="adamw (default), or muon: Muon on the blocks' weight matrices, "
                   "AdamW (--lr) on the rest")
    g.add_argument("--muon-lr", type=_positive(float),
                   help="Muon's peak learning rate (published units; default 0.02)")
    g.add_argument("--muon-momentum", type=_non_negative(float),
                   help="Muon's momentum (default 0.95)")
    g.add_argument("--grad-clip", type=_non_negative(float), help="global norm bound (0: off)")
    g.add_argument("--label-smoothing", type=_non_negative(float))
    g.add_argument("--eval-every", type=_non_negative(int), help="steps between evaluations")
    g.add_argument("--eval-iters", type=_non_negative(int),
                   help="batches per evaluation and split (0: the whole split)")
    g.add_argument("--log-every", type=_positive(int), help="steps between log.jsonl lines")
    g.add_argument("--seed", type=_non_negative(int), default=1337)
    g.add_argument("--time-limit", type=_positive(float), metavar="MINUTES",
                   help="stop (and checkpoint) after this many minutes")
    g = t.add_argument_group("output")
    g.add_argument("--out", default="out", metavar="DIR",
                   help="run directory: last/, best/, log.jsonl, loss.png (default ./out)")
    g.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint (the model, "
                   "data and optimisation flags must agree with it; --max-iters may extend it)")
    g.add_argument("--overwrite", action="store_true",
                   help="start a new run in an --out that holds one (removing it)")
    g.add_argument("--init-from", metavar="CKPT",
                   help="fine-tune: start a new run from the weights and tokenizer of a "
                   "checkpoint (or run directory); fresh optimizer and schedule")
    g.add_argument("--save-every", type=_non_negative(int), metavar="N",
                   help="also save OUT/last every N steps (0: only at evaluations)")
    g.add_argument("--sample-tokens", type=_non_negative(int), default=300,
                   help="characters/tokens to sample at the end (0: none; default 300)")
    g.add_argument("--threads", type=_positive(int), help="OpenMP threads")
    g.add_argument("--quiet", action="store_true", help="no progress bar, no messages")
    g.add_argument("--distributed", action=argparse.BooleanOptionalAction, default=None,
                   help="data-parallel over MPI ranks: mpirun -np N python -m transformer_c "
                   "train ... (--batch-size is per rank; needs mpi4py: pip install "
                   "\"transformer_c[mpi]\"). Default: on when started by mpirun as one of "
                   "several ranks")

    s = sub.add_parser("sample", help="generate text from a checkpoint or a GPT-2 directory")
    s.add_argument("--ckpt", metavar="DIR",
                   help="a checkpoint, or a run directory (its best/, else last/) (default out)")
    s.add_argument("--hf", metavar="DIR", help="a local Hugging Face GPT-2 directory instead "
                   "(config.json, model.safetensors, tokenizer.json or vocab.json + merges.txt)")
    s.add_argument("--prompt", default="\n", help="the text to continue (default a newline)")
    s.add_argument("--max-new-tokens", type=_non_negative(int), default=500)
    s.add_argument("--temperature", type=_non_negative(float), default=0.8)
    s.add_argument("--top-k", type=_non_negative(int), default=200, help="0: off")
    s.add_argument("--num-samples", type=_positive(int), default=1)
    s.add_argument("--seed", type=_non_negative(int), default=1337)
    s.add_argument("--threads", type=_positive(int))

    e = sub.add_parser("eval", help="perplexity of a checkpoint on a text file")
    e.add_argument("--ckpt", default="out", metavar="DIR",
                   help="a checkpoint, or a run directory (its best/, else last/)")
    e.add_argument("--data", metavar="FILE",
                   help="a UTF-8 text file or a prepared corpus name (default: the validation "
                   "split of the training data)")
    e.add_argument("--batch-size", type=_positive(int), default=16)
    e.add_argument("--threads", type=_positive(int))

    from .cli_classify import add_parser as add_classify_parser
    add_classify_parser(sub, _positive, _non_negative)

    d = sub.add_parser("demo", help="gradient check + sequence reversal with nn.Decoder")
    d.add_argument("--steps", type=_positive(int), default=300, help="training steps")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--threads", type=_positive(int))
    _add_prepare_parser(sub)
    _add_study_parser(sub)
    return p


def _add_study_parser(sub):
    st = sub.add_parser("study", help="run a study (experiment) and write its table and figures",
                        description="Run a study from transformer_c.studies: it writes "
                        "OUT/NAME.json, OUT/NAME.md (the table, the command, threads and wall "
                        "time) and its figures (PNG). --quick: the small settings the tests "
                        "run (a minute or two); the default settings take at most 30 minutes "
                        "on 2 cores. --list: the studies.")
    st.add_argument("name", nargs="?", metavar="NAME", help="the study to run")
    st.add_argument("--list", action="store_true", help="list the studies and exit")
    st.add_argument("--quick", action="store_true", help="small settings (a minute or two)")
    st.add_argument("--out", metavar="DIR", default=None,
                    help="output folder (default: study_results/NAME)")
    st.add_argument("--threads", type=_positive(int))
    st.add_argument("--seed", type=_non_negative(int), default=0)
    st.add_argument("--data-dir", metavar="D", default=None,
                    help="folder holding tinyshakespeare.txt (default: ../shared/data when "
                    "present, else the embedded corpus)")


def _add_version_flag(p):
    from . import __version__
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")


def _add_prepare_parser(sub):
    from .data.download import CORPORA
    r = sub.add_parser("prepare", help="download a public corpus into the cache (checksummed)",
                       description="Download corpora into the cache folder (--cache-dir, else "
                       "$TRANSFORMER_C_DATA_DIR, else $XDG_CACHE_HOME/transformer_c/data), "
                       "check their SHA-256 and print each file's path on stdout (messages go "
                       "to stderr). A corpus already cached is not downloaded again (no "
                       "network access). Then train on it by name: train --data NAME. "
                       "Corpora: " + "; ".join(f"{k}: {c.description}"
                                               for k, c in CORPORA.items()))
    r.add_argument("names", nargs="*", metavar="NAME",
                   help="corpora to prepare (none: list them and whether they are cached)")
    r.add_argument("--cache-dir", metavar="DIR", help="the cache folder to use")
    r.add_argument("--url", help="download from this URL instead (file:// works; one NAME)")


# ---------------------------------------------------------------------------- helpers

def _threads(args):
    if getattr(args, "threads", None):
        import transformer_c
        transformer_c.set_num_threads(args.threads)


def _communicator(args):
    """The distributed.Communicator of a train run (--distributed / --no-distributed / auto);
    CLIError saying what is missing when MPI is asked for and cannot be had."""
    from importlib.util import find_spec

    from .distributed import MPIUnavailable, init, launched_size, mpirun_missing_hint
    if args.distributed:
        missing = []
        if find_spec("mpi4py") is None:
            missing.append("mpi4py is not installed (pip install \"transformer_c[mpi]\")")
        if launched_size() == 1:
            missing.append("this process was not started by mpirun (run: mpirun -np N python "
                           "-m transformer_c train --distributed ...)")
            missing += [h for h in (mpirun_missing_hint(),) if h]
        if missing:
            raise CLIError("--distributed: " + "; ".join(missing))
    try:
        return init(args.distributed)
    except MPIUnavailable as e:
        raise CLIError(str(e)) from None


def _say(args, *msg):
    if not getattr(args, "quiet", False):
        print(*msg, flush=True)


def _load_checkpoint(path, comm=None, **kwargs):
    """checkpoint.load, saying on stderr what loading had to do (a recovered save). With
    several ranks (comm), rank 0 loads first: loading may recover or remove a killed save's
    leftovers, which must not race."""
    from . import checkpoint as ckpt
    several = comm is not None and comm.size > 1
    if several and not comm.is_root:
        comm.barrier()
    c = ckpt.load(path, **kwargs)
    if several and comm.is_root:
        comm.barrier()
    for note in c.notes:
        print(f"{PROG}: note: {note}", file=sys.stderr, flush=True)
    return c


def _plural(n, word):
    return f"{n} {word}{'' if n == 1 else 's'}"


def _read(path):
    from .data import read_text
    try:
        return read_text(path)
    except (OSError, ValueError) as e:
        raise CLIError(str(e)) from None


def _resolve_data_names(args):
    """--data NAME of a prepared corpus (train, eval) becomes its cached file."""
    if getattr(args, "data", None) is not None and args.command in ("train", "eval"):
        from .data.download import resolve_corpus
        args.data = resolve_corpus(args.data)


def _load_corpus(path):
    """(text, data_info) of --data FILE or the embedded corpus."""
    if path is None:
        from .data import default_corpus, default_corpus_info
        try:
            text = default_corpus()
        except RuntimeError as e:
            raise CLIError(str(e)) from None
        info = default_corpus_info()
        return text, {"source": "default-corpus", "python_version": info["python_version"],
                      "n_files": info["n_files"], "n_chars": len(text), "sha256": info["sha256"]}
    text = _read(path)
    return text, {"source": "file", "path": os.path.abspath(path), "n_chars": len(text),
                  "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}


def _describe(info):
    if info.get("source") == "default-corpus":
        return (f"the embedded corpus (Python {info.get('python_version')} standard library "
                f"source, {info.get('n_files')} files)")
    return info.get("path", "?")


def _splits(text, val_fraction, tokenizer, block_size, where):
    from .data import split_text
    if not 0.0 < val_fraction < 1.0:
        raise CLIError(f"--val-fraction must lie in (0, 1), got {val_fraction}")
    parts = []
    for name, part in zip(("training", "validation"), split_text(text, val_fraction)):
        ids = tokenizer.encode(part)
        if ids.size < block_size + 1:
            raise CLIError(f"the {name} split of {where} holds {ids.size} tokens ("
                           f"{len(part)} characters), fewer than one block plus its target "
                           f"(--block-size + 1 = {block_size + 1}): use a longer text or a "
                           "smaller --block-size")
        parts.append((part, ids))
    return parts


def _settings(args):
    """Preset values overridden by explicit flags."""
    preset = PRESETS[args.preset or DEFAULT_PRESET]
    out = {}
    for key in MODEL_KEYS + TRAIN_KEYS:
        v = getattr(args, key, None)
        out[key] = preset[key] if v is None else v
    if args.warmup_iters is None and out["warmup_iters"] >= out["max_iters"]:
        out["warmup_iters"] = out["max_iters"] // 10  # a short run keeps a tenth as warmup
    return out


class _StreamPrinter:
    """Prints generated tokens as they arrive (byte-level BPE tokens through an incremental
    UTF-8 decoder, so a character split over tokens prints once complete)."""

    def __init__(self, tokenizer, out=None):
        self.tok, self.out = tokenizer, out or sys.stdout
        self.dec = codecs.getincrementaldecoder("utf-8")("replace")

    def __call__(self, row, token):
        tok = self.tok
        if hasattr(tok, "token_bytes") and token >= tok.n_special:
            text = self.dec.decode(tok.token_bytes(token))
        else:
            text = self.dec.decode(b"", final=True) + tok.decode([token])
        self.out.write(text)
        self.out.flush()

    def finish(self):
        self.out.write(self.dec.decode(b"", final=True))
        self.out.flush()


def _generate(model, tokenizer, prompt, *, max_new_tokens, temperature, top_k, seed,
              out=None):
    """Stream a continuation of ``prompt``; returns the generated ids."""
    from .generate import FunctionModel, GPTModel, generate

    ids = tokenizer.encode(prompt) if prompt else tokenizer.encode("\n")
    if ids.size == 0:
        raise CLIError("the prompt encodes to no tokens")
    was = model.training
    model.eval()
    printer = _StreamPrinter(tokenizer, out)
    try:
        if ids.size + max_new_tokens - 1 <= model.config.block_size:
            adapter = GPTModel(model)  # KV cache in C
        else:  # longer than the context: a sliding window of block_size tokens, recomputed
            adapter = FunctionModel(lambda x: model.forward(x),
                                    context_size=model.config.block_size)
        result = generate(adapter, [ids], max_new_tokens=max_new_tokens,
                          temperature=temperature, top_k=min(top_k, model.config.vocab_size),
                          seed=seed, callback=printer)
    finally:
        model.train(was)
    printer.finish()
    return result.tokens[0]


# ---------------------------------------------------------------------------- train

def cmd_train(args):
    from .data import StreamDataset
    from .train import Trainer, TrainingInterrupted

    _threads(args)
    comm = args.comm = _communicator(args)
    args.quiet = args.quiet or not comm.is_root  # only rank 0 speaks
    out_dir = args.out
    if args.resume and args.init_from:
        raise CLIError("--resume continues the run in --out; --init-from starts a new one from "
                       "another model's weights: pass one of them")
    if args.resume:
        run = _resume_setup(args)
    else:
        held = _check_fresh_out(args)
        run = _new_run_setup(args)
        comm.barrier()  # every rank has checked --out before rank 0 empties it
        if comm.is_root:
            _remove_run(args, held)  # only once the new run's settings and data are good
    model, tokenizer, config, info = run["model"], run["tokenizer"], run["config"], run["info"]
    (tr_text, tr_ids), (va_text, va_ids) = run["splits"]
    T = model.config.block_size
    trainer = Trainer(model, StreamDataset(tr_ids, T), StreamDataset(va_ids, T), config,
                      tokenizer=tokenizer, out_dir=out_dir,
                      chars_per_token={"train": len(tr_text) / tr_ids.size,
                                       "val": len(va_text) / va_ids.size},
                      data_info=info, quiet=args.quiet, comm=comm)
    if args.resume:
        trainer.load_state(run["checkpoint"])
        if trainer.step >= config.max_iters:
            raise CLIError(f"the run in {out_dir} is complete ({trainer.step} of "
                           f"{config.max_iters} steps): pass a larger --max-iters to extend it")
        _say(args, f"resuming {run['checkpoint'].path} at step {trainer.step} of "
                   f"{config.max_iters}")
        for key in ("world_note", "schedule_note"):
            if run.get(key):
                _say(args, run[key])
    mc = model.config
    _say(args, f"Training a GPT ({_plural(mc.n_layer, 'layer')}, {_plural(mc.n_head, 'head')}, "
               f"{mc.n_embd} wide, "
               f"{model.num_parameters / 1e6:.2f}M parameters, context {T} tokens) on "
               f"{_describe(info)}:\n  {len(run['text']):,} characters, {tokenizer.kind} "
               f"tokenizer of {tokenizer.vocab_size} tokens, {tr_ids.size:,} training / "
               f"{va_ids.size:,} validation tokens\n  {config.max_iters} steps of "
               f"{config.grad_accum} x {_ranks(comm)}{config.batch_size} windows, "
               f"lr {config.lr:g} "
               f"({config.schedule}), writing {out_dir}/{_arch_summary(mc)}")
    time_limit = None if args.time_limit is None else args.time_limit * 60.0
    t0 = time.perf_counter()
    try:
        trainer.train(time_limit=time_limit)
    except TrainingInterrupted as e:
        what = (f"saved a resumable checkpoint of step {e.step} to {e.checkpoint} (continue "
                f"with: python -m transformer_c train --out {out_dir} --resume)"
                if e.checkpoint else "nothing was saved")
        if comm.is_root:
            print(f"\n{PROG}: {e.signal_name} at step {e.step}: {what}", file=sys.stderr,
                  flush=True)
        return 130 if e.signal_name == "SIGINT" else 143
    wall = time.perf_counter() - t0
    if not comm.is_root:
        return 0
    from .viz import plot_loss_curve
    png = os.path.join(out_dir, "loss.png")
    if plot_loss_curve(trainer.log_path, png) is None:
        _say(args, f"matplotlib is not installed: skipping {png} "
                   "(pip install \"transformer_c[plot]\")")
    else:
        _say(args, f"loss curve: {png}")
    best = trainer.best_val_loss
    _say(args, f"done: {trainer.step} steps in {wall:.0f}s; best validation loss "
               f"{best:.4f} (checkpoint {os.path.join(out_dir, 'best')})")
    if args.sample_tokens and not args.quiet:
        print(f"\nA sample ({args.sample_tokens} tokens, temperature 0.8):\n" + "-" * 60,
              flush=True)
        _generate(model, tokenizer, "\n", max_new_tokens=args.sample_tokens, temperature=0.8,
                  top_k=200, seed=args.seed)
        print("\n" + "-" * 60)
        print(f"more: python -m transformer_c sample --ckpt {out_dir} --prompt \"...\"")
    return 0


def _arch_summary(cfg, keys=None):
    """A line (with its leading newline) naming the architecture options (``keys``, default
    presets.ARCH_KEYS) of ``cfg`` that differ from its class's defaults, as flags, e.g.
    "architecture: --norm-type rmsnorm --gated", or ''."""
    from .presets import ARCH_KEYS
    defaults = _config_defaults(type(cfg))
    flags = [_flag_value(k, getattr(cfg, k)) for k in (ARCH_KEYS if keys is None else keys)
             if getattr(cfg, k) != defaults[k]]
    return f"\n  architecture: {' '.join(flags)}" if flags else ""


def _ranks(comm):
    """'N ranks x ' with several ranks, else ''."""
    return f"{comm.size} ranks x " if comm.size > 1 else ""


# what a run directory holds (the files a new run would replace)
RUN_FILES = ("last", "best", "log.jsonl", "loss.png")
# flags a resumed run may change (the rest describe the model, data or optimisation it has)
RESUME_FREE = {"max_iters", "eval_every", "eval_iters", "log_every", "save_every",
               "time_limit", "threads", "quiet", "sample_tokens", "data"}


def _check_fresh_out(args):
    """A new run never silently replaces an old one: --out must not hold a run unless
    --overwrite; returns what it holds (for _remove_run)."""
    out = args.out
    held = [f for f in RUN_FILES if os.path.lexists(os.path.join(out, f))]
    held += [f for f in (os.listdir(out) if os.path.isdir(out) else [])
             if re.match(r"(last|best)\.(tmp|old)-\d+$", f)]
    if held and not args.overwrite:
        raise CLIError(f"{out} already holds a run ({', '.join(sorted(held))}): pass --resume "
                       f"to continue it, a new --out DIR, or --overwrite to replace it")
    return held


def _remove_run(args, held):
    """--overwrite: remove the previous run's files (held, from _check_fresh_out)."""
    import shutil
    if not held:
        return
    out = args.out
    for f in held:
        p = os.path.join(out, f)
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p)
        else:
            os.remove(p)
    _say(args, f"--overwrite: removed the previous run in {out} ({', '.join(sorted(held))})")


def _given(args, key):
    """Whether flag ``key`` was given: not None (the parser's default for most train flags)
    and, for the flags with a real default, not that default."""
    v = getattr(args, key, None)
    return v is not None and (key not in _DEFAULTS or v != _DEFAULTS[key])


_DEFAULTS = {"tokenizer": "char", "vocab_size": 1024, "val_fraction": 0.1, "seed": 1337,
             "sample_tokens": 300, "out": "out"}


def _resume_setup(args):
    from .distributed import rescale_batch
    from .nn import GPT  # noqa: F401  (the checkpoint's model class)
    from .train import TrainConfig, saved_world_size
    comm = getattr(args, "comm", None)
    c = _load_checkpoint(args.out, comm, prefer="last")
    tokenizer, model = c.tokenizer, c.model
    info = c.state.get("data") or {}
    try:
        cfg, world_note = rescale_batch(dict(c.state["train_config"]), saved_world_size(c),
                                        1 if comm is None else comm.size)
    except ValueError as e:
        raise CLIError(f"cannot resume {c.path}: {e}") from None
    model_cfg = model.config
    contradictions = []
    for key in MODEL_KEYS:
        if _given(args, key) and getattr(args, key) != getattr(model_cfg, key):
            contradictions.append(f"{_flag_value(key, getattr(args, key))} (the "
                                  f"checkpoint's model has {getattr(model_cfg, key)})")
    if _given(args, "tokenizer") and args.tokenizer != tokenizer.kind:
        contradictions.append(f"--tokenizer {args.tokenizer} (the checkpoint's is "
                              f"{tokenizer.kind})")
    if _given(args, "vocab_size") and args.vocab_size != tokenizer.vocab_size:
        contradictions.append(f"--vocab-size {args.vocab_size} (the checkpoint's tokenizer "
                              f"has {tokenizer.vocab_size})")
    for key in TRAIN_KEYS + ("seed",):
        if key in RESUME_FREE or not _given(args, key):
            continue
        if key in cfg and getattr(args, key) != cfg[key]:
            contradictions.append(f"--{key.replace('_', '-')} {getattr(args, key)} (the run "
                                  f"uses {cfg[key]})")
    if _given(args, "val_fraction") and args.val_fraction != info.get("val_fraction"):
        contradictions.append(f"--val-fraction {args.val_fraction} (the run uses "
                              f"{info.get('val_fraction')})")
    if args.preset is not None:
        contradictions.append(f"--preset {args.preset} (a resumed run keeps its settings)")
    if contradictions:
        raise CLIError(f"--resume continues {c.path} with its own model and settings; these "
                       f"flags contradict it: {'; '.join(contradictions)} (drop them, or "
                       f"start a new run with a new --out)")
    data = args.data
    if data is None and info.get("source") == "file":
        data = info.get("path")
    text, new_info = _load_corpus(data)
    if new_info.get("sha256") != info.get("sha256"):
        _say(args, f"warning: the data differs from the data this run started with "
                   f"({_describe(info)}): the continuation will differ from an "
                   "uninterrupted run")
    note = None
    if args.save_every is not None:
        cfg["save_every"] = args.save_every
    for key in ("eval_every", "eval_iters", "log_every"):
        if _given(args, key):
            cfg[key] = getattr(args, key)
    if args.max_iters is not None and args.max_iters != cfg["max_iters"]:
        old = cfg["max_iters"]
        if cfg.get("schedule") == "cosine" and cfg.get("decay_iters") is None:
            cfg["decay_iters"] = old
            note = (f"--max-iters {args.max_iters} (was {old}): the cosine schedule keeps its "
                    f"decay over steps {cfg['warmup_iters']}..{old}, so the learning rate "
                    f"continues where it was and stays at min_lr {cfg['min_lr']:g} after step "
                    f"{old}")
        else:
            note = f"--max-iters {args.max_iters} (was {old}): the schedule is unchanged"
        cfg["max_iters"] = args.max_iters
    try:
        config = TrainConfig.from_dict(cfg)
    except ValueError as e:
        raise CLIError(f"cannot resume {c.path}: {e}") from None
    val_fraction = info.get("val_fraction", args.val_fraction)
    splits = _splits(text, val_fraction, tokenizer, model.config.block_size, _describe(info))
    info = dict(info, val_fraction=val_fraction, tokenizer=tokenizer.kind)
    return {"model": model, "tokenizer": tokenizer, "config": config, "info": info,
            "splits": splits, "text": text, "checkpoint": c, "schedule_note": note,
            "world_note": world_note}


def _init_source(args, text):
    """--init-from: the source model (dropout from --dropout if given) and its tokenizer,
    checked against the flags and the new data. Returns an object with model, tokenizer and
    description."""
    import dataclasses
    import types

    from .nn import GPT
    src = args.init_from
    if os.path.isfile(os.path.join(src, "config.json")):  # a Hugging Face GPT-2 directory
        model, tokenizer = load_huggingface(src, "--init-from")
        description = f"Hugging Face GPT-2 {os.path.abspath(src)}"
    else:
        c = _load_checkpoint(src, getattr(args, "comm", None), optimizer=False)
        model, tokenizer = c.model, c.tokenizer
        description = f"checkpoint {c.path} (step {c.state.get('step')})"
    bad = []
    for key in MODEL_KEYS:
        if key == "dropout":  # may change (below)
            continue
        if _given(args, key) and getattr(args, key) != getattr(model.config, key):
            bad.append(f"{_flag_value(key, getattr(args, key))} (the model has "
                       f"{getattr(model.config, key)})")
    if _given(args, "tokenizer") and args.tokenizer != tokenizer.kind:
        bad.append(f"--tokenizer {args.tokenizer} (the model's is {tokenizer.kind})")
    if _given(args, "vocab_size") and args.vocab_size != tokenizer.vocab_size:
        bad.append(f"--vocab-size {args.vocab_size} (the model's tokenizer has "
                   f"{tokenizer.vocab_size})")
    if bad:
        raise CLIError(f"--init-from {src} fine-tunes that model with its tokenizer; these "
                       f"flags contradict it: {'; '.join(bad)}")
    unknown = tokenizer.unknown_characters(text)
    if unknown:
        shown = ", ".join(f"{ch!r} (U+{ord(ch):04X})" for ch in unknown[:10])
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        raise CLIError(f"--init-from {src}: its {tokenizer.kind} tokenizer cannot encode "
                       f"{len(unknown)} character{'s' if len(unknown) != 1 else ''} of the new "
                       f"data ({shown}{more}): fine-tune on text in its vocabulary, or train "
                       f"a new model")
    if _given(args, "dropout") and args.dropout != model.config.dropout:
        cfg = dataclasses.replace(model.config, dropout=args.dropout)
        fresh = GPT.create(cfg, __import__("numpy").random.default_rng(0), dtype=model.dtype)
        fresh.flat_parameters[...] = model.flat_parameters
        model = fresh
    model.train()
    return types.SimpleNamespace(model=model, tokenizer=tokenizer, description=description)


def _new_run_setup(args):
    import numpy as np

    from .data import BPETokenizer, CharTokenizer
    from .nn import GPT, GPTConfig
    from .train import TrainConfig

    s = _settings(args)
    if s["schedule"] == "cosine" and s["warmup_iters"] >= s["max_iters"]:
        raise CLIError(f"--warmup-iters ({s['warmup_iters']}) must be smaller than "
                       f"--max-iters ({s['max_iters']}) with the cosine schedule")
    text, info = _load_corpus(args.data)
    where = _describe(info)
    source = None
    if args.init_from:
        source = _init_source(args, text)
        tokenizer = source.tokenizer
        block = source.model.config.block_size if args.block_size is None else args.block_size
    else:
        t0 = time.perf_counter()
        if args.tokenizer == "char":
            tokenizer = CharTokenizer.train(text)
        else:
            from .data import split_text
            try:
                tokenizer = BPETokenizer.train(split_text(text, args.val_fraction)[0],
                                               args.vocab_size)
            except ValueError as e:
                raise CLIError(f"--vocab-size: {e}") from None
            _say(args, f"trained a {tokenizer.vocab_size}-token BPE tokenizer in "
                       f"{time.perf_counter() - t0:.1f}s")
        block = s["block_size"]
    splits = _splits(text, args.val_fraction, tokenizer, block, where)
    try:
        config = TrainConfig(**{k: s[k] for k in TRAIN_KEYS}, seed=args.seed,
                             save_every=args.save_every or 0)
    except ValueError as e:
        raise CLIError(str(e)) from None
    if source is None:
        try:
            gcfg = GPTConfig(vocab_size=tokenizer.vocab_size,
                             **{k: s[k] for k in MODEL_KEYS})
            model = GPT.create(gcfg, np.random.default_rng(args.seed))
        except ValueError as e:
            raise _config_error(e, MODEL_KEYS) from None
    else:
        model = source.model
    info = dict(info, val_fraction=args.val_fraction, tokenizer=tokenizer.kind)
    if source is not None:
        info["init_from"] = source.description
    return {"model": model, "tokenizer": tokenizer, "config": config, "info": info,
            "splits": splits, "text": text}


# ---------------------------------------------------------------------------- sample / eval

def cmd_sample(args):
    _threads(args)
    model, tokenizer = _sample_source(args)
    _warn_unknown(tokenizer, args.prompt, "--prompt")
    for i in range(args.num_samples):
        if i:
            print("\n" + "-" * 60)
        sys.stdout.write(args.prompt)
        _generate(model, tokenizer, args.prompt, max_new_tokens=args.max_new_tokens,
                  temperature=args.temperature, top_k=args.top_k, seed=args.seed + i)
    print()
    return 0


def _sample_source(args):
    """(model, tokenizer) of sample's --hf DIR or --ckpt DIR (default out)."""
    if args.hf is None:
        c = _load_checkpoint(args.ckpt or "out", optimizer=False)
        return c.model, c.tokenizer
    if args.ckpt is not None:
        raise CLIError("--ckpt and --hf both name a model: pass one")
    return load_huggingface(args.hf)


def load_huggingface(path, flag="--hf"):
    """(GPT, GPT2Tokenizer) of a local Hugging Face GPT-2 directory; CLIError (one line,
    naming ``flag``) for what is missing or cannot run."""
    from safetensors import SafetensorError

    from .data import GPT2Tokenizer
    from .nn import GPT
    try:
        model = GPT.from_huggingface(path)
        tokenizer = GPT2Tokenizer.from_huggingface(path)
    except (OSError, ValueError, KeyError, SafetensorError) as e:
        raise CLIError(f"{flag} {path}: {e}") from None
    if tokenizer.vocab_size > model.config.vocab_size:
        raise CLIError(f"{flag} {path}: the tokenizer has {tokenizer.vocab_size} tokens, more "
                       f"than the model's vocab_size {model.config.vocab_size}")
    return model, tokenizer


def _warn_unknown(tokenizer, text, what):
    """A warning on stderr naming the characters of ``text`` the tokenizer encodes as <UNK>
    (an error if it has no <UNK>)."""
    unknown = tokenizer.unknown_characters(text)
    if unknown:
        names = ", ".join(f"{c!r} (U+{ord(c):04X})" for c in unknown)
        if tokenizer.unk_id is None:
            raise CLIError(f"{what} holds characters the tokenizer does not know (and it has "
                           f"no <UNK>): {names}")
        print(f"{PROG}: warning: {what} holds characters the tokenizer does not know, each "
              f"encoded as <UNK>: {names}", file=sys.stderr, flush=True)


def evaluate_text(model, tokenizer, text, batch_size=16):
    """{"loss", "ppl", "ppl_char", "tokens", "chars"}: the mean next-token loss over every
    non-overlapping window of block_size tokens of ``text`` (the targets are one contiguous
    run of tokens; a text shorter than a block is one shorter window), per-token and
    per-character perplexity (characters of the target tokens' text)."""
    import numpy as np

    from .data import StreamDataset
    ids = tokenizer.encode(text)
    if ids.size < 2:
        raise CLIError(f"the text holds {ids.size} token(s): perplexity needs at least 2")
    T = min(model.config.block_size, ids.size - 1)
    data = StreamDataset(ids, T)
    was = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for x, y in data.eval_batches(batch_size):
            total += model.loss(x, y) * y.size
            count += y.size
    finally:
        model.train(was)
    loss = total / count
    chars = len(tokenizer.decode(ids[1:1 + count]))
    unk = tokenizer.unk_id
    return {"loss": loss, "ppl": math.exp(min(loss, 700)),
            "ppl_char": math.exp(min(total / max(chars, 1), 700)), "tokens": count,
            "chars": chars, "unknown": int(np.sum(ids == unk)) if unk is not None else 0}


def cmd_eval(args):
    from .data import split_text
    _threads(args)
    c = _load_checkpoint(args.ckpt, optimizer=False)
    if args.data is not None:
        text, where = _read(args.data), args.data
    else:
        info = c.state.get("data", {})
        text, _ = _load_corpus(info.get("path") if info.get("source") == "file" else None)
        text = split_text(text, info.get("val_fraction", 0.1))[1]
        where = f"the validation split of {_describe(info)}"
    r = evaluate_text(c.model, c.tokenizer, text, args.batch_size)
    print(f"{where} ({c.path}, step {c.state.get('step')}):\n"
          f"  loss {r['loss']:.4f} nats/token over {r['tokens']:,} tokens ({r['chars']:,} "
          f"characters)\n  perplexity {r['ppl']:.3f} per token, {r['ppl_char']:.3f} per "
          f"character")
    if r["unknown"]:
        print(f"  note: {r['unknown']} characters are not in the tokenizer's vocabulary "
              "(encoded as <UNK>)")
    return 0


def cmd_classify(args):
    from .cli_classify import cmd_classify as run
    return run(args, CLIError, _say, _load_checkpoint)


def cmd_demo(args):
    from .demo import run
    _threads(args)
    run(steps=args.steps, seed=args.seed)
    return 0


def cmd_study(args):
    from . import studies
    if args.list or args.name is None:
        if not args.list:
            raise CLIError("study: give a study NAME or --list")
        for name, st in studies.STUDIES.items():
            print(f"{name:16s} {st.summary}")
        return 0
    if args.name not in studies.STUDIES:
        raise CLIError(f"study: unknown study {args.name!r}; studies: "
                       f"{', '.join(studies.STUDIES)}")
    if args.data_dir is not None and not os.path.isdir(args.data_dir):
        raise CLIError(f"study: --data-dir {args.data_dir!r} is not a directory")
    out = args.out if args.out is not None else os.path.join("study_results", args.name)
    report = studies.run(args.name, out, quick=args.quick, seed=args.seed,
                         threads=args.threads, data_dir=args.data_dir)
    print(report.markdown())
    print(f"wrote {os.path.join(out, args.name)}.json, .md and {len(report.figures)} "
          f"figure(s) to {out}")
    return 0


def cmd_prepare(args):
    from .data.download import CORPORA, cached_path, data_dir, prepare
    if not args.names:
        print(f"corpora (cache folder {data_dir(args.cache_dir)}):")
        for name, c in CORPORA.items():
            state = "cached" if cached_path(name, args.cache_dir) else "not downloaded"
            print(f"  {name:18s} {state:15s} {c.description}")
        return 0
    if args.url is not None and len(args.names) != 1:
        raise CLIError("--url names one file: pass exactly one NAME with it")
    for name in args.names:
        path = prepare(name, cache_dir=args.cache_dir, url=args.url,
                       progress=lambda msg: print(msg, file=sys.stderr, flush=True))
        print(path, flush=True)
    return 0


# ---------------------------------------------------------------------------- main

def main(argv=None):
    from .checkpoint import CheckpointError
    from .data.download import DataError

    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version"):
        argv = ["train"] + argv  # the default command
    args = parser.parse_args(argv)
    commands = {"train": cmd_train, "sample": cmd_sample, "eval": cmd_eval, "demo": cmd_demo,
                "prepare": cmd_prepare, "study": cmd_study, "classify": cmd_classify}
    try:
        _resolve_data_names(args)
        return commands[args.command](args)
    except (CLIError, CheckpointError, DataError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
