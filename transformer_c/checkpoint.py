"""Training checkpoints: one directory per checkpoint.

    checkpoint.json       the version stamp ("format", "format_version", the transformer_c
                          version that wrote it) and the training state: step, best validation
                          loss, tokens seen, elapsed time, the data RNG state, the training
                          configuration, a description of the data
    model.safetensors     the GPT (GPT.save: tensors + its config in the metadata)
    tokenizer.json        the tokenizer (Tokenizer.save)
    optimizer.safetensors the AdamW moments "exp_avg" and "exp_avg_sq" (flat, the layout of
                          GPT.flat_parameters), when saved

A training run (``transformer_c train --out DIR``) keeps two of them: ``DIR/last`` (the
latest, to resume from) and ``DIR/best`` (the lowest validation loss so far).
:func:`resolve` turns a run directory into one of them. Saving is atomic (a temporary
directory renamed into place), so an interrupted save leaves the previous checkpoint intact.
Every loading problem is a :class:`CheckpointError` whose message names the file.
"""
import dataclasses
import json
import os
import shutil

import numpy as np

FORMAT = "transformer_c.checkpoint"
FORMAT_VERSION = 1

__all__ = ["CheckpointError", "Checkpoint", "save", "load", "resolve", "FORMAT",
           "FORMAT_VERSION"]


class CheckpointError(ValueError):
    """A checkpoint that is missing, from another format version, or corrupt."""


@dataclasses.dataclass
class Checkpoint:
    path: str
    model: object
    tokenizer: object
    state: dict
    optimizer: dict  # {"exp_avg": array, "exp_avg_sq": array} or None


def _version():
    from . import __version__
    return __version__


def save(path, *, model, tokenizer, state, optimizer=None):
    """Write a checkpoint directory at ``path`` (replacing one that is there).

    model: a GPT; tokenizer: a Tokenizer; state: a JSON-serialisable dict (stored in
    checkpoint.json beside the version stamp); optimizer: None or a dict of flat arrays.
    """
    from safetensors.numpy import save_file

    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    model.save(os.path.join(tmp, "model.safetensors"))
    tokenizer.save(os.path.join(tmp, "tokenizer.json"))
    if optimizer is not None:
        save_file({k: np.ascontiguousarray(v) for k, v in optimizer.items()},
                  os.path.join(tmp, "optimizer.safetensors"))
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION,
            "transformer_c_version": _version()}
    meta.update(state)
    with open(os.path.join(tmp, "checkpoint.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    old = f"{path}.old-{os.getpid()}"
    if os.path.exists(path):
        os.replace(path, old)
    os.replace(tmp, path)
    if os.path.exists(old):
        shutil.rmtree(old)
    return path


def resolve(path, prefer="best"):
    """The checkpoint directory ``path`` names: ``path`` itself if it holds checkpoint.json,
    else its ``best`` (prefer="best") or ``last`` subdirectory, whichever exists first."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    if not os.path.isdir(path):
        raise CheckpointError(f"{path} is not a checkpoint directory (a checkpoint is a "
                              "directory written by `transformer_c train --out DIR`)")
    if os.path.isfile(os.path.join(path, "checkpoint.json")):
        return path
    order = ("best", "last") if prefer == "best" else ("last", "best")
    for sub in order:
        if os.path.isfile(os.path.join(path, sub, "checkpoint.json")):
            return os.path.join(path, sub)
    raise CheckpointError(f"{path} is not a transformer_c checkpoint (no checkpoint.json in it "
                          "or in its best/ or last/ subdirectory)")


def read_state(path):
    """checkpoint.json of the checkpoint directory ``path``, version-checked."""
    file = os.path.join(path, "checkpoint.json")
    try:
        with open(file, encoding="utf-8") as f:
            meta = json.load(f)
    except FileNotFoundError:
        raise CheckpointError(f"{path} is not a transformer_c checkpoint (no checkpoint.json)") \
            from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{file} is corrupt: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        fmt = meta.get("format") if isinstance(meta, dict) else None
        raise CheckpointError(f"{file} is not a transformer_c checkpoint description "
                              f"(format {fmt!r})")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was written by transformer_c {meta.get('transformer_c_version', '?')} in "
            f"checkpoint format {version!r}; this transformer_c ({_version()}) reads format "
            f"{FORMAT_VERSION} only")
    return meta


def load(path, *, optimizer=True, prefer="best"):
    """The :class:`Checkpoint` in directory ``path`` (or its best/last subdirectory, see
    :func:`resolve`); ``optimizer=False`` skips the optimizer state."""
    from safetensors.numpy import load_file

    from .data import load_tokenizer
    from .nn import GPT

    path = resolve(path, prefer)
    meta = read_state(path)
    model_file = os.path.join(path, "model.safetensors")
    if not os.path.isfile(model_file):
        raise CheckpointError(f"{path} has no model.safetensors")
    try:
        model = GPT.load(model_file)
    except Exception as e:  # safetensors raises its own error types for a damaged file
        raise CheckpointError(f"{model_file} is corrupt: {_one_line(e)}") from None
    tok_file = os.path.join(path, "tokenizer.json")
    try:
        tokenizer = load_tokenizer(tok_file)
    except FileNotFoundError:
        raise CheckpointError(f"{path} has no tokenizer.json") from None
    except Exception as e:
        raise CheckpointError(f"{tok_file} is corrupt: {_one_line(e)}") from None
    if tokenizer.vocab_size != model.config.vocab_size:
        raise CheckpointError(f"{path}: the tokenizer has {tokenizer.vocab_size} tokens but the "
                              f"model's vocab_size is {model.config.vocab_size}")
    opt = None
    opt_file = os.path.join(path, "optimizer.safetensors")
    if optimizer and os.path.isfile(opt_file):
        try:
            opt = load_file(opt_file)
        except Exception as e:
            raise CheckpointError(f"{opt_file} is corrupt: {_one_line(e)}") from None
        for k in ("exp_avg", "exp_avg_sq"):
            a = opt.get(k)
            if a is None or a.shape != model.flat_parameters.shape or a.dtype != model.dtype:
                raise CheckpointError(f"{opt_file}: {k} is missing or does not match the model "
                                      f"({model.num_parameters} {model.dtype} parameters)")
    return Checkpoint(path, model, tokenizer, meta, opt)


def _one_line(e):
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0] if msg else ''}"
