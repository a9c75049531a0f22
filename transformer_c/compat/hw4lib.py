"""CMU 11-785 HW4 "hw4lib" conventions (seed 001, Task 2): PadMask, CausalMask, LMDataset.

Masks are True = do not attend (padding / the future), built by transformer_c.data's
pad_mask / causal_mask; given torch tensors (when torch is installed) they return a torch
bool tensor on the input's device, so course code can pass them straight to
torch.nn.MultiheadAttention. The SequenceGenerator is
:class:`transformer_c.generate.SequenceGenerator` (re-exported here).
"""
import pathlib

import numpy as np

from .. import data as _data
from ..generate.sequence_generator import SequenceGenerator

__all__ = ["PadMask", "CausalMask", "LMDataset", "SequenceGenerator"]


def _is_torch(x):
    return type(x).__module__.split(".")[0] == "torch"


def _like(mask, ref):
    """mask (NumPy bool) as a torch tensor on ref's device when ref is a torch tensor."""
    if not _is_torch(ref):
        return mask
    import torch

    return torch.from_numpy(mask).to(ref.device)


def _numpy(x):
    return x.detach().cpu().numpy() if _is_torch(x) else np.asarray(x)


def PadMask(padded_input, input_lengths):
    """(N, T) bool, True at padding (t >= input_lengths[n]).

    padded_input: (N, T) or (N, T, ...), NumPy or torch (only its shape is used);
    input_lengths: (N,) integers. Returns NumPy, or torch on padded_input's device."""
    shape = tuple(padded_input.shape)
    return _like(_data.pad_mask(np.empty(shape[:2], np.int8) if len(shape) >= 2
                                else _numpy(padded_input), _numpy(input_lengths)),
                 padded_input)


def CausalMask(padded_input):
    """(T, T) bool, True above the diagonal (the future), T = padded_input.shape[1].

    padded_input: (N, T) or (N, T, ...), NumPy or torch. Returns NumPy, or torch on
    padded_input's device."""
    shape = tuple(padded_input.shape)
    if len(shape) < 2:
        raise ValueError(f"padded_input must have shape (N, T) or (N, T, ...), got {shape}")
    return _like(_data.causal_mask(shape[1]), padded_input)


def _read_text(path):
    """One sentence file: .npy (a str array, 0-d, or 1-d of characters / pieces) or text."""
    if path.suffix == ".npy":
        arr = np.load(path, allow_pickle=False)
        if arr.dtype.kind != "U":
            raise ValueError(f"{path}: expected a str array, got dtype {arr.dtype}")
        return str(arr) if arr.ndim == 0 else "".join(arr.ravel().tolist())
    return path.read_text(encoding="utf-8")


class LMDataset(_data.SentenceDataset):
    """The course's language-model dataset over a folder of per-sentence files.

    LMDataset(partition, config, tokenizer): reads every ``*.npy`` (str arrays) and ``*.txt``
    file of ``config["root"] / partition``, in sorted file-name order, one sentence each;
    ``config["subset"]`` (optional, in (0, 1]) keeps that leading fraction of the files.
    Item i is (shifted, golden): [<SOS>] + ids and ids + [<EOS>] (int64, equal lengths),
    ``collate_fn`` pads a list of items with <PAD> into (shifted (B, L), golden (B, L),
    lengths (B,)). Statistics: ``total_chars``, ``total_tokens`` (golden tokens, <EOS>
    included), ``text_max_len``, and :meth:`get_avg_chars_per_token` for per-character
    perplexity. tokenizer: a transformer_c tokenizer with <PAD>, <SOS>, <EOS>.
    """

    def __init__(self, partition, config, tokenizer):
        root = pathlib.Path(config["root"]) / partition
        if not root.is_dir():
            raise FileNotFoundError(f"no partition folder {root} (config['root'] / partition)")
        files = sorted(p for p in root.iterdir() if p.suffix in (".npy", ".txt"))
        subset = float(config.get("subset", 1.0))
        if not 0.0 < subset <= 1.0:
            raise ValueError(f"config['subset'] must be in (0, 1], got {subset}")
        files = files[:max(1, int(len(files) * subset))] if files else files
        self.partition, self.files = partition, files
        super().__init__([_read_text(p) for p in files], tokenizer,
                         max_length=config.get("max_length"))
        self.sos_token, self.eos_token = tokenizer.sos_id, tokenizer.eos_id
        self.pad_token = tokenizer.pad_id
        self.total_chars, self.total_tokens = self.n_chars, self.n_tokens
        self.text_max_len = max((t.size for t in self.targets), default=0)

    def get_avg_chars_per_token(self):
        """total_chars / total_tokens (per-character perplexity = exp(token NLL / this))."""
        return self.total_chars / self.total_tokens if self.total_tokens else 0.0

    def collate_fn(self, batch):
        """batch: list of (shifted, golden) -> (shifted (B, L), golden (B, L), lengths
        (B,)), int64, padded on the right with <PAD>."""
        return self.collate(batch)
