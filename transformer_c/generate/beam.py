"""Beam search with a length penalty, early stopping and n-best output.

The algorithm is Hugging Face's (BeamSearchScorer), written out:

- every prompt keeps up to ``num_beams`` live beams (it starts with one: the prompt);
  a beam's score is the sum of the log-probabilities of its new tokens under
  log_softmax(penalised logits) (the repetition penalty is the only logits processor);
- at each step the candidates of a prompt (every live beam extended by every token, scored
  beam score + token log-probability) are ranked best first (ties: lower beam, then lower
  token id) and the best 2 * num_beams are walked in order: a candidate that ends the beam
  (an <EOS> id, or a stop string in the decoded new tokens) becomes a finished hypothesis
  when it ranks among the first num_beams (else it is skipped); any other candidate becomes
  a live beam of the next step, until there are num_beams of them;
- finished hypotheses are ranked by the length-normalised score
  ``sum_logprobs / generated_len ** length_penalty`` (Hugging Face's convention, where
  generated_len counts the new tokens including the <EOS>; NOT GNMT's ((5 + len) / 6) **
  alpha); a prompt keeps its num_beams best;
- a prompt is done when it has num_beams finished hypotheses and early_stopping is True, or,
  with early_stopping False, when no live beam can still beat the worst kept hypothesis (an
  exact bound: log-probabilities are <= 0, so a beam with score s at length L can at best
  reach s / max_new_tokens ** length_penalty when length_penalty > 0 and
  s / (L + 1) ** length_penalty otherwise); or when it has no live beam left;
- at max_new_tokens the remaining live beams become hypotheses (finish reason "length").
"""
import numpy as np

from . import _args, _common
from . import processors as P
from .model import as_model
from .output import GenerationOutput

__all__ = ["beam_search"]


class _Hyps:
    """The num_beams best finished hypotheses of one prompt, best first (stable on ties)."""

    def __init__(self, num_beams, length_penalty):
        self.k, self.alpha, self.items = num_beams, length_penalty, []

    def norm(self, total, length):
        return total / (length ** self.alpha) if length else total

    def add(self, total, tokens, lps, reason):
        score = self.norm(total, len(tokens))
        if len(self.items) >= self.k and score <= self.items[-1][0]:
            return
        self.items.append((score, total, tokens, lps, reason))
        self.items.sort(key=lambda h: -h[0])
        del self.items[self.k:]

    def full(self):
        return len(self.items) >= self.k

    def worst(self):
        return self.items[-1][0]


def beam_search(model, prompts, *, num_beams=4, max_new_tokens=32, length_penalty=1.0,
                early_stopping=True, num_return_sequences=1, repetition_penalty=1.0,
                eos_id=None, stop_strings=None, decode=None):
    """Beam search over a :class:`DecodeModel` (or a callable ids (n, T) -> logits (n, T, V)).

    num_beams >= 1 (1 gives the greedy result); 0 <= max_new_tokens <= MAX_NEW_TOKENS;
    length_penalty: real,
    hypotheses are ranked by sum_logprobs / generated_len ** length_penalty (Hugging Face;
    0: raw log-probability, favours short outputs; > 0 favours longer ones);
    early_stopping: True stops a prompt as soon as it has num_beams finished hypotheses,
    False searches until no live beam can beat them; num_return_sequences in [1, num_beams]:
    the n best hypotheses per prompt, best first (if a tiny vocabulary gives fewer distinct
    hypotheses, the last one is repeated). repetition_penalty, eos_id, stop_strings, decode
    as in :func:`transformer_c.generate.greedy` (no streaming callback: no token is final
    before the search ends).
    Returns a :class:`GenerationOutput` whose ``scores`` are the sums of log-probabilities
    and ``beam_scores`` the length-normalised scores the ranking used.
    """
    W = _args.integer(num_beams, "num_beams", minimum=1)
    max_new_tokens = _args.new_tokens(max_new_tokens)
    alpha = _args.real(length_penalty, "length_penalty")
    if not isinstance(early_stopping, (bool, np.bool_)):
        raise TypeError("early_stopping must be True or False")
    n_ret = _args.integer(num_return_sequences, "num_return_sequences", minimum=1)
    if n_ret > W:
        raise ValueError(f"num_return_sequences ({n_ret}) must be <= num_beams ({W})")
    penalty = _args.penalty(repetition_penalty)
    eos = _args.eos_ids(eos_id)
    stop_strings = _args.stop_strings(stop_strings, decode)
    model = as_model(model)
    prompts = _args.prompts(prompts)
    in_out = bool(getattr(model, "prompt_in_output", True))
    B = len(prompts)
    hyps = [_Hyps(W, alpha) for _ in range(B)]

    if B and max_new_tokens:
        eos_set = set(eos.tolist())
        state, logits = model.start(prompts, max_new_tokens=max_new_tokens, max_batch=B * W)
        logits = _common.step_logits(logits, B, "model.start")
        V = logits.shape[1]
        _common.check_eos(eos, V)
        seen = _common.seen_mask(prompts, V, in_out) if penalty != 1.0 else None
        # live beams of the active prompts, in state row order: (prompt, score, tokens, lps)
        live = [(b, 0.0, (), ()) for b in range(B)]
        for t in range(max_new_tokens):
            pen = logits if seen is None else P.apply_repetition_penalty(logits, seen, penalty)
            lp = P.log_probs(pen).astype(np.float64, copy=False)
            nxt, src = [], []
            r0 = 0
            while r0 < len(live):
                b = live[r0][0]
                r1 = r0
                while r1 < len(live) and live[r1][0] == b:
                    r1 += 1
                sums = np.array([live[r][1] for r in range(r0, r1)])
                cand = (sums[:, None] + lp[r0:r1]).reshape(-1)
                order = _best(cand, 2 * W)
                chosen = []
                for rank, f in enumerate(order.tolist()):
                    r, tok = r0 + f // V, f % V
                    _, total, toks, lps = live[r]
                    total = total + float(lp[r, tok])
                    toks, lps = toks + (tok,), lps + (float(lp[r, tok]),)
                    reason = _common.stopped(toks, eos_set, stop_strings, decode)
                    if reason is not None:
                        if rank < W:
                            hyps[b].add(total, toks, lps, reason)
                    else:
                        chosen.append((r, (b, total, toks, lps)))
                        if len(chosen) == W:
                            break
                if chosen and not _done(hyps[b], [c[1][1] for c in chosen], t + 1,
                                        max_new_tokens, early_stopping, alpha):
                    src += [c[0] for c in chosen]
                    nxt += [c[1] for c in chosen]
                r0 = r1
            live = nxt
            if not live or t == max_new_tokens - 1:
                break
            src = np.asarray(src, dtype=np.int64)
            new_tokens = np.asarray([beam[2][-1] for beam in live], dtype=np.int64)
            if src.size != logits.shape[0] or np.any(src != np.arange(src.size)):
                state = model.select(state, src)
            if seen is not None:
                seen = seen[src]
                seen[np.arange(src.size), new_tokens] = True
            state, logits = model.step(state, new_tokens)
            logits = _common.step_logits(logits, len(live), "model.step")
        for b, total, toks, lps in live:
            hyps[b].add(total, toks, lps, "length")

    tokens, lps_out, scores, norm, reasons, row_prompts = [], [], [], [], [], []
    for b in range(B):
        items = hyps[b].items or [(0.0, 0.0, (), (), "length")]
        for j in range(n_ret):
            score, total, toks, lps, reason = items[min(j, len(items) - 1)]
            tokens.append(np.asarray(toks, dtype=np.int64))
            lps_out.append(np.asarray(lps, dtype=np.float64))
            scores.append(total)
            norm.append(score)
            reasons.append(reason)
            row_prompts.append(prompts[b].copy())
    return GenerationOutput(
        tokens=tokens, logprobs=lps_out, scores=np.asarray(scores, dtype=np.float64),
        finish_reasons=reasons, prompts=row_prompts, prompt_in_output=in_out,
        beam_scores=np.asarray(norm, dtype=np.float64), num_return_sequences=n_ret)


def _best(cand, k):
    """Indices of the k largest finite entries of cand, best first; ties by index."""
    finite = np.flatnonzero(np.isfinite(cand))
    if finite.size > k:
        vals = cand[finite]
        kth = np.partition(vals, finite.size - k)[finite.size - k]
        finite = finite[vals >= kth]
    order = np.argsort(-cand[finite], kind="stable")
    return finite[order][:k]


def _done(hyps, live_scores, length, max_new_tokens, early_stopping, alpha):
    """Whether a prompt's search is over (see the module docstring)."""
    if not hyps.full():
        return False
    if early_stopping:
        return True
    if length >= max_new_tokens:
        return False  # the live beams are about to be added as hypotheses anyway
    best_len = max_new_tokens if alpha > 0 else length + 1
    bound = max(live_scores) / (best_len ** alpha)
    return bound <= hyps.worst()
