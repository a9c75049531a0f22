"""The model interface the decoders drive, and an adapter for plain logits functions.

The decoders in :mod:`transformer_c.generate` never look inside a model: they talk to an
object that implements :class:`DecodeModel` (three methods). A model with a KV cache
implements it by running the prompt once in ``start`` and feeding one token per row in
``step``; an encoder-decoder runs its encoder once in ``start`` and keeps the encoder
output (and the cross-attention keys/values) in the state. :class:`FunctionModel` adapts any
``logits_fn(ids (B, T)) -> logits (B, T, V)`` without a cache (each step recomputes the
whole prefix): it is the reference that cached adapters are tested against.
"""
from typing import Any, Protocol, Sequence, Tuple, runtime_checkable

import numpy as np

from . import _args

__all__ = ["DecodeModel", "FunctionModel", "as_model"]


@runtime_checkable
class DecodeModel(Protocol):
    """What a model adapter implements so that greedy, sampling and beam search can drive it.

    Rows are independent: row i's logits may depend only on row i's prompt and the tokens
    fed to row i so far (this is what makes a batch equal to one-by-one generation). The
    state is opaque to the decoders; they only pass it back.

    ``start(prompts, *, max_new_tokens, max_batch) -> (state, logits)``
        prompts: a list of B 1-D int64 arrays (lengths may differ). Runs the prompts and
        returns the state and the next-token logits of every row, (B, V) float32 or float64.
        The two hints let a cache be allocated once: no row will receive more than
        ``max_new_tokens - 1`` tokens through ``step`` (the decoders never feed the last
        token back), and no state will hold more than ``max_batch`` rows (B * num_beams for
        beam search, B * num_return_sequences for sampling).
    ``step(state, new_tokens) -> (state, logits)``
        new_tokens: (B',) int64, one token per row of ``state``. Appends the token to its row
        and returns the new state and the next-token logits, (B', V). The decoders never use
        a state again after passing it to ``step`` or ``select``, so both may update it in
        place.
    ``select(state, rows) -> state``
        rows: (B'',) int64 indices into the rows of ``state``, possibly repeated, in any
        order. Returns the state whose row j is the old row rows[j] (beam search reorders and
        duplicates beams with it; finished rows are dropped with it).

    Optional attribute ``prompt_in_output`` (default True): whether the prompt is the start
    of the generated sequence (decoder-only: the repetition penalty counts prompt tokens and
    ``GenerationOutput.sequences`` prepends the prompt) or a separate input (the source of
    an encoder-decoder: it does neither).
    """

    def start(self, prompts: Sequence[np.ndarray], *, max_new_tokens: int,
              max_batch: int) -> Tuple[Any, np.ndarray]:
        """(state, logits (B, V)) after reading the B prompts (each (T_b,) int ids): the
        next-token logits of every row. max_new_tokens: the most tokens any row will get;
        max_batch: the most rows the state will hold (beam search widens it)."""

    def step(self, state: Any, new_tokens: np.ndarray) -> Tuple[Any, np.ndarray]:
        """(state, logits (B', V)) after appending new_tokens (B',) int64, one per row."""

    def select(self, state: Any, rows: np.ndarray) -> Any:
        """The state whose row j is the old row rows[j] (rows (B'',) int64 indices,
        possibly repeated, in any order)."""


class FunctionModel:
    """A :class:`DecodeModel` over a plain function, without a cache.

    logits_fn(ids) takes ids (n, T) int64 and returns logits (n, T, V) (every position; the
    last one is used) or, with ``last_only=True``, the next-token logits (n, V). Each step
    calls it again on the whole sequence so far (O(T^2) work over a generation: the slow,
    obviously correct reference). Rows of different lengths are never padded: rows of equal
    length go through one call, so a batch gives the same logits as one row at a time.
    ``context_size`` (optional) feeds only the last ``context_size`` tokens, as a model with
    a fixed block size needs.

    The state is the list of the rows' token arrays.
    """

    prompt_in_output = True

    def __init__(self, logits_fn, *, last_only=False, context_size=None):
        if not callable(logits_fn):
            raise TypeError(f"logits_fn must be callable, got {type(logits_fn).__name__}")
        self.logits_fn = logits_fn
        self.last_only = bool(last_only)
        self.context_size = (None if context_size is None
                             else _args.integer(context_size, "context_size", minimum=1))

    def _logits(self, rows):
        if not rows:
            return np.zeros((0, 0))
        groups = {}
        for i, r in enumerate(rows):
            if r.size == 0:
                raise ValueError(f"prompts[{i}] is empty: a logits function needs at least one "
                                 "token to predict the next (start prompts with a BOS id)")
            groups.setdefault(r.size, []).append(i)
        out = None
        for length, idx in groups.items():
            ids = np.stack([rows[i] for i in idx])
            if self.context_size is not None and length > self.context_size:
                ids = ids[:, length - self.context_size:]
            got = np.asarray(self.logits_fn(ids))
            if self.last_only:
                if got.ndim != 2 or got.shape[0] != len(idx):
                    raise ValueError(f"logits_fn must return next-token logits of shape "
                                     f"({len(idx)}, V) for ids of shape {ids.shape}, "
                                     f"got {got.shape}")
            else:
                if got.ndim != 3 or got.shape[:2] != ids.shape:
                    raise ValueError(f"logits_fn must return logits of shape "
                                     f"({ids.shape[0]}, {ids.shape[1]}, V) for ids of shape "
                                     f"{ids.shape}, got {got.shape}")
                got = got[:, -1, :]
            if out is None:
                out = np.empty((len(rows), got.shape[-1]), dtype=got.dtype)
            elif got.shape[-1] != out.shape[1] or got.dtype != out.dtype:
                raise ValueError("logits_fn returned different vocabulary sizes or dtypes for "
                                 "different lengths")
            out[idx] = got
        return out

    def start(self, prompts, *, max_new_tokens=None, max_batch=None):
        """(state, logits (B, V)): the rows are the prompts themselves; logits_fn runs on them."""
        state = [np.asarray(p, dtype=np.int64) for p in prompts]
        return state, self._logits(state)

    def step(self, state, new_tokens):
        """(state, logits (B', V)) after appending new_tokens (B',), recomputing logits_fn."""
        new_tokens = np.asarray(new_tokens, dtype=np.int64)
        state = [np.append(r, t) for r, t in zip(state, new_tokens)]
        return state, self._logits(state)

    def select(self, state, rows):
        """The rows ``rows`` (indices, possibly repeated) of the state."""
        return [state[int(i)] for i in rows]


def as_model(model):
    """``model`` itself if it implements :class:`DecodeModel`; a KV-cached
    :class:`~transformer_c.generate.GPTModel` for a :class:`transformer_c.nn.GPT` (ffn="moe"
    included: every token routed alone, see GPTModel); a KV-cached
    :class:`~transformer_c.generate.EncoderDecoderModel` (targets start with <SOS> = 1) for a
    :class:`transformer_c.nn.EncoderDecoder` (the prompts are then the sources); else a
    :class:`FunctionModel` over it (a callable ids (n, T) -> logits (n, T, V))."""
    if all(callable(getattr(model, m, None)) for m in ("start", "step", "select")):
        return model
    from ..nn.gpt import GPT

    if isinstance(model, GPT):
        from .gpt import GPTModel

        return GPTModel(model)
    from ..nn.encoder_decoder import EncoderDecoder

    if isinstance(model, EncoderDecoder):
        from .encdec import EncoderDecoderModel

        return EncoderDecoderModel(model)
    if callable(model):
        return FunctionModel(model)
    raise TypeError("model must implement start/step/select (transformer_c.generate."
                    "DecodeModel) or be a callable ids (n, T) -> logits (n, T, V), got "
                    f"{type(model).__name__}")
