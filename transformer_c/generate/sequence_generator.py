"""A coursework-style SequenceGenerator (CMU 11-785 HW4P1, hw4lib/decoding).

It drives an arbitrary ``score_fn`` mapping token ids (batch, seq) to next-token logits
(batch, V), so a deterministic scoring table can test it. It is constructed as the course
does, ``SequenceGenerator(score_fn, tokenizer, max_length, device)``, and takes NumPy or
torch ids (torch in, torch out; score_fn then sees torch tensors on ``device``). ``generate_greedy`` follows the
handout's pseudocode line by line:

    scores = zeros(batch); finished = False for each row
    for t in range(max_length - current_length):
        if all finished: break
        logits = score_fn(x)
        logits = apply_repeat_penalty(logits, x, repeat_penalty)
        logits = logits / temperature
        log_probs = log_softmax(logits)
        next_tokens = argmax(log_probs); token_scores = log_probs[next_tokens]
        scores += token_scores for the unfinished rows only
        append next_tokens to x
        finished |= next_tokens == EOS
    return x, scores

Two readings of the handout, stated: ``log_softmax`` is applied to the logits after the
penalty and the temperature (the variable the pseudocode just assigned), and a finished row
keeps emitting <EOS> (``pad_finished=True``, the default; with ``pad_finished=False`` it
appends whatever the argmax is, the pseudocode taken literally; its score is frozen either
way). The handout describes sampling and beam search only in prose; ``generate_sample``
and ``generate_beam`` follow the same loop (see their docstrings).
"""
import numpy as np

from .. import functional as F
from . import _args
from . import processors as P

__all__ = ["SequenceGenerator"]


def _is_torch(x):
    return type(x).__module__.split(".")[0] == "torch"


def _to_numpy(x):
    """NumPy view of x (torch tensors detached and moved to the CPU)."""
    return x.detach().cpu().numpy() if _is_torch(x) else np.asarray(x)


class SequenceGenerator:
    """Greedy, sampling and beam decoding over ``score_fn`` (coursework interface).

    SequenceGenerator(score_fn, tokenizer, max_length, device) as the course constructs it:
    score_fn: callable ids (batch_size, seq_len) -> next-token logits (batch_size,
      vocab_size); it is always called with one 2-D batch, also in beam search (the beams
      flattened into the batch).
    tokenizer: an object with an ``eos_id`` attribute (the course's H4Tokenizer, or a
      transformer_c tokenizer), or the end-of-sequence id itself; ``eos_id=`` (keyword)
      may be given instead.
    max_length: the total length (prompt + generated) at which decoding stops, at most
        MAX_NEW_TOKENS (2**20).
    device: where torch inputs live. When ``x`` is a torch tensor (torch installed),
      score_fn receives torch int64 tensors on ``device`` (the input's device if None),
      its logits may be torch tensors, and the results are torch tensors on that device;
      with NumPy input everything is NumPy.
    pad_finished: a finished row appends <EOS> (True) or the argmax (False, the literal
      pseudocode).
    """

    def __init__(self, score_fn, tokenizer=None, max_length=None, device=None, *,
                 eos_id=None, pad_finished=True):
        if not callable(score_fn):
            raise TypeError(f"score_fn must be callable, got {type(score_fn).__name__}")
        if (tokenizer is None) == (eos_id is None):
            raise TypeError("pass exactly one of tokenizer (or the eos id in its place) and "
                            "eos_id")
        if eos_id is None:
            eos_id = getattr(tokenizer, "eos_id", tokenizer)
        if max_length is None:
            raise TypeError("max_length is required")
        self.score_fn = score_fn
        self.tokenizer = tokenizer
        self.eos_id = _args.integer(eos_id, "eos_id", minimum=0)
        self.max_length = _args.new_tokens(max_length, "max_length")
        self.device = device
        self.pad_finished = bool(pad_finished)
        self._torch_device = None

    @staticmethod
    def post_process_sequence(seq, tokenizer):
        """Cut sequences after their first <EOS> (kept). seq: (T,) -> the truncated (t,)
        sequence; (N, T) -> a list of N truncated 1-D sequences. NumPy or torch in, the
        same type out; tokenizer: anything with ``eos_id``, or the id itself."""
        eos = getattr(tokenizer, "eos_id", tokenizer)
        arr = _to_numpy(seq)
        if arr.ndim not in (1, 2):
            raise ValueError(f"seq must be 1-D (T,) or 2-D (N, T), got shape {arr.shape}")

        def end(row):
            hits = np.flatnonzero(row == eos)
            return int(hits[0]) + 1 if hits.size else row.shape[0]
        if arr.ndim == 1:
            return seq[:end(arr)]
        return [seq[i][:end(row)] for i, row in enumerate(arr)]

    # ------------------------------------------------------------------ helpers
    def _check_x(self, x):
        self._torch_device = None
        if _is_torch(x):
            self._torch_device = x.device if self.device is None else self.device
        x = _to_numpy(x)
        if x.ndim != 2:
            raise ValueError(f"x must be 2-D (batch, seq) token ids, got shape {x.shape}")
        if x.size and (x.dtype == np.bool_ or not np.issubdtype(x.dtype, np.integer)):
            raise TypeError(f"x must hold integer token ids, got dtype {x.dtype}")
        if self.max_length < x.shape[1]:
            raise ValueError(f"max_length ({self.max_length}) must be >= the input length "
                             f"({x.shape[1]})")
        return x.astype(np.int64)

    def _scores(self, x):
        if self._torch_device is not None:
            import torch

            x = torch.from_numpy(x).to(self._torch_device)
        logits = _to_numpy(self.score_fn(x))
        logits = _args.check_logits(logits, x.shape[0], "score_fn")
        if logits.shape[1] <= self.eos_id:
            raise ValueError(f"eos_id {self.eos_id} is out of range for a vocabulary of "
                             f"{logits.shape[1]}")
        return logits

    @staticmethod
    def _temperature(temperature):
        t = _args.real(temperature, "temperature")
        if t <= 0:
            raise ValueError(f"temperature must be > 0 (the pseudocode divides by it), got {t}"
                             "; for temperature 0 use transformer_c.generate.greedy")
        return t

    def _apply_repeat_penalty(self, logits, sequences, penalty=1.0):
        """Divide the logits of every token present in the row's sequence by ``penalty``
        when positive, multiply them by it otherwise (CTRL / Hugging Face).
        logits (n, V); sequences (n, T) ids. Returns (n, V)."""
        penalty = _args.penalty(penalty, "repeat_penalty")
        logits = np.asarray(logits)
        if penalty == 1.0:
            return logits
        V = logits.shape[-1]
        seen = np.zeros(logits.shape, dtype=bool)
        for i, row in enumerate(np.asarray(sequences)):
            seen[i, row[(row >= 0) & (row < V)]] = True
        return P.apply_repetition_penalty(logits, seen, penalty)

    def _out(self, *arrays):
        """The results in the caller's type: torch on the input's device for torch input."""
        if self._torch_device is None:
            return arrays
        import torch

        return tuple(torch.from_numpy(np.ascontiguousarray(a)).to(self._torch_device)
                     for a in arrays)

    def _append(self, x, next_tokens, finished):
        if self.pad_finished:
            next_tokens = np.where(finished, self.eos_id, next_tokens)
        return np.concatenate([x, next_tokens[:, None]], axis=1), next_tokens

    def _decode(self, x, choose):
        """The pseudocode's loop around ``choose(x) -> (next_tokens (batch,), log_probs
        (batch, V))``: scores add the chosen tokens' log-probabilities for unfinished rows,
        tokens are appended, rows finish at <EOS>. Returns (x, scores) in the caller's type."""
        batch = x.shape[0]
        scores = np.zeros(batch, dtype=np.float64)
        finished = np.zeros(batch, dtype=bool)
        for _ in range(self.max_length - x.shape[1]):
            if batch == 0 or finished.all():
                break
            next_tokens, log_probs = choose(x)
            token_scores = log_probs[np.arange(batch), next_tokens]
            scores = np.where(finished, scores, scores + token_scores)
            x, next_tokens = self._append(x, next_tokens, finished)
            finished = finished | (next_tokens == self.eos_id)
        return self._out(x, scores)

    # ------------------------------------------------------------------ decoders
    def generate_greedy(self, x, temperature=1.0, repeat_penalty=1.0):
        """x (batch, seq) ids, all rows the same length. Returns (x (batch, L) with the
        generated tokens appended, scores (batch,) float64: the summed log-probabilities of
        each row's tokens up to and including its <EOS>). L <= max_length."""
        x = self._check_x(x)
        temperature = self._temperature(temperature)
        _args.penalty(repeat_penalty, "repeat_penalty")

        def choose(x):
            logits = self._scores(x)
            logits = self._apply_repeat_penalty(logits, x, repeat_penalty)
            logits = logits / logits.dtype.type(temperature)
            log_probs = F.log_softmax(logits, axis=-1)
            return np.argmax(log_probs, axis=-1).astype(np.int64), log_probs
        return self._decode(x, choose)

    def generate_sample(self, x, temperature=1.0, top_k=0, top_p=1.0, seed=None):
        """Sampling in the same loop as ``generate_greedy``: the logits are divided by the
        temperature, filtered (top-k, then top-p; 0 and 1 disable them), log-softmaxed, and
        the next token is drawn from softmax(logits) = exp(log_probs); scores add its
        log-probability under that filtered distribution for unfinished rows. seed: None,
        int or numpy Generator (rng.random(batch) per step, all rows drawn). Returns (x,
        scores) as greedy."""
        x = self._check_x(x)
        temperature = self._temperature(temperature)
        top_k, top_p = _args.top_k(top_k), _args.top_p(top_p)
        rng = _args.generator(seed)

        def choose(x):
            logits = self._scores(x)
            logits = logits / logits.dtype.type(temperature)
            logits = P.top_p_filter(P.top_k_filter(logits, top_k), top_p)
            log_probs = F.log_softmax(logits, axis=-1)
            return P.sample_tokens(F.softmax(logits, axis=-1), rng), log_probs
        return self._decode(x, choose)

    def generate_beam(self, x, beam_width, temperature=1.0, repeat_penalty=1.0):
        """Fixed-width beam search in the same style: every row keeps ``beam_width`` beams;
        each step scores all beams (score_fn on the (batch * beam_width, T) flattening),
        applies the repeat penalty and the temperature, log-softmaxes, and keeps the
        beam_width best (beam score + token log-probability) per row (ties: lower beam, then
        lower token id). A finished beam (it emitted <EOS>) can only be extended by <EOS> at
        no cost, so it stays one candidate with a frozen score. No length penalty. Stops at
        max_length or when every beam is finished.
        Returns (x (batch, beam_width, L), scores (batch, beam_width)), best beam first."""
        x = self._check_x(x)
        W = _args.integer(beam_width, "beam_width", minimum=1)
        temperature = self._temperature(temperature)
        _args.penalty(repeat_penalty, "repeat_penalty")
        batch, T0 = x.shape
        if batch == 0 or self.max_length == T0:
            return self._out(np.repeat(x[:, None, :], W, axis=1), np.zeros((batch, W)))
        logits = self._scores(x)
        V = logits.shape[1]
        if W > V:
            raise ValueError(f"beam_width ({W}) must be <= the vocabulary size ({V})")
        logits = self._apply_repeat_penalty(logits, x, repeat_penalty)
        log_probs = F.log_softmax(logits / logits.dtype.type(temperature), axis=-1)
        order = np.argsort(-log_probs, axis=-1, kind="stable")[:, :W]         # (batch, W)
        scores = np.take_along_axis(log_probs, order, axis=-1).astype(np.float64)
        beams = np.concatenate([np.repeat(x[:, None, :], W, axis=1), order[:, :, None]], axis=2)
        finished = order == self.eos_id
        for _ in range(self.max_length - T0 - 1):
            if finished.all():
                break
            L = beams.shape[2]
            flat = beams.reshape(batch * W, L)
            logits = self._apply_repeat_penalty(self._scores(flat), flat, repeat_penalty)
            log_probs = F.log_softmax(logits / logits.dtype.type(temperature), axis=-1)
            log_probs = log_probs.astype(np.float64).reshape(batch, W, V)
            log_probs[finished] = -np.inf
            log_probs[finished, self.eos_id] = 0.0
            cand = (scores[:, :, None] + log_probs).reshape(batch, W * V)
            top = np.argsort(-cand, axis=-1, kind="stable")[:, :W]            # (batch, W)
            src, tok = top // V, top % V
            scores = np.take_along_axis(cand, top, axis=-1)
            beams = np.concatenate([np.take_along_axis(beams, src[:, :, None], axis=1),
                                    tok[:, :, None]], axis=2)
            finished = np.take_along_axis(finished, src, axis=1) | (tok == self.eos_id)
        return self._out(beams, scores)
