"""Bookkeeping shared by the decoders (glue only)."""
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
