"""KV-cached generation for :class:`transformer_c.nn.GPT`: the :class:`DecodeModel` adapter.

``start`` runs the prompts through the whole model once (prefill) and keeps every layer's
keys and values in a cache preallocated in C for the longest sequence the generation can
reach; ``step`` feeds one new token per row and runs the whole model for it in ONE C call
(embedding + position, every layer's layer norms, qkv projection, RoPE, attention against
the cache (``tc_attention_decode``), output projection and MLP, the final layer norm and the
head); ``select`` gathers cache rows (beam search reorders and duplicates beams; finished
rows are dropped).

Prompts of different lengths are **left-padded** to the longest one. The padding slots are
masked out of every attention (a key-padding mask in the cache) and every token keeps its
own position (slot s of a row with p padding slots is position s - p for the learned or
sinusoidal table and the RoPE angle), so each row gets the logits it would get alone, up to
rounding: a batch generates the same tokens as one prompt at a time.

A mixture-of-experts GPT (ffn="moe") routes every token alone, in the prompt and in every
step: no capacity applies (the capacity of one token is 1 and its choice, or its two
choices of two experts, always fit), so a token gets what the module path gives it run
alone, and a batch or a left-padded prompt changes nothing. Capacity is a training device:
a full forward over a whole sequence (``GPT.forward``) routes its B*T tokens together and
may drop some; with a capacity that drops nothing both agree to rounding.
"""
import numpy as np

from .. import _C
from . import _common

__all__ = ["GPTModel"]


class _KVState(_common.CDecoderState):
    """A GPT decoder's state: length counts the cache slots filled in every row."""

    __slots__ = ()
    _STATE = staticmethod(_C.gpt_kv_state)
    _FIELDS = ("rows", "length", "max_batch", "max_len", "cache_bytes")
    _NAME = "KVState"


class GPTModel(_common.CDecodeModel):
    """A :class:`transformer_c.generate.DecodeModel` over a :class:`transformer_c.nn.GPT`
    with a KV cache in C (see the module doc). ``generate(gpt, ...)`` uses it by default.

    GPTModel(gpt): decoding always runs in inference mode (no dropout, whatever
    ``gpt.training``) and reads the GPT's parameters in place (a state started before the
    parameters change sees the new values in its later steps).

    start(prompts, *, max_new_tokens, max_batch) -> (state, logits (B, V)): prompts is a
        list of B non-empty 1-D id arrays, each at most block_size long; the cache holds
        ``max(len(p)) + max_new_tokens - 1`` positions (the decoders never feed the last
        token back), which must not exceed block_size: a longer generation is a ValueError
        (crop or shorten the prompt first). max_new_tokens=None reserves block_size
        positions; max_batch (None: B) bounds the rows of any later state.
    step(state, new_tokens (B',)) -> (state, logits (B', V)); select(state, rows) -> state.
    Logits have the GPT's dtype.
    """

    prompt_in_output = True
    _STEP = staticmethod(_C.gpt_kv_step)
    _SELECT = staticmethod(_C.gpt_kv_select)

    def __init__(self, gpt):
        from ..nn.gpt import GPT

        if not isinstance(gpt, GPT):
            raise TypeError(f"gpt must be a transformer_c.nn.GPT, got {type(gpt).__name__}")
        self.gpt = gpt

    def __repr__(self):
        return f"GPTModel({self.gpt!r})"

    def start(self, prompts, *, max_new_tokens=None, max_batch=None):
        """(state, logits (B, V)): the prompts (each (T_b,) ids) read into a KV cache in C sized
        for their longest plus max_new_tokens and for max_batch rows (default B)."""
        cfg = self.gpt.config
        prompts, lengths = _common.prompt_lengths(
            prompts, cfg.block_size, model="the GPT's", crop="prompt",
            empty="is empty: a GPT needs at least one token to predict the next (start "
                  "prompts with a BOS id)")
        B, T0 = len(prompts), int(lengths.max())
        max_len = _common.cache_length(T0, max_new_tokens, cfg.block_size, model="the GPT's",
                                       start="the longest prompt",
                                       hint=" or shorten the prompts")
        max_batch = _common.batch_bound(B, max_batch)
        idx = np.zeros((B, T0), dtype=np.int64)
        pad = T0 - lengths
        for i, p in enumerate(prompts):
            idx[i, pad[i]:] = p
        decoder = _C.gpt_kv_create(self.gpt.flat_parameters, self.gpt.config.c_fields(),
                                   max_batch, max_len)
        logits = _C.gpt_kv_prefill(decoder, idx, pad)
        return _KVState(decoder), logits
