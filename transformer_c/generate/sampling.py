"""Greedy decoding and sampling (temperature, top-k, top-p, repetition penalty)."""
import numpy as np

from . import _args, _common
from . import processors as P
from .model import as_model
from .output import GenerationOutput

__all__ = ["greedy", "sample"]


def greedy(model, prompts, *, max_new_tokens=32, repetition_penalty=1.0, eos_id=None,
           stop_strings=None, decode=None, callback=None):
    """Greedy decoding: at every step the most probable next token (the lowest id among
    ties), after the repetition penalty.

    model: a :class:`DecodeModel` or a callable ids (n, T) -> logits (n, T, V).
    prompts: a list of 1-D int arrays (lengths may differ), a 2-D int array (one prompt per
        row) or one 1-D int array. Rows are decoded together but independently.
    max_new_tokens: in [0, MAX_NEW_TOKENS] (2**20). repetition_penalty: > 0 (CTRL / Hugging
        Face: a logit of a token already in the row's context is divided by it when
        positive, multiplied when not).
    eos_id: None, an id or a list of ids; a row stops after generating one (it is kept).
    stop_strings: a row stops once ``decode(new_tokens)`` contains one of them (the token
        that completed it is kept); decode: callable list of int -> str.
    callback: called as callback(row, token) for every new token as it is generated.
    Returns a :class:`GenerationOutput`.
    """
    return _decode(model, prompts, max_new_tokens=max_new_tokens, temperature=0.0, top_k=0,
                   top_p=1.0, repetition_penalty=repetition_penalty, eos_id=eos_id,
                   stop_strings=stop_strings, decode=decode, seed=None, callback=callback,
                   num_return_sequences=1)


def sample(model, prompts, *, max_new_tokens=32, temperature=1.0, top_k=0, top_p=1.0,
           repetition_penalty=1.0, eos_id=None, stop_strings=None, decode=None, seed=None,
           callback=None, num_return_sequences=1):
    """Sampling: each next token is drawn from softmax(processed logits), where the logits
    go through the repetition penalty, then temperature, then top-k, then top-p (the Hugging
    Face order).

    temperature >= 0: 0 means greedy (never a division by zero; tiny temperatures approach
        greedy without overflow). top_k >= 0: keep the k most probable tokens (0: all).
    top_p in (0, 1]: keep the smallest set of most probable tokens with probability >= top_p
        (1: all). Both may be combined (top-k first, then top-p on what remains).
    seed: None, an int, or a numpy Generator (used as is: its state advances). Each step
        draws rng.random(n) for the n unfinished rows, in row order, so a seed reproduces
        a batch exactly.
    num_return_sequences: samples per prompt (output rows prompt-major).
    The other arguments and the result are as in :func:`greedy`; ``scores``/``logprobs``
    are log-probabilities under the penalised model distribution (not the truncated,
    temperature-scaled one the token was drawn from).
    """
    return _decode(model, prompts, max_new_tokens=max_new_tokens, temperature=temperature,
                   top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty,
                   eos_id=eos_id, stop_strings=stop_strings, decode=decode, seed=seed,
                   callback=callback, num_return_sequences=num_return_sequences)


def _decode(model, prompts, *, max_new_tokens, temperature, top_k, top_p, repetition_penalty,
            eos_id, stop_strings, decode, seed, callback, num_return_sequences):
    max_new_tokens = _args.new_tokens(max_new_tokens)
    temperature = _args.temperature(temperature)
    top_k = _args.top_k(top_k)
    top_p = _args.top_p(top_p)
    penalty = _args.penalty(repetition_penalty)
    eos = _args.eos_ids(eos_id)
    stop_strings = _args.stop_strings(stop_strings, decode)
    n_ret = _args.integer(num_return_sequences, "num_return_sequences", minimum=1)
    if n_ret > 1 and temperature == 0:
        raise ValueError("num_return_sequences > 1 needs sampling (temperature > 0) or beam "
                         "search: greedy decoding returns one sequence per prompt")
    if callback is not None and not callable(callback):
        raise TypeError("callback must be callable as callback(row, token)")
    rng = _args.generator(seed) if temperature > 0 else None
    model = as_model(model)
    prompts = _args.prompts(prompts)
    in_out = bool(getattr(model, "prompt_in_output", True))

    row_prompts = [p for p in prompts for _ in range(n_ret)]
    N = len(row_prompts)
    tokens = [[] for _ in range(N)]
    lps = [[] for _ in range(N)]
    scores = np.zeros(N, dtype=np.float64)
    reasons = ["length"] * N

    if N and max_new_tokens:
        eos_set = set(eos.tolist())
        state, logits = model.start(prompts, max_new_tokens=max_new_tokens, max_batch=N)
        logits = _common.step_logits(logits, len(prompts), "model.start")
        if n_ret > 1:
            state = model.select(state, np.repeat(np.arange(len(prompts)), n_ret))
            logits = np.repeat(logits, n_ret, axis=0)
        V = logits.shape[1]
        _common.check_eos(eos, V)
        seen = _common.seen_mask(row_prompts, V, in_out) if penalty != 1.0 else None
        active = np.arange(N)
        for t in range(max_new_tokens):
            n = active.size
            pen = logits if seen is None else P.apply_repetition_penalty(logits, seen[active],
                                                                         penalty)
            lp = P.log_probs(pen)
            if temperature == 0:
                tok = P.greedy_tokens(pen)
            else:
                z = P.apply_temperature(pen, temperature)
                z = P.top_k_filter(z, top_k)
                z = P.top_p_filter(z, top_p)
                tok = P.sample_tokens(P.probs(z), rng)
            tok_lp = lp[np.arange(n), tok]
            keep = np.ones(n, dtype=bool)
            for j in range(n):
                row, tk = int(active[j]), int(tok[j])
                tokens[row].append(tk)
                lps[row].append(float(tok_lp[j]))
                scores[row] += float(tok_lp[j])
                if seen is not None:
                    seen[row, tk] = True
                if callback is not None:
                    callback(row, tk)
                reason = _common.stopped(tokens[row], eos_set, stop_strings, decode)
                if reason is not None:
                    reasons[row] = reason
                    keep[j] = False
            active = active[keep]
            if active.size == 0 or t == max_new_tokens - 1:
                break
            if not keep.all():
                state = model.select(state, np.flatnonzero(keep))
            state, logits = model.step(state, tok[keep])
            logits = _common.step_logits(logits, active.size, "model.step")

    return GenerationOutput(
        tokens=[np.asarray(t, dtype=np.int64) for t in tokens],
        logprobs=[np.asarray(x, dtype=np.float64) for x in lps],
        scores=scores, finish_reasons=reasons, prompts=[p.copy() for p in row_prompts],
        prompt_in_output=in_out, num_return_sequences=n_ret)
