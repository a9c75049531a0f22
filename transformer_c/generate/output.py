"""The result of a generation: tokens, log-probability scores, why each row stopped."""
from dataclasses import dataclass
from typing import List, Optional

import numpy as np

__all__ = ["GenerationOutput"]


@dataclass
class GenerationOutput:
    """Generated sequences and their scores. N = number of prompts * num_return_sequences;
    output row i * num_return_sequences + j is the j-th sequence for prompt i (for beam
    search the j-th best).

    tokens: N 1-D int64 arrays, the NEW tokens only (an <EOS> that ended a row is included).
    logprobs: N 1-D float64 arrays, the log-probability of each new token under the model's
        next-token distribution after the repetition penalty (log_softmax of the penalised
        logits; temperature, top-k and top-p shape the choice, not the score). With no
        repetition penalty this is the model's own log-likelihood of the tokens.
    scores: (N,) float64, the sum of ``logprobs`` of each row (0 for no new tokens).
    finish_reasons: N strings: "eos" (an <EOS> id was generated), "stop" (a stop string
        appeared in the decoded new text) or "length" (max_new_tokens reached).
    prompts: N 1-D int64 arrays, the prompt each row was generated from.
    prompt_in_output: whether ``sequences`` prepends the prompt (decoder-only models).
    beam_scores: (N,) float64 for beam search, the length-normalised score hypotheses are
        ranked by (scores / len(tokens) ** length_penalty, Hugging Face style); else None.
    num_return_sequences: sequences per prompt.
    """
    tokens: List[np.ndarray]
    logprobs: List[np.ndarray]
    scores: np.ndarray
    finish_reasons: List[str]
    prompts: List[np.ndarray]
    prompt_in_output: bool = True
    beam_scores: Optional[np.ndarray] = None
    num_return_sequences: int = 1

    def __len__(self):
        return len(self.tokens)

    @property
    def sequences(self):
        """N 1-D int64 arrays: the prompt followed by the new tokens (decoder-only models);
        the new tokens alone when the model's prompt is a separate input (encoder-decoder)."""
        if not self.prompt_in_output:
            return [t.copy() for t in self.tokens]
        return [np.concatenate([p, t]) for p, t in zip(self.prompts, self.tokens)]

    def padded(self, pad_id, *, with_prompt=False):
        """The new tokens (or ``sequences`` with with_prompt=True) as one (N, L) int64 array,
        right-padded with ``pad_id`` to the longest row."""
        rows = self.sequences if with_prompt else self.tokens
        L = max((r.size for r in rows), default=0)
        out = np.full((len(rows), L), int(pad_id), dtype=np.int64)
        for i, r in enumerate(rows):
            out[i, :r.size] = r
        return out
