"""Bookkeeping shared by the decoders and by the DecodeModels over C decoders (glue only)."""
import numpy as np

from . import _args


def step_logits(logits, rows, where):
    """Check a model's (rows, V) logits: float dtype, shape, a finite maximum in every row
    (NaN or +inf anywhere, or a row of only -inf, is a ValueError)."""
    logits = _args.check_logits(logits, rows, where)
    if rows:
        m = logits.max(axis=-1)
        if not np.all(np.isfinite(m)):
            bad = int(np.flatnonzero(~np.isfinite(m))[0])
            raise ValueError(f"{where} returned logits with NaN or +inf, or without a finite "
                             f"value, in row {bad}")
    return logits


def check_eos(eos, V):
    if eos.size and eos.max() >= V:
        raise ValueError(f"eos_id {int(eos.max())} is out of range for a vocabulary of {V}")


def seen_mask(prompts, V, include_prompt):
    """(n, V) bool: the tokens of each row's context (its prompt when ``include_prompt``;
    prompt ids >= V are ignored: they are not output tokens)."""
    seen = np.zeros((len(prompts), V), dtype=bool)
    if include_prompt:
        for i, p in enumerate(prompts):
            seen[i, p[p < V]] = True
    return seen


def stopped(tokens, eos_set, stop_strings, decode):
    """'eos' if the last token is an end id, 'stop' if the decoded tokens contain a stop
    string, else None. tokens: list of int (the new tokens of one row)."""
    if tokens[-1] in eos_set:
        return "eos"
    if stop_strings:
        text = decode(list(tokens))
        if not isinstance(text, str):
            raise TypeError(f"decode must return a str, got {type(text).__name__}")
        if any(s in text for s in stop_strings):
            return "stop"
    return None


class CDecoderState:
    """The state a model with a C decoder (capsule) hands the decoders, updated in place by
    ``step`` and ``select`` (the decoders never reuse a state they passed on). Subclasses
    name the _C function returning the decoder's state tuple (``_STATE``), its fields in
    order (``_FIELDS``, which include rows, length and cache_bytes) and the repr name."""

    __slots__ = ("decoder",)
    _STATE = None
    _FIELDS = ()
    _NAME = "CDecoderState"

    def __init__(self, decoder):
        self.decoder = decoder

    def _field(self, name):
        return type(self)._STATE(self.decoder)[self._FIELDS.index(name)]

    @property
    def rows(self):
        return self._field("rows")

    @property
    def length(self):
        """Positions filled in every row (the padded prompt or prefix plus the tokens fed)."""
        return self._field("length")

    @property
    def cache_bytes(self):
        return self._field("cache_bytes")

    def __repr__(self):
        values = type(self)._STATE(self.decoder)
        return f"{self._NAME}(" + ", ".join(f"{k}={v}" for k, v in zip(self._FIELDS, values)) + ")"


def prompt_lengths(prompts, block_size, *, model, empty, crop):
    """(prompts as a list of 1-D int64 id arrays, lengths (B,) int64) for a DecodeModel's
    start: at least one prompt, none empty (``empty`` says why in the ValueError), none
    longer than block_size (``model``'s, e.g. "the GPT's"; ``crop`` names what to crop)."""
    prompts = _args.prompts(prompts)
    if not prompts:
        raise ValueError(f"prompts is empty: give at least one {crop}")
    lengths = np.array([p.size for p in prompts], dtype=np.int64)
    for i, n in enumerate(lengths.tolist()):
        if n == 0:
            raise ValueError(f"prompts[{i}] {empty}")
        if n > block_size:
            raise ValueError(f"prompts[{i}] has {n} tokens but {model} block_size is "
                             f"{block_size}: crop the {crop}")
    return prompts, lengths


def cache_length(T0, max_new_tokens, block_size, *, model, start, positions="positions",
                 hint=""):
    """The positions a C decoder's cache must hold when it starts from T0 positions
    (``start`` names them, e.g. "the longest prompt") and feeds max_new_tokens - 1 more
    (the last token is never fed back); max_new_tokens None: block_size. ValueError naming
    max_new_tokens beyond block_size (``model``'s; ``hint`` ends the message)."""
    if max_new_tokens is None:
        return block_size
    max_new_tokens = _args.integer(max_new_tokens, "max_new_tokens", minimum=0)
    max_len = max(T0, T0 + max_new_tokens - 1)
    if max_len > block_size:
        raise ValueError(
            f"max length exceeded: {start} ({T0} tokens) + max_new_tokens "
            f"({max_new_tokens}) - 1 = {max_len} {positions}, but {model} block_size is "
            f"{block_size}: lower max_new_tokens to at most {block_size - T0 + 1}{hint}")
    return max_len


def batch_bound(B, max_batch):
    """The rows a decoder is created for: B, or max_batch (an int >= 1) when larger."""
    return B if max_batch is None else max(B, _args.integer(max_batch, "max_batch", minimum=1))


class CDecodeModel:
    """step and select of a DecodeModel whose state is a :class:`CDecoderState` over a C
    decoder: subclasses name the decoder's _C step (``_STEP``) and select (``_SELECT``)."""

    _STEP = None
    _SELECT = None

    def step(self, state, new_tokens):
        """(state, logits (B', V)) after feeding new_tokens (B',), one per row."""
        new_tokens = np.asarray(new_tokens)
        return state, type(self)._STEP(state.decoder, new_tokens.reshape(-1)
                                       if new_tokens.ndim == 0 else new_tokens)

    def select(self, state, rows):
        """The state with row j = old row rows[j] (rows (B2,))."""
        type(self)._SELECT(state.decoder, np.asarray(rows))
        return state
