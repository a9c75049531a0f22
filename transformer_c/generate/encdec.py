"""KV-cached generation for :class:`transformer_c.nn.EncoderDecoder`: the :class:`DecodeModel`
adapter.

The prompts are the **sources**. ``start`` runs the encoder ONCE on the batch of sources
(right-padded to the longest, with a key-padding mask), computes every decoder layer's
cross-attention keys and values of the encoder's output ONCE, and runs the decoder on the
target prefix (``<SOS>`` by default); ``step`` feeds one new target token per row and runs
the whole decoder for it in ONE C call (self-attention against a cache preallocated for the
longest target the generation can reach, cross-attention against the cached keys and values
with the source padding masked, MLP, ln_f, head); ``select`` gathers the rows of both caches
and of the mask (beam search reorders and duplicates beams; finished rows are dropped).

Every row gets the logits it would get alone, up to rounding: a batch of sources of
different lengths generates the same tokens as one source at a time. The generated tokens
are the target (``GenerationOutput.sequences`` does not prepend the source, and the
repetition penalty does not count source tokens).
"""
import numpy as np

from .. import _C
from . import _args, _common

__all__ = ["EncoderDecoderModel"]


class _EncDecState(_common.CDecoderState):
    """An encoder-decoder decoder's state: length counts the target positions filled in
    every row (the prefix plus the tokens fed), source_length the batch's padded source."""

    __slots__ = ()
    _STATE = staticmethod(_C.encdec_kv_state)
    _FIELDS = ("rows", "length", "source_length", "max_batch", "max_len", "max_src_len",
               "cache_bytes")
    _NAME = "EncDecKVState"

    @property
    def source_length(self):
        """The (padded) source length of the batch."""
        return self._field("source_length")


class EncoderDecoderModel(_common.CDecodeModel):
    """A :class:`transformer_c.generate.DecodeModel` over a
    :class:`transformer_c.nn.EncoderDecoder` with its caches in C (see the module doc).
    ``generate(model, sources, ...)`` uses it by default (with ``bos_id=1``).

    EncoderDecoderModel(model, *, bos_id=1, prefix=None): every target starts with
    ``bos_id`` (transformer_c.data's ``<SOS>`` is 1), or with the 1-D id array ``prefix``
    (the same for every row) when given. Decoding always runs in inference mode (no dropout,
    whatever ``model.training``) and reads the model's parameters in place.

    start(sources, *, max_new_tokens, max_batch) -> (state, logits (B, tgt_vocab_size)):
        sources is a list of B non-empty 1-D source id arrays (lengths may differ), each at
        most block_size long. The self-attention cache holds ``len(prefix) + max_new_tokens
        - 1`` target positions, which must not exceed block_size (a ValueError otherwise);
        max_new_tokens=None reserves block_size positions; max_batch (None: B) bounds the
        rows of any later state.
    step(state, new_tokens (B',)) -> (state, logits (B', V)); select(state, rows) -> state.
    Logits have the model's dtype.
    """

    prompt_in_output = False
    _STEP = staticmethod(_C.encdec_kv_step)
    _SELECT = staticmethod(_C.encdec_kv_select)

    def __init__(self, model, *, bos_id=1, prefix=None):
        from ..nn.encoder_decoder import EncoderDecoder

        if not isinstance(model, EncoderDecoder):
            raise TypeError(f"model must be a transformer_c.nn.EncoderDecoder, got "
                            f"{type(model).__name__}")
        V = model.config.tgt_vocab_size
        if prefix is None:
            bos_id = _args.integer(bos_id, "bos_id", minimum=0)
            if bos_id >= V:
                raise ValueError(f"bos_id {bos_id} is out of range for a target vocabulary of "
                                 f"{V}")
            prefix = np.array([bos_id], dtype=np.int64)
        else:
            prefix = np.asarray(prefix)
            if prefix.ndim != 1 or prefix.size == 0:
                raise ValueError(f"prefix must be a non-empty 1-D id array, got shape "
                                 f"{prefix.shape}")
            if prefix.dtype == np.bool_ or not np.issubdtype(prefix.dtype, np.integer):
                raise TypeError(f"prefix must hold integer token ids, got dtype {prefix.dtype}")
            if prefix.min() < 0 or prefix.max() >= V:
                raise ValueError(f"prefix holds ids outside [0, {V})")
            if prefix.size > model.config.block_size:
                raise ValueError(f"prefix has {prefix.size} tokens but the block_size is "
                                 f"{model.config.block_size}")
            prefix = prefix.astype(np.int64)
        self.model = model
        self.prefix = prefix

    def __repr__(self):
        return f"EncoderDecoderModel({self.model!r}, prefix={self.prefix.tolist()})"

    def start(self, prompts, *, max_new_tokens=None, max_batch=None):
        """(state, logits (B, V)): the prompts are the sources (each (S_b,) ids), encoded once;
        every decoder layer's cross-attention keys / values cached; the targets start with
        <SOS> (or the prefix)."""
        cfg = self.model.config
        sources, lengths = _common.prompt_lengths(
            prompts, cfg.block_size, model="the model's", crop="source",
            empty="is an empty source: an encoder-decoder needs at least one source token")
        B, T0 = len(sources), self.prefix.size
        max_len = _common.cache_length(T0, max_new_tokens, cfg.block_size, model="the model's",
                                       start="the target prefix", positions="target positions")
        max_batch = _common.batch_bound(B, max_batch)
        S = int(lengths.max())
        src = np.zeros((B, S), dtype=np.int64)
        for i, s in enumerate(sources):
            src[i, :s.size] = s
        mask = np.arange(S)[None, :] < lengths[:, None]
        mask = None if mask.all() else mask
        decoder = _C.encdec_kv_create(self.model.flat_parameters,
                                      self.model.config.c_fields(), max_batch, max_len, S)
        tgt = np.broadcast_to(self.prefix, (B, T0))
        logits = _C.encdec_kv_prefill(decoder, src, mask, np.ascontiguousarray(tgt))
        return _EncDecState(decoder), logits
