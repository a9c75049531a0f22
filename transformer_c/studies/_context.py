"""What a study function gets: :class:`Context` (quick or full settings, seed, threads, the
output folder, where the data is) with the helpers every study shares: the Tiny Shakespeare
corpus (or the embedded one), a wall-clock :class:`Budget`, figures, and
:meth:`Context.train_lm`, a training loop around :class:`transformer_c.train.Trainer` that
logs the loss against time (:class:`TrainLog`)."""
import dataclasses
import math
import os
import pathlib
import time

import numpy as np

__all__ = ["Context", "Budget", "Corpus", "TrainLog", "SHAKESPEARE"]

SHAKESPEARE = "tinyshakespeare.txt"
_EMBEDDED_CHARS = 1_115_394      # as many characters as Tiny Shakespeare


def default_data_dirs():
    """The folders searched for ../shared/data when no data_dir is given: $TC_SHARED_DATA, then
    ``../shared/data`` beside the checkout holding this package, then beside the working
    directory."""
    here = pathlib.Path(__file__).resolve().parents[2]
    out = []
    if os.environ.get("TC_SHARED_DATA"):
        out.append(pathlib.Path(os.environ["TC_SHARED_DATA"]))
    out += [here.parent / "shared" / "data", pathlib.Path.cwd().parent / "shared" / "data"]
    return out


class Budget:
    """A wall-clock budget of ``seconds`` started at construction (time.perf_counter)."""

    def __init__(self, seconds):
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or \
                not seconds > 0:
            raise ValueError(f"seconds must be a number > 0, got {seconds!r}")
        self.seconds = float(seconds)
        self.start = time.perf_counter()

    @property
    def elapsed(self):
        """Seconds since the start."""
        return time.perf_counter() - self.start

    @property
    def remaining(self):
        """Seconds left (never below 0)."""
        return max(0.0, self.seconds - self.elapsed)

    @property
    def expired(self):
        """Whether the budget is used up."""
        return self.elapsed >= self.seconds

    def share(self, k, n):
        """The seconds part ``k`` of ``n`` equal parts of what is left may use: the remaining
        time divided by the parts still to run (n - k), so early overruns are absorbed."""
        if not 0 <= k < n:
            raise ValueError(f"need 0 <= k < n, got k={k}, n={n}")
        return self.remaining / (n - k)


@dataclasses.dataclass
class Corpus:
    """A character-level corpus split 90/10: ``name`` ("tinyshakespeare" or "python-stdlib"),
    ``source`` (the file read, or a description), the two texts, the character tokenizer
    (sorted alphabet of the whole text, no specials: nanoGPT's 65 ids for Shakespeare) and
    the token ids of each split (int64 (N,))."""
    name: str
    source: str
    train_text: str
    val_text: str
    tokenizer: object
    train_ids: np.ndarray
    val_ids: np.ndarray

    @property
    def vocab_size(self):
        """The tokenizer's vocabulary size."""
        return self.tokenizer.vocab_size


class TrainLog:
    """What :meth:`Context.train_lm` recorded: per logged step ``steps``, ``times``
    (seconds since the start of training), ``losses`` (training loss of the step), ``lrs``,
    ``grad_norms`` (global norm before clipping); ``diverged`` (a non-finite loss stopped
    the run), ``stopped_by`` ("steps", "time" or "diverged"), ``step`` (steps done),
    ``seconds`` (training time) and ``trainer``."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.steps, self.times, self.losses, self.lrs, self.grad_norms = [], [], [], [], []
        self.diverged = False
        self.stopped_by = None
        self.seconds = 0.0

    @property
    def step(self):
        """Optimizer steps done."""
        return self.trainer.step

    def final_loss(self, last=20):
        """The mean training loss of the last ``last`` logged steps (inf when diverged)."""
        if self.diverged or not self.losses:
            return math.inf
        return float(np.mean(self.losses[-last:]))

    def to_dict(self):
        """The log as a JSON-able dict."""
        return {"steps": self.steps, "times": self.times, "losses": self.losses,
                "lrs": self.lrs, "grad_norms": self.grad_norms, "diverged": self.diverged,
                "stopped_by": self.stopped_by, "seconds": self.seconds}


class Context:
    """The settings of one study run and its shared helpers.

    quick: the small settings the test suite runs (a minute or two) instead of the full ones
    (at most 30 minutes on 2 cores); seed: the seed of everything random; threads: OpenMP
    threads (None: the current setting); out: the output folder; data_dir: the folder holding
    tinyshakespeare.txt (None: search :func:`default_data_dirs`; given, it must hold it).
    ``meta`` collects what the helpers used (the data source), copied into the report.
    """

    def __init__(self, quick=False, seed=0, threads=None, out=None, data_dir=None):
        self.quick = bool(quick)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {seed!r}")
        self.seed = int(seed)
        if threads is not None and (isinstance(threads, bool) or
                                    not isinstance(threads, (int, np.integer)) or threads < 1):
            raise ValueError(f"threads must be an int >= 1 or None, got {threads!r}")
        self.threads = None if threads is None else int(threads)
        self.out = None if out is None else os.fspath(out)
        self.data_dir = None if data_dir is None else os.fspath(data_dir)
        if self.data_dir is not None and not os.path.isdir(self.data_dir):
            raise ValueError(f"data_dir {self.data_dir!r} is not a directory")
        self.meta = {}
        self._corpus = None

    def pick(self, full, quick):
        """``quick`` in quick mode, else ``full``."""
        return quick if self.quick else full

    def rng(self, offset=0):
        """A numpy Generator seeded by (seed, offset)."""
        return np.random.default_rng([self.seed, int(offset)])

    def budget(self, full_seconds, quick_seconds):
        """A :class:`Budget` of ``full_seconds`` (``quick_seconds`` in quick mode)."""
        return Budget(self.pick(full_seconds, quick_seconds))

    # ------------------------------------------------------------------ data

    def data_path(self, filename):
        """The path of ``filename`` in the data folder, or None when it is not there (with an
        explicit data_dir the file must exist: FileNotFoundError naming data_dir)."""
        if self.data_dir is not None:
            p = pathlib.Path(self.data_dir) / filename
            if not p.is_file():
                raise FileNotFoundError(f"data_dir {self.data_dir!r} has no {filename}")
            return p
        for d in default_data_dirs():
            p = d / filename
            if p.is_file():
                return p
        return None

    def shakespeare(self):
        """The Tiny Shakespeare :class:`Corpus` (tinyshakespeare.txt of the data folder, the
        standard 90/10 split) or, when absent, the embedded corpus (the Python standard
        library's source, its first 1,115,394 characters, split the same way). Records
        which in ``meta["data"]``."""
        if self._corpus is not None:
            return self._corpus
        from ..data import CharTokenizer, default_corpus, read_text, split_text
        path = self.data_path(SHAKESPEARE)
        if path is not None:
            text, name, source = read_text(path), "tinyshakespeare", str(path)
        else:
            text = default_corpus(_EMBEDDED_CHARS)
            name = "python-stdlib"
            source = "the embedded corpus (Python standard library source, first " \
                     f"{len(text)} characters)"
        train, val = split_text(text, 0.1)
        tok = CharTokenizer.train(text, specials=())
        self._corpus = Corpus(name, source, train, val, tok,
                              tok.encode(train).astype(np.int64),
                              tok.encode(val).astype(np.int64))
        self.meta["data"] = {"source": name, "path": source, "chars": len(text),
                             "train_chars": len(train), "val_chars": len(val),
                             "vocab_size": tok.vocab_size}
        return self._corpus

    # ------------------------------------------------------------------ figures

    def figure(self, width, height):
        """A new matplotlib Figure (no pyplot state; needs the plot extra)."""
        from ..viz import _mpl
        return _mpl.figure("studies", width, height)

    # ------------------------------------------------------------------ training

    def train_lm(self, model, train_ids, val_ids=None, *, config, block_size=None,
                 time_limit=None, on_grads=None, log_every=1, stop_on_divergence=True):
        """Train ``model`` (a GPT, in place) on random windows of ``train_ids`` with
        :class:`~transformer_c.train.Trainer` and ``config`` (a TrainConfig) for
        config.max_iters steps or ``time_limit`` seconds, whichever comes first.

        block_size: the training window (default: the model's; may be shorter, e.g. to
        leave room in a learned position table). on_grads(step, grads): called every step
        with the averaged flat gradient (model.flat_grads layout) before clipping. A
        non-finite loss marks the log ``diverged`` and stops (``stop_on_divergence``).
        Returns a :class:`TrainLog` (its ``trainer`` evaluates on ``val_ids`` through
        ``trainer.eval_loss``)."""
        from ..data import StreamDataset
        from ..train import Trainer
        T = model.config.block_size if block_size is None else int(block_size)
        train = StreamDataset(train_ids, T)
        val = None if val_ids is None else StreamDataset(val_ids, T)
        trainer = Trainer(model, train, val, config, quiet=True, progress=False)
        log = TrainLog(trainer)
        t0 = time.perf_counter()
        while trainer.step < config.max_iters:
            s = trainer.train_step(on_grads=on_grads)
            now = time.perf_counter() - t0
            finite = math.isfinite(s["loss"])
            if trainer.step % log_every == 0 or trainer.step == config.max_iters or not finite:
                log.steps.append(trainer.step)
                log.times.append(now)
                log.losses.append(s["loss"])
                log.lrs.append(s["lr"])
                log.grad_norms.append(s["grad_norm"])
            if not finite and stop_on_divergence:
                log.diverged, log.stopped_by = True, "diverged"
                break
            if time_limit is not None and now >= time_limit:
                log.stopped_by = "time"
                break
        else:
            log.stopped_by = "steps"
        log.seconds = time.perf_counter() - t0
        return log

    def __repr__(self):
        return (f"Context(quick={self.quick}, seed={self.seed}, threads={self.threads}, "
                f"out={self.out!r}, data_dir={self.data_dir!r})")
