"""Text generation: greedy, sampling (temperature, top-k, top-p), beam search.

The decoders drive any model through a three-method protocol (:class:`DecodeModel`):
``start(prompts, *, max_new_tokens, max_batch) -> (state, logits (B, V))``, ``step(state, new_tokens (B,)) -> (state,
logits (B, V))`` and ``select(state, rows) -> state``. A model with a KV cache runs the
prompt once in ``start`` and one token per row in ``step``; an encoder-decoder runs its
encoder once in ``start`` (:class:`EncoderDecoderModel`: the prompts are the sources). Any plain function ``logits_fn(ids (n, T)) -> logits (n, T, V)``
works too (wrapped in :class:`FunctionModel`, which recomputes the whole prefix each step).

    from transformer_c.generate import generate
    out = generate(logits_fn, [prompt_a, prompt_b], max_new_tokens=50, temperature=0.8,
                   top_k=40, top_p=0.95, eos_id=0, seed=1)
    out.tokens[0], out.scores[0], out.finish_reasons[0]

Scores are log-probabilities of the generated tokens under the model's next-token
distribution after the repetition penalty (log_softmax in C); see :class:`GenerationOutput`.
:class:`SequenceGenerator` is the coursework-style (CMU HW4) decoder over a
``score_fn(ids (n, T)) -> logits (n, V)``.
"""
from . import _args
from ._args import MAX_NEW_TOKENS
from .beam import beam_search
from .encdec import EncoderDecoderModel
from .gpt import GPTModel
from .model import DecodeModel, FunctionModel, as_model
from .output import GenerationOutput
from .processors import (apply_repetition_penalty, apply_temperature, top_k_filter,
                         top_p_filter)
from .sampling import greedy, sample
from .sequence_generator import SequenceGenerator

__all__ = ["generate", "greedy", "sample", "beam_search", "GenerationOutput", "DecodeModel",
           "FunctionModel", "as_model", "SequenceGenerator", "apply_repetition_penalty",
           "apply_temperature", "top_k_filter", "top_p_filter", "GPTModel",
           "EncoderDecoderModel", "MAX_NEW_TOKENS"]


def generate(model, prompts, *, max_new_tokens=32, temperature=0.0, top_k=0, top_p=1.0,
             repetition_penalty=1.0, num_beams=1, length_penalty=1.0, early_stopping=True,
             num_return_sequences=1, eos_id=None, stop_strings=None, decode=None, seed=None,
             callback=None):
    """Generate continuations of a batch of prompts: one entry point for every strategy.

    num_beams == 1 and temperature == 0 (the default): greedy (:func:`greedy`);
    num_beams == 1 and temperature > 0: sampling with top_k / top_p (:func:`sample`);
    num_beams > 1: beam search (:func:`beam_search`), which is deterministic, so temperature
    must be 0 and top_k / top_p / seed / callback unset.

    model: a :class:`DecodeModel`, a :class:`transformer_c.nn.GPT` (decoded with its KV cache
        in C, :class:`GPTModel`), or a callable ids (n, T) int64 -> logits (n, T, V).
    prompts: a list of 1-D int arrays (lengths may differ), a 2-D int array, or one 1-D
        array. 0 <= max_new_tokens <= MAX_NEW_TOKENS (2**20; a GPT's or EncoderDecoder's
        block size bounds it further). temperature >= 0. top_k >= 0 (0: off).
        top_p in (0, 1] (1: off). repetition_penalty > 0 (1: off; CTRL / Hugging Face).
    num_beams >= 1; length_penalty: beam ranking by sum_logprobs / len ** length_penalty
        (Hugging Face); early_stopping: see :func:`beam_search`.
    num_return_sequences: sequences per prompt (sampling or beam search).
    eos_id: None, an id or a list of ids. stop_strings + decode (list of int -> str): stop a
        row once its decoded new tokens contain a stop string.
    seed: None, int or numpy Generator, for sampling. callback(row, token): streaming, called
        for every new token as it is generated (greedy and sampling).
    Returns a :class:`GenerationOutput` (tokens, logprobs, scores, finish_reasons, ...).
    Bad arguments raise ValueError (TypeError for wrong types) naming the argument.
    """
    temperature = _args.temperature(temperature)
    top_k = _args.top_k(top_k)
    top_p = _args.top_p(top_p)
    num_beams = _args.integer(num_beams, "num_beams", minimum=1)
    if num_beams > 1:
        for name, used in (("temperature", temperature != 0), ("top_k", top_k != 0),
                           ("top_p", top_p != 1.0), ("seed", seed is not None),
                           ("callback", callback is not None)):
            if used:
                raise ValueError(f"{name} cannot be used with beam search (num_beams > 1): "
                                 "beam search is deterministic and its tokens are final "
                                 "only at the end")
        return beam_search(model, prompts, num_beams=num_beams, max_new_tokens=max_new_tokens,
                           length_penalty=length_penalty, early_stopping=early_stopping,
                           num_return_sequences=num_return_sequences,
                           repetition_penalty=repetition_penalty, eos_id=eos_id,
                           stop_strings=stop_strings, decode=decode)
    _args.real(length_penalty, "length_penalty")
    return sample(model, prompts, max_new_tokens=max_new_tokens, temperature=temperature,
                  top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty,
                  eos_id=eos_id, stop_strings=stop_strings, decode=decode, seed=seed,
                  callback=callback, num_return_sequences=num_return_sequences)
