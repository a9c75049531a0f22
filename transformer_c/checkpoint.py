"""Training checkpoints: one directory per checkpoint.

    checkpoint.json       the version stamp ("format", "format_version", the transformer_c
                          version that wrote it) and the training state: step, best validation
                          loss, tokens seen, elapsed time, the data RNG state, the training
                          configuration, a description of the data
    model.safetensors     the GPT or Bert (its save: tensors + its config in the metadata;
                          the metadata key says which: "bert_config" for a Bert)
    tokenizer.json        the tokenizer (Tokenizer.save)
    optimizer.safetensors the AdamW moments "exp_avg" and "exp_avg_sq" (flat, the layout of
                          GPT.flat_parameters), when saved

A training run (``transformer_c train --out DIR``) keeps two of them: ``DIR/last`` (the
latest, to resume from) and ``DIR/best`` (the lowest validation loss so far).
:func:`resolve` turns a run directory into one of them.

Integrity. checkpoint.json (format 2) lists every other file with its size and SHA-256;
loading verifies them, so a flipped byte, a truncated or swapped file is a
:class:`CheckpointError` naming the file, never silently loaded. Loaded weights and moments
must be finite.

Atomicity. A save writes everything into ``PATH.tmp-PID`` and fsyncs it (checkpoint.json
last: a temporary directory with a verifying checkpoint.json is complete), then moves the
old checkpoint to ``PATH.old-PID``, the new one to ``PATH``, and removes the old one. A
kill at any point leaves at least one complete checkpoint: if ``PATH`` is missing or
incomplete, :func:`resolve` (and so :func:`load`, ``--resume``, ``sample``) recovers the
newest complete one among ``PATH.tmp-*`` / ``PATH.old-*`` (by step), moves it to ``PATH``
and says so in ``Checkpoint.notes``; leftovers of dead processes are removed.
Every loading problem is a :class:`CheckpointError` whose message names the file.
"""
import dataclasses
import glob
import hashlib
import json
import math
import os
import re
import shutil

import numpy as np

FORMAT = "transformer_c.checkpoint"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)  # format 1: no checksums

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
    notes: list = dataclasses.field(default_factory=list)  # what loading had to do (recovery)


def _version():
    from . import __version__
    return __version__


def save(path, *, model, tokenizer, state, optimizer=None):
    """Write a checkpoint directory at ``path`` (replacing one that is there), atomically:
    after a crash at any point a complete checkpoint (the old or the new) is found by
    :func:`resolve`.

    model: a GPT or a Bert; tokenizer: a Tokenizer; state: a JSON-serialisable dict (stored in
    checkpoint.json beside the version stamp and the files' checksums); optimizer: None or
    a dict of flat arrays.
    """
    from .safetensors_io import save_file

    path = os.fspath(path).rstrip(os.sep)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    _remove_dead_leftovers(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    model.save(os.path.join(tmp, "model.safetensors"))
    tokenizer.save(os.path.join(tmp, "tokenizer.json"))
    if optimizer is not None:
        save_file({k: np.ascontiguousarray(v) for k, v in sorted(optimizer.items())},
                  os.path.join(tmp, "optimizer.safetensors"))
    files = {}
    for name in sorted(os.listdir(tmp)):
        file = os.path.join(tmp, name)
        _fsync_file(file)
        files[name] = {"bytes": os.path.getsize(file), "sha256": _sha256(file)}
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION,
            "transformer_c_version": _version(), "files": files}
    meta.update(state)
    with open(os.path.join(tmp, "checkpoint.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(tmp)
    old = f"{path}.old-{os.getpid()}"
    if os.path.exists(path):
        if os.path.exists(old):
            shutil.rmtree(old)
        os.replace(path, old)
    os.replace(tmp, path)
    _fsync_dir(parent)
    if os.path.exists(old):
        shutil.rmtree(old)
    return path


def _sha256(file):
    h = hashlib.sha256()
    with open(file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_file(file):
    with open(file, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # a platform without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_LEFTOVER = re.compile(r"\.(tmp|old)-(\d+)$")


def _pid_alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, not ours
        return True
    return True


def _leftovers(path):
    """[(dir, kind, pid)] of the save leftovers PATH.tmp-PID / PATH.old-PID beside path."""
    out = []
    for d in glob.glob(glob.escape(path) + ".*-*"):
        m = _LEFTOVER.search(d)
        if m and d[:m.start()] == path and os.path.isdir(d):
            out.append((d, m.group(1), int(m.group(2))))
    return out


def _remove_dead_leftovers(path):
    """Remove the leftovers of processes that no longer run, once path is complete."""
    if _complete(path) is None:
        return
    for d, _, pid in _leftovers(path):
        if not _pid_alive(pid):
            shutil.rmtree(d, ignore_errors=True)


def _complete(path):
    """checkpoint.json of path if path is a complete, verifying checkpoint, else None."""
    try:
        meta = read_state(path)
        verify_files(path, meta)
        return meta
    except CheckpointError:
        return None


def recover(path):
    """If the checkpoint directory ``path`` is missing or incomplete, move the newest
    complete save leftover (PATH.tmp-PID / PATH.old-PID, by step) of a process that no
    longer runs into its place. Returns a list of notes saying what was done (empty when
    nothing was needed); removes the dead processes' other leftovers."""
    path = os.fspath(path).rstrip(os.sep)
    notes = []
    if _complete(path) is not None:
        _remove_dead_leftovers(path)
        return notes
    candidates = []
    for d, kind, pid in _leftovers(path):
        if _pid_alive(pid):
            continue
        meta = _complete(d)
        if meta is not None:
            step = meta.get("step")
            candidates.append((step if isinstance(step, int) else -1, kind == "tmp", d))
    if not candidates:
        return notes
    step, _, best = max(candidates)
    if os.path.exists(path):
        broken = f"{path}.broken-{os.getpid()}"
        os.replace(path, broken)
        notes.append(f"{path} was incomplete (an interrupted save): moved to {broken}")
    os.replace(best, path)
    _fsync_dir(os.path.dirname(os.path.abspath(path)))
    notes.append(f"recovered the checkpoint of step {step} from {best} (a save was "
                 f"interrupted) into {path}")
    _remove_dead_leftovers(path)
    return notes


def resolve(path, prefer="best"):
    """The checkpoint directory ``path`` names: ``path`` itself if it holds checkpoint.json,
    else its ``best`` (prefer="best") or ``last`` subdirectory, whichever exists first.
    An interrupted save is recovered first (:func:`recover`)."""
    return _resolve(path, prefer, [])


def _resolve(path, prefer, notes):
    path = os.fspath(path).rstrip(os.sep) or os.sep
    notes += recover(path)
    for sub in ("best", "last"):
        if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "checkpoint.json")):
            notes += recover(os.path.join(path, sub))
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
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError(f"{file} is corrupt: {_one_line(e)}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        fmt = meta.get("format") if isinstance(meta, dict) else None
        raise CheckpointError(f"{file} is not a transformer_c checkpoint description "
                              f"(format {fmt!r})")
    version = meta.get("format_version")
    if version not in READABLE_VERSIONS or isinstance(version, bool):
        raise CheckpointError(
            f"{path} was written by transformer_c {meta.get('transformer_c_version', '?')} in "
            f"checkpoint format {version!r}; this transformer_c ({_version()}) reads formats "
            f"{', '.join(map(str, READABLE_VERSIONS))}")
    _check_state(file, meta)
    return meta


# the training-state fields a checkpoint may hold, with their types
_STATE_TYPES = {"step": int, "tokens_seen": int, "elapsed": (int, float),
                "best_val_loss": (int, float, type(None)),
                "best_selected": (int, float, type(None)), "rng_state": dict,
                "train_config": dict, "data": (dict, type(None)),
                "chars_per_token": (dict, type(None)), "files": dict}


def _check_state(file, meta):
    """CheckpointError naming the field when a known field of checkpoint.json has the
    wrong type or an impossible value."""
    for key, types in _STATE_TYPES.items():
        if key in meta:
            v = meta[key]
            if isinstance(v, bool) or not isinstance(v, types):
                raise CheckpointError(f"{file} is corrupt: {key} is {v!r}")
    for key in ("step", "tokens_seen"):
        if key in meta and meta[key] < 0:
            raise CheckpointError(f"{file} is corrupt: {key} is {meta[key]!r}")
    for key in ("elapsed", "best_val_loss", "best_selected"):
        if isinstance(meta.get(key), float) and not math.isfinite(meta[key]):
            raise CheckpointError(f"{file} is corrupt: {key} is {meta[key]!r}")
    for name, entry in meta.get("files", {}).items():
        if (not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str) or
                not isinstance(entry.get("bytes"), int) or os.sep in name or name in ("", ".", "..")):
            raise CheckpointError(f"{file} is corrupt: files[{name!r}] is {entry!r}")


def verify_files(path, meta):
    """CheckpointError naming the file unless every file checkpoint.json lists (format 2)
    is there with its recorded size and SHA-256. Format 1 checkpoints carry no checksums."""
    for name, entry in meta.get("files", {}).items():
        file = os.path.join(path, name)
        if not os.path.isfile(file):
            raise CheckpointError(f"{path} has no {name} (checkpoint.json lists it)")
        size = os.path.getsize(file)
        if size != entry["bytes"]:
            raise CheckpointError(f"{file} is corrupt: {size} bytes where the checkpoint "
                                  f"recorded {entry['bytes']} (truncated or replaced)")
        if _sha256(file) != entry["sha256"]:
            raise CheckpointError(f"{file} is corrupt: its SHA-256 differs from the one "
                                  "recorded at save time (the file was damaged or changed)")


def load(path, *, optimizer=True, prefer="best"):
    """The :class:`Checkpoint` in directory ``path`` (or its best/last subdirectory, see
    :func:`resolve`); ``optimizer=False`` skips the optimizer state."""
    from safetensors.numpy import load_file

    from .data import load_tokenizer

    notes = []
    path = _resolve(path, prefer, notes)
    meta = read_state(path)
    verify_files(path, meta)
    if meta["format_version"] == 1:
        notes.append(f"{path} is a format-1 checkpoint: its files carry no checksums")
    model_file = os.path.join(path, "model.safetensors")
    if not os.path.isfile(model_file):
        raise CheckpointError(f"{path} has no model.safetensors")
    try:
        model = model_class(model_file).load(model_file)
    except Exception as e:  # safetensors raises its own error types for a damaged file
        raise CheckpointError(f"{model_file} is corrupt: {_one_line(e)}") from None
    if not np.isfinite(model.flat_parameters).all():
        raise CheckpointError(f"{model_file} is corrupt: it holds NaN or infinite weights")
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
            if not np.isfinite(a).all():
                raise CheckpointError(f"{opt_file} is corrupt: {k} holds NaN or infinite values")
    elif optimizer and "optimizer.safetensors" in meta.get("files", {}):
        raise CheckpointError(f"{path} has no optimizer.safetensors (checkpoint.json lists it)")
    return Checkpoint(path, model, tokenizer, meta, opt, notes)


def model_class(model_file):
    """The class that wrote model.safetensors ``model_file``: nn.Bert when its metadata
    holds "bert_config", else nn.GPT."""
    from safetensors import safe_open

    from .nn import GPT, Bert
    with safe_open(os.fspath(model_file), framework="np") as f:
        meta = f.metadata() or {}
    return Bert if Bert._meta_key in meta else GPT


def _one_line(e):
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0] if msg else ''}"
