"""Training a GPT language model, or a Bert classifier / masked LM: :class:`Trainer` and
:class:`TrainConfig`.

The task follows the training data: a StreamDataset (random windows; a GPT, next-token
loss, "lm"), a transformer_c.data.PairDataset (a Bert, classification cross-entropy and
accuracy, "classify"; ``batch_at`` gives the keyword arguments of Bert.loss_and_grads) or
a transformer_c.data.MaskedLMDataset (a Bert, masked-LM loss, "mlm"). Everything below
(steps, schedule, clipping, AdamW groups, evaluation, checkpoints, resume, signals) is the
same for the three; what the text says about windows holds for examples of a dataset.

One optimizer step (:meth:`Trainer.train_step`):

1. the learning rate of iteration ``it`` from the schedule (transformer_c.schedules: linear
   warmup, then cosine or inverse-square-root decay, or constant);
2. ``grad_accum`` micro-batches of ``batch_size`` random windows (all window starts of the
   step drawn at once from the data RNG), each through ``GPT.loss_and_grads`` (the whole
   forward and backward in C; with label smoothing the module-by-module path); their
   gradients averaged;
3. global-norm clipping as torch.nn.utils.clip_grad_norm_ (``F.global_grad_norm`` and
   ``F.scale_``);
4. AdamW over the model's flat parameter buffer in two groups: weight decay on the linear
   weights, none on biases, LayerNorm parameters and embeddings (wte, wpe). The groups are
   runs of the flat buffer, each updated by one ``F.adamw_update_`` call (in C).

Every ``eval_every`` steps the loss on fixed, evenly spaced windows of the train and
validation splits (the same windows each time), per-token and per-character perplexity, a
line in the JSONL log, and checkpoints: ``out_dir/last`` always (from the first step on),
``out_dir/best`` when the selection metric improved (``TrainConfig.select``: the validation
loss by default, or for a classifier the validation accuracy; the evaluation at step 0
counts, so a run that never beats its start still has a best/). A checkpoint holds the model, tokenizer, AdamW moments, step, data
RNG state and configuration, so :meth:`Trainer.resume` continues exactly as an uninterrupted
run would (bitwise, for a fixed thread count): dropout masks are seeded from the step number.
``save_every`` steps also save ``out_dir/last``, independently of evaluation.

Data parallelism (``comm=``, a :mod:`transformer_c.distributed` communicator; default one
process): N ranks each run ``batch_size`` windows per micro-batch. Every rank draws the same
``grad_accum * N * batch_size`` window starts of the step from the data RNG (identical on
every rank); global micro-batch j is ``N * batch_size`` of them, of which rank r takes rows
``[r * batch_size, (r + 1) * batch_size)`` (the starts from ``(j * N + r) * batch_size``),
with micro-batch j's dropout seed and ``row_offset=r * batch_size``: each row draws the
dropout masks it has in the global micro-batch. The local gradients are averaged and then
all-reduced (averaged over the ranks) in place, so every rank clips and applies the same
update. Hence N ranks x batch b compute what one process computes with batch ``N * b``, the
same windows, dropout masks and token mean, to float rounding (the sums of the reduction run
in another order), and a run resumed on another number of ranks continues it the same way.
(With label_smoothing > 0 the step runs module by module, which cannot draw masks at a row
offset: there rank r > 0 draws masks of its own seed, equal to one process's only in
distribution when dropout is on.) Evaluation batches are dealt round-robin to the ranks and
the sums reduced; only rank 0 writes logs and checkpoints. Signals and the time limit are
agreed on by all ranks (a step ends on every rank or on none).

Interruption: while :meth:`Trainer.train` runs in the main thread, SIGINT (Ctrl-C) and
SIGTERM finish the step in progress, save ``out_dir/last`` at that step (atomically: a
second signal or a crash during that save leaves the previous checkpoint intact) and raise
:class:`TrainingInterrupted`, which says what was saved; resuming from it continues bitwise
as if the run had never stopped.
"""
import dataclasses
import signal
import threading
import json
import math
import os
import sys
import time

import numpy as np

from . import checkpoint as ckpt
from . import functional as F
from .distributed import SingleProcess, rescale_batch
from .nn import GPT, Bert
from .schedules import SCHEDULES, make_schedule

__all__ = ["TrainConfig", "Trainer", "TrainingInterrupted", "parameter_groups", "TASKS",
           "SELECTIONS"]

TASKS = ("lm", "classify", "mlm")  # what a dataset's ``task`` attribute may say
# model selection (TrainConfig.select): metric -> (its key in an evaluation record, whether
# higher is better, the tasks that have it)
SELECTIONS = {"val_loss": ("val_loss", False, TASKS),
              "val_accuracy": ("val_acc", True, ("classify",))}


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by SIGINT or SIGTERM. ``step``: the steps completed; ``checkpoint``:
    the directory of the resumable checkpoint saved at that step (None when the trainer has
    no out_dir or tokenizer); ``signal_name``: "SIGINT" or "SIGTERM"."""

    def __init__(self, step, checkpoint, signal_name):
        self.step, self.checkpoint, self.signal_name = step, checkpoint, signal_name
        where = (f"saved a resumable checkpoint of step {step} to {checkpoint}"
                 if checkpoint else "nothing saved (no out_dir or tokenizer)")
        super().__init__(f"{signal_name} at step {step}: {where}")

_MASK64 = (1 << 64) - 1


@dataclasses.dataclass
class TrainConfig:
    """Optimisation and evaluation settings (defaults: nanoGPT's shakespeare_char, scaled).

    max_iters: optimizer steps in the run. batch_size: windows per micro-batch; grad_accum:
    micro-batches per step (the effective batch is their product). lr, min_lr, warmup_iters,
    decay_iters (None: max_iters), schedule: "cosine", "inverse_sqrt" or "constant".
    weight_decay (decoupled, AdamW; linear weights only), beta1, beta2, eps. grad_clip: the
    global-norm bound (0: off). label_smoothing in [0, 1). eval_every: steps between
    evaluations (0: only at the end); eval_iters: batches of evenly spaced windows per split
    (0: every non-overlapping window of the split). log_every: steps between JSONL lines.
    save_every: steps between saves of out_dir/last besides those at evaluations (0: off).
    seed: the data RNG and dropout seed. select: the metric that picks out_dir/best,
    "val_loss" (lowest) or "val_accuracy" (highest; classifiers only): SELECTIONS.
    """

    max_iters: int = 2000
    batch_size: int = 12
    grad_accum: int = 1
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    decay_iters: int = None
    schedule: str = "cosine"
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    eps: float = 1e-8
    grad_clip: float = 1.0
    label_smoothing: float = 0.0
    eval_every: int = 250
    eval_iters: int = 20
    log_every: int = 10
    save_every: int = 0
    seed: int = 1337
    select: str = "val_loss"

    def __post_init__(self):
        ints = {"max_iters": 1, "batch_size": 1, "grad_accum": 1, "warmup_iters": 0,
                "eval_every": 0, "eval_iters": 0, "log_every": 1, "save_every": 0, "seed": 0}
        for name, low in ints.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
        for name in ("lr", "min_lr", "weight_decay", "eps", "grad_clip"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (
                    v >= 0 and math.isfinite(v)):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        for name in ("beta1", "beta2", "label_smoothing"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1:
                raise ValueError(f"{name} must lie in [0, 1), got {v!r}")
        if self.select not in SELECTIONS:
            raise ValueError(f"select must be one of {tuple(SELECTIONS)}, got {self.select!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.decay_iters is not None and (isinstance(self.decay_iters, bool) or
                                             not isinstance(self.decay_iters, int) or
                                             self.decay_iters < 1):
            raise ValueError(f"decay_iters must be a positive integer or None, "
                             f"got {self.decay_iters!r}")
        self.make_schedule()

    def make_schedule(self):
        """The learning-rate schedule, a function it -> lr."""
        decay = self.max_iters if self.decay_iters is None else self.decay_iters
        warmup = self.warmup_iters
        if self.schedule == "cosine" and decay <= warmup:
            raise ValueError(f"the cosine schedule decays over iterations warmup_iters.."
                             f"decay_iters, so decay_iters (or max_iters: {decay}) must exceed "
                             f"warmup_iters ({warmup})")
        return make_schedule(self.schedule, lr=self.lr, warmup_iters=warmup, decay_iters=decay,
                             min_lr=self.min_lr)

    def to_dict(self):
        """The config as a dict of its fields (stored in checkpoints)."""
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(d):
        """A TrainConfig from a dict as to_dict gives (unknown fields are a ValueError)."""
        names = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {unknown}")
        return TrainConfig(**d)


def parameter_groups(model):
    """[(start, stop, decay)]: the flat parameter buffer of ``model`` (a GPT) cut into runs of
    consecutive tensors that do (decay=True: linear weights, a separate lm_head) or do not
    (biases, LayerNorm weights, the wte / wpe embeddings, a Bert's wtt) get weight decay."""
    flat = model.flat_parameters
    base = flat.__array_interface__["data"][0]
    tensors = []
    for name, arr in model.state_dict().items():
        start = (arr.__array_interface__["data"][0] - base) // flat.itemsize
        decay = arr.ndim >= 2 and name.split(".")[0] not in ("wte", "wpe", "wtt")
        tensors.append((start, start + arr.size, decay))
    tensors.sort()
    runs = []
    for start, stop, decay in tensors:
        if runs and runs[-1][1] == start and runs[-1][2] == decay:
            runs[-1] = (runs[-1][0], stop, decay)
        else:
            runs.append((start, stop, decay))
    if sum(b - a for a, b, _ in runs) != flat.size or runs[0][0] != 0:
        raise RuntimeError("the model's state_dict does not tile its flat parameter buffer")
    return runs


def _window_starts(n_windows, block_size, count):
    """Evenly spaced window starts over [0, n_windows) (count of them; 0: non-overlapping)."""
    full = np.arange(0, n_windows, block_size, dtype=np.int64)
    if count == 0 or count >= full.size:
        return full
    return np.linspace(0, n_windows - 1, count).round().astype(np.int64)


class Trainer:
    """Trains a :class:`~transformer_c.nn.GPT` on random windows of a token stream, or a
    :class:`~transformer_c.nn.Bert` on a PairDataset / MaskedLMDataset (the task is
    ``train_data.task``: "lm", "classify" or "mlm").

    model: a GPT or a Bert (updated in place). train_data, val_data: StreamDataset for a
    GPT, PairDataset or MaskedLMDataset for a Bert, both of one task (val_data may be None:
    no validation loss, no best checkpoint). config: a TrainConfig. tokenizer: saved in
    checkpoints. out_dir: where checkpoints (last/, best/) and log.jsonl go (None: nowhere).
    chars_per_token: {"train": r, "val": r}, characters per token of each split, for
    per-character perplexity (1.0 for a character tokenizer). data_info: a JSON-able dict
    stored in checkpoints (what the data was). progress: show a tqdm bar (default: when
    stderr is a terminal); quiet: print nothing. printer: where messages go. comm: a
    :class:`transformer_c.distributed.Communicator` (default: one process); with several
    ranks, rank 0's parameters are broadcast to all, batch_size is per rank, and only rank 0
    prints and writes.
    """

    def __init__(self, model, train_data, val_data=None, config=None, *, tokenizer=None,
                 out_dir=None, chars_per_token=None, data_info=None, progress=None,
                 quiet=False, printer=print, comm=None):
        if not isinstance(model, (GPT, Bert)):
            raise TypeError(f"model must be a transformer_c.nn.GPT or Bert, got "
                            f"{type(model).__name__}")
        self.task = getattr(train_data, "task", "lm")
        if self.task not in TASKS:
            raise ValueError(f"train_data.task must be one of {TASKS}, got {self.task!r}")
        if (self.task == "lm") != isinstance(model, GPT):
            raise TypeError(f"train_data is a {self.task!r} dataset, which trains a "
                            f"{'GPT' if self.task == 'lm' else 'Bert'}, but model is a "
                            f"{type(model).__name__}")
        if val_data is not None and getattr(val_data, "task", "lm") != self.task:
            raise ValueError(f"val_data must be a {self.task!r} dataset like train_data, got "
                             f"{getattr(val_data, 'task', 'lm')!r}")
        self.model = model
        self.config = TrainConfig() if config is None else config
        if not isinstance(self.config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(self.config).__name__}")
        for name, ds in (("train_data", train_data), ("val_data", val_data)):
            if ds is None and name == "val_data":
                continue
            if not hasattr(ds, "batch_at") or not hasattr(ds, "block_size"):
                raise TypeError(f"{name} must be a StreamDataset, PairDataset or "
                                f"MaskedLMDataset, got {type(ds).__name__}")
            if ds.block_size > model.config.block_size:
                raise ValueError(f"{name} has block_size {ds.block_size} but the model's is "
                                 f"{model.config.block_size}")
        self.train_data, self.val_data = train_data, val_data
        self.tokenizer = tokenizer
        self.out_dir = None if out_dir is None else os.fspath(out_dir)
        self.chars_per_token = {"train": 1.0, "val": 1.0, **(chars_per_token or {})}
        self.data_info = data_info or {}
        self.comm = SingleProcess() if comm is None else comm
        self.quiet = bool(quiet) or not self.comm.is_root
        self.progress = (not self.quiet and sys.stderr.isatty()) if progress is None \
            else bool(progress) and not self.quiet
        self.printer = printer
        if self.task not in SELECTIONS[self.config.select][2]:
            raise ValueError(f"select={self.config.select!r} needs a classifier, but the "
                             f"task is {self.task!r}: use select='val_loss'")
        self.schedule = self.config.make_schedule()
        self.groups = parameter_groups(model)
        flat = model.flat_parameters
        self.comm.broadcast_(flat)
        self.exp_avg = np.zeros_like(flat)
        self.exp_avg_sq = np.zeros_like(flat)
        self._acc = None
        self.step = 0
        self.rng = np.random.default_rng(self.config.seed)
        self.best_val_loss = math.inf
        self.best_selected = None  # the best value of config.select so far (None: none yet)
        self.tokens_seen = 0
        self.elapsed = 0.0
        self.history = []  # evaluation results

    # ------------------------------------------------------------------ one step

    @property
    def tokens_per_step(self):
        """Tokens of one step over all ranks (for a PairDataset an upper bound: max_len
        tokens a pair)."""
        c = self.config
        return c.grad_accum * c.batch_size * self.comm.size * self.train_data.block_size

    def dropout_seed(self, it, micro):
        """The dropout seed of global micro-batch ``micro`` (in [0, grad_accum)) of iteration
        ``it``, shared by the ranks, whose rows draw their masks at their row offset in it (a
        function of the run's seed and position only, not of the number of ranks, so a run
        resumed on any number of ranks draws the same masks)."""
        c = self.config
        return (c.seed * 0x9E3779B97F4A7C15 + it * c.grad_accum + micro + 1) & _MASK64

    def _micro_loss_and_grads(self, batch, seed, row_offset):
        """The mean loss of ``batch`` (the dataset's batch_at: rows x, y (b, T) for "lm", a
        dict of Bert.loss_and_grads / mlm_loss_and_grads arguments otherwise; rows
        [row_offset, row_offset + b) of a global micro-batch with dropout seed ``seed``);
        its gradient in model.flat_grads."""
        model, ls = self.model, self.config.label_smoothing
        if self.task != "lm":
            if ls:
                raise ValueError(f"label_smoothing is for language models, not the "
                                 f"{self.task!r} task")
            fn = model.loss_and_grads if self.task == "classify" else model.mlm_loss_and_grads
            loss, _ = fn(**batch, seed=seed, row_offset=row_offset)
            return loss
        x, y = batch
        if ls == 0:
            loss, _ = model.loss_and_grads(x, y, seed=seed, row_offset=row_offset)
            return loss
        # label smoothing: the module-by-module path (the C fast path has plain cross-entropy),
        # which draws masks from row 0: rows at an offset take a seed of their own
        old = model.seed
        model.seed = (seed + row_offset * 0xD1B54A32D192ED03) & _MASK64
        try:
            logits = model.forward(x)
            loss = F.cross_entropy(logits, y, label_smoothing=ls)
            dlogits = F.cross_entropy_backward(logits, y, label_smoothing=ls)
            grads, _ = model.backward(dlogits, idx=x)
        finally:
            model.seed = old
        np.copyto(model.flat_grads, GPT(model.config, grads).flat_parameters)
        return loss

    def compute_grads(self, starts):
        """Mean loss and the averaged gradient (a flat array) of the windows at ``starts``
        (grad_accum * ranks * batch_size of them: global micro-batch j is slots j * ranks ..
        (j + 1) * ranks - 1 of batch_size windows, this rank's the slot j * ranks + rank, at row
        offset rank * batch_size in it), averaged over the ranks; no update."""
        c, model, comm = self.config, self.model, self.comm
        k, b = c.grad_accum, c.batch_size
        it = self.step
        total = 0.0
        for j in range(k):
            slot = j * comm.size + comm.rank
            batch = self.train_data.batch_at(starts[slot * b:(slot + 1) * b])
            total += self._micro_loss_and_grads(batch, self.dropout_seed(it, j),
                                                comm.rank * b)
            if k > 1:
                if self._acc is None:
                    self._acc = np.empty_like(model.flat_grads)
                if j == 0:
                    np.copyto(self._acc, model.flat_grads)
                else:
                    np.add(self._acc, model.flat_grads, out=self._acc)
        grads = model.flat_grads if k == 1 else self._acc
        if k > 1:
            F.scale_(self._acc, 1.0 / k)
            total = total / k
        if comm.size > 1:
            comm.allreduce_mean_(grads)
            total = comm.sum([total])[0] / comm.size
        return total, grads

    def clip_(self, grads):
        """Global-norm clipping in place (torch.nn.utils.clip_grad_norm_'s rule:
        scale by grad_clip / (norm + 1e-6) when that is below 1); returns the norm before."""
        norm = F.global_grad_norm(grads)
        clip = self.config.grad_clip
        if clip > 0 and math.isfinite(norm):
            coef = clip / (norm + 1e-6)
            if coef < 1.0:
                F.scale_(grads, coef)
        return norm

    def apply_update(self, grads, lr):
        """AdamW step self.step + 1 over the two parameter groups (in C)."""
        c = self.config
        p, m, v = self.model.flat_parameters, self.exp_avg, self.exp_avg_sq
        for a, b, decay in self.groups:
            F.adamw_update_(p[a:b], grads[a:b], m[a:b], v[a:b], step=self.step + 1, lr=lr,
                            betas=(c.beta1, c.beta2), eps=c.eps,
                            weight_decay=c.weight_decay if decay else 0.0)

    def train_step(self, on_grads=None):
        """One optimizer step; returns {"loss", "lr", "grad_norm"}. on_grads(step, grads):
        called with the step number (before the update) and the averaged flat gradient
        (the model's flat_grads layout) before clipping, e.g. to record per-layer norms."""
        c = self.config
        lr = self.schedule(self.step)
        starts = self.rng.integers(0, len(self.train_data),
                                   size=c.grad_accum * c.batch_size * self.comm.size)
        self.model.train()
        loss, grads = self.compute_grads(starts)
        if on_grads is not None:
            on_grads(self.step, grads)
        norm = self.clip_(grads)
        self.apply_update(grads, lr)
        self.step += 1
        self.tokens_seen += self.tokens_per_step
        return {"loss": float(loss), "lr": float(lr), "grad_norm": float(norm)}

    # ------------------------------------------------------------------ evaluation

    def _eval_batch(self, batch):
        """(loss sum, count, correct) of one evaluation batch: tokens for "lm" / "mlm"
        (correct 0), examples and right answers for "classify"."""
        model = self.model
        if self.task == "lm":
            x, y = batch
            return model.loss(x, y) * y.size, y.size, 0
        if self.task == "mlm":
            n = int((batch["targets"] != -100).sum())
            return (model.mlm_loss(**batch) * n if n else 0.0), n, 0
        kw = {k: v for k, v in batch.items() if k != "labels"}
        logits = model.forward(**kw)
        y = batch["labels"]
        return (F.cross_entropy(logits, y) * y.size, y.size,
                int((logits.argmax(axis=-1) == y).sum()))

    def eval_metrics(self, data, max_batches=None):
        """(mean loss, count, accuracy or None) over fixed examples of ``data``: evenly
        spaced windows for "lm" / "mlm" (``eval_iters`` global batches; 0: every
        non-overlapping window), evenly spaced examples for "classify" (0: all of them;
        accuracy over them). With several ranks, batch i is evaluated on rank i % ranks and
        the sums are reduced."""
        c, comm = self.config, self.comm
        iters = c.eval_iters if max_batches is None else max_batches
        count_wanted = iters * c.batch_size * comm.size
        if hasattr(data, "eval_starts"):
            starts = data.eval_starts(count_wanted)
        else:
            starts = _window_starts(len(data), data.block_size, count_wanted)
        was = self.model.training
        self.model.eval()
        total, count, correct = 0.0, 0, 0
        try:
            for n, i in enumerate(range(0, starts.size, c.batch_size)):
                if n % comm.size != comm.rank:
                    continue
                t, k, r = self._eval_batch(data.batch_at(starts[i:i + c.batch_size]))
                total, count, correct = total + t, count + k, correct + r
        finally:
            self.model.train(was)
        if comm.size > 1:
            total, count, correct = comm.sum([total, count, correct])
            count, correct = int(count), int(correct)
        acc = correct / max(count, 1) if self.task == "classify" else None
        return total / max(count, 1), count, acc

    def eval_loss(self, data, max_batches=None):
        """(mean loss, count): per token for "lm" / "mlm", per example for "classify"
        (eval_metrics' first two)."""
        return self.eval_metrics(data, max_batches)[:2]

    def evaluate(self):
        """Losses and perplexities (accuracies for "classify") on both splits at the current
        step (a dict)."""
        out = {"step": self.step}
        for split, data in (("train", self.train_data), ("val", self.val_data)):
            if data is None:
                continue
            loss, _, acc = self.eval_metrics(data)
            out[f"{split}_loss"] = loss
            if self.task == "classify":
                out[f"{split}_acc"] = acc
                continue
            out[f"{split}_ppl"] = math.exp(min(loss, 700.0))
            out[f"{split}_ppl_char"] = math.exp(min(loss / self.chars_per_token[split], 700.0))
        return out

    # ------------------------------------------------------------------ checkpoints

    def state(self):
        """The JSON-able training state stored in checkpoint.json."""
        return {"step": self.step,
                "best_val_loss": None if math.isinf(self.best_val_loss) else self.best_val_loss,
                "best_selected": self.best_selected,
                "tokens_seen": self.tokens_seen, "elapsed": self.elapsed,
                "rng_state": self.rng.bit_generator.state,
                "train_config": self.config.to_dict(), "data": self.data_info,
                "chars_per_token": self.chars_per_token, "world_size": self.comm.size}

    def save_checkpoint(self, path):
        """Save model, tokenizer, AdamW moments and training state to the checkpoint directory
        ``path`` (atomically; transformer_c.checkpoint.save); returns path."""
        if self.tokenizer is None:
            raise ValueError("a Trainer without a tokenizer cannot save checkpoints")
        return ckpt.save(path, model=self.model, tokenizer=self.tokenizer, state=self.state(),
                         optimizer={"exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq})

    def load_state(self, checkpoint):
        """Continue from a :class:`transformer_c.checkpoint.Checkpoint` (its parameters,
        AdamW moments, step, RNG state, best loss). The model must have the same config.
        With several ranks, rank 0's loaded state is broadcast to the others."""
        if checkpoint.model.config != self.model.config:
            raise ckpt.CheckpointError(f"{checkpoint.path}: the checkpoint's model config "
                                       "differs from the trainer's model")
        if checkpoint.optimizer is None:
            raise ckpt.CheckpointError(f"{checkpoint.path} has no optimizer state "
                                       "(optimizer.safetensors): it cannot be resumed")
        s = checkpoint.state
        for key in ("step", "rng_state"):
            if key not in s:
                raise ckpt.CheckpointError(f"{checkpoint.path}/checkpoint.json has no {key}: "
                                           "it cannot be resumed")
        rng = np.random.default_rng()
        try:
            rng.bit_generator.state = s["rng_state"]
        except (TypeError, ValueError, KeyError) as e:
            raise ckpt.CheckpointError(f"{checkpoint.path}/checkpoint.json is corrupt: "
                                       f"rng_state is not a {type(rng.bit_generator).__name__} "
                                       f"state ({e})") from None
        np.copyto(self.model.flat_parameters, checkpoint.model.flat_parameters)
        np.copyto(self.exp_avg, checkpoint.optimizer["exp_avg"])
        np.copyto(self.exp_avg_sq, checkpoint.optimizer["exp_avg_sq"])
        self.step = int(s["step"])
        self.tokens_seen = int(s.get("tokens_seen", 0))
        self.elapsed = float(s.get("elapsed", 0.0))
        best = s.get("best_val_loss")
        self.best_val_loss = math.inf if best is None else float(best)
        self.best_selected = s.get("best_selected")
        if self.best_selected is None and self.config.select == "val_loss" and best is not None:
            self.best_selected = float(best)   # a checkpoint from before best_selected
        self.rng.bit_generator.state = rng.bit_generator.state
        if self.comm.size > 1:
            for buf in (self.model.flat_parameters, self.exp_avg, self.exp_avg_sq):
                self.comm.broadcast_(buf)
            (self.step, self.tokens_seen, self.elapsed, self.best_val_loss,
             self.best_selected, self.rng.bit_generator.state) = self.comm.broadcast_object(
                (self.step, self.tokens_seen, self.elapsed, self.best_val_loss,
                 self.best_selected, self.rng.bit_generator.state))
        return self

    @classmethod
    def resume(cls, path, train_data, val_data=None, *, max_iters=None, **kwargs):
        """A Trainer continuing the checkpoint at ``path`` (a checkpoint directory or a run
        directory, whose ``last`` is used) with its model, tokenizer and config
        (``max_iters`` may extend the run). kwargs: as the constructor (out_dir, comm, ...).
        On a different number of ranks than the checkpoint's, batch_size is rescaled to
        keep the global batch (ValueError when it does not divide)."""
        c = ckpt.load(path, prefer="last")
        cfg = dict(c.state["train_config"])
        if max_iters is not None:
            cfg["max_iters"] = max_iters
        comm = kwargs.get("comm") or SingleProcess()
        cfg, _ = rescale_batch(cfg, saved_world_size(c), comm.size)
        kwargs.setdefault("tokenizer", c.tokenizer)
        kwargs.setdefault("data_info", c.state.get("data"))
        kwargs.setdefault("chars_per_token", c.state.get("chars_per_token"))
        trainer = cls(c.model, train_data, val_data, TrainConfig.from_dict(cfg), **kwargs)
        return trainer.load_state(c)

    # ------------------------------------------------------------------ the loop

    @property
    def log_path(self):
        """out_dir/log.jsonl, or None without an out_dir."""
        return None if self.out_dir is None else os.path.join(self.out_dir, "log.jsonl")

    @property
    def writes(self):
        """Whether this trainer writes checkpoints and the log (an out_dir, and rank 0)."""
        return self.out_dir is not None and self.comm.is_root

    def _open_log(self):
        if not self.writes:
            return None
        os.makedirs(self.out_dir, exist_ok=True)
        kept = []
        if self.step > 0 and os.path.exists(self.log_path):  # resuming: drop lines past step
            with open(self.log_path, encoding="utf-8") as f:
                for line in f:
                    try:
                        if json.loads(line).get("step", 0) <= self.step:
                            kept.append(line if line.endswith("\n") else line + "\n")
                    except json.JSONDecodeError:
                        break
        f = open(self.log_path, "w", encoding="utf-8")
        f.writelines(kept)
        return f

    def _say(self, msg, bar=None):
        if self.quiet:
            return
        if bar is not None:
            bar.write(msg)
        else:
            self.printer(msg)

    def _eval_and_save(self, log, bar):
        t0 = time.perf_counter()
        r = self.evaluate()
        r["eval_seconds"] = time.perf_counter() - t0
        if "val_loss" in r and r["val_loss"] < self.best_val_loss:
            self.best_val_loss = r["val_loss"]
        r["best_val_loss"] = None if math.isinf(self.best_val_loss) else self.best_val_loss
        key, higher, _ = SELECTIONS[self.config.select]
        improved = key in r and math.isfinite(r[key]) and (self.best_selected is None or (
            r[key] > self.best_selected if higher else r[key] < self.best_selected))
        if improved:
            self.best_selected = r[key]
        if self.config.select != "val_loss":
            r[f"best_{key}"] = self.best_selected
        self.history.append(r)
        msg = f"step {self.step}: train loss {r['train_loss']:.4f}"
        if self.task == "classify":
            msg += f" (accuracy {r['train_acc']:.4f})"
            if "val_loss" in r:
                msg += f", val loss {r['val_loss']:.4f} (accuracy {r['val_acc']:.4f})"
        elif "val_loss" in r:
            msg += (f", val loss {r['val_loss']:.4f} (perplexity {r['val_ppl']:.2f} per token, "
                    f"{r['val_ppl_char']:.2f} per character)")
        self._say(msg, bar)
        if log is not None:
            log.write(json.dumps({"type": "eval", **r, "time": self.elapsed}) + "\n")
            log.flush()
        if self.comm.size > 1:
            self.comm.assert_same(self.model.flat_parameters, "the parameters")
        if self.writes and self.tokenizer is not None:
            if self.step > 0:
                self.save_checkpoint(os.path.join(self.out_dir, "last"))
            if improved:
                self.save_checkpoint(os.path.join(self.out_dir, "best"))
        return r

    def train(self, num_steps=None, *, time_limit=None):
        """Train until max_iters (or ``num_steps`` more steps, or ``time_limit`` seconds of
        this call); returns the list of evaluation results of this call.

        Evaluates (and checkpoints, with out_dir) every eval_every steps, at the end of
        the run and when ``time_limit`` stops it (the limit counts evaluation time too);
        with num_steps / time_limit stopping earlier, saves ``out_dir/last`` there so that
        :meth:`resume` continues exactly. SIGINT / SIGTERM (main thread only): the step in
        progress finishes, ``out_dir/last`` is saved and :class:`TrainingInterrupted`
        raised.
        """
        with _StopSignals() as stop:
            return self._train(num_steps, time_limit, stop)

    def _save_last(self):
        """Save out_dir/last (rank 0; the other ranks return the path rank 0 writes)."""
        if self.out_dir is None or self.tokenizer is None:
            return None
        if not self.comm.is_root:
            return os.path.join(self.out_dir, "last")
        return self.save_checkpoint(os.path.join(self.out_dir, "last"))

    def _stopping(self, stop):
        """Whether to stop for a signal: with several ranks, whether any rank has had one
        (all ranks agree, so every rank stops after the same step)."""
        if self.comm.size > 1:
            code = self.comm.max(_StopSignals.SIGNALS.index(stop.signal_name) + 1
                                 if stop.signal_name else 0)
            if code and not stop.signal_name:
                stop.signal_name = _StopSignals.SIGNALS[code - 1]
        return bool(stop.signal_name)

    def _train(self, num_steps, time_limit, stop):
        c = self.config
        end = c.max_iters if num_steps is None else min(c.max_iters, self.step + int(num_steps))
        log = self._open_log()
        bar = None
        if self.progress:
            from tqdm import tqdm
            bar = tqdm(total=c.max_iters, initial=self.step, unit="step", dynamic_ncols=True,
                       file=sys.stderr)
        results = []
        start_len = len(self.history)
        t_call = time.perf_counter()
        print_every = max(c.log_every, c.max_iters // 20)
        try:
            if log is not None:
                log.write(json.dumps({"type": "start", "step": self.step,
                                      "parameters": self.model.num_parameters,
                                      "tokens_per_step": self.tokens_per_step,
                                      "model_config": self.model.config.to_dict(),
                                      "train_config": c.to_dict(), "data": self.data_info,
                                      **({"ranks": self.comm.size} if self.comm.size > 1
                                         else {})})
                          + "\n")
            if self.step == 0 and c.eval_every:
                self._eval_and_save(log, bar)
            t_log, tokens_log = time.perf_counter(), 0
            comm_log = self.comm.seconds
            while self.step < end:
                if self._stopping(stop):
                    break
                t0 = time.perf_counter()
                s = self.train_step()
                now = time.perf_counter()
                self.elapsed += now - t0
                tokens_log += self.tokens_per_step
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{s['loss']:.4f}", lr=f"{s['lr']:.2e}", refresh=False)
                if self.step % c.log_every == 0 or self.step == end:
                    tps = tokens_log / max(now - t_log, 1e-9)
                    if log is not None:
                        line = {"type": "train", "step": self.step, **s, "tokens_per_sec": tps,
                                "tokens": self.tokens_seen, "time": self.elapsed}
                        if self.comm.size > 1:  # the gradient all-reduce's time since the last line
                            line["allreduce_seconds"] = self.comm.seconds - comm_log
                        log.write(json.dumps(line) + "\n")
                        log.flush()
                    if bar is None and self.step % print_every == 0:
                        self._say(f"step {self.step}/{c.max_iters}: loss {s['loss']:.4f}, "
                                  f"lr {s['lr']:.2e}, {tps:.0f} tokens/s")
                    t_log, tokens_log = time.perf_counter(), 0
                    comm_log = self.comm.seconds
                if not math.isfinite(s["loss"]):
                    raise FloatingPointError(f"the training loss is {s['loss']} at step "
                                             f"{self.step}: lower the learning rate")
                if (c.eval_every and self.step % c.eval_every == 0) or self.step == c.max_iters:
                    self._eval_and_save(log, bar)
                    t_log, tokens_log = time.perf_counter(), 0
                elif c.save_every and self.step % c.save_every == 0:
                    self._save_last()
                if time_limit is not None and self.comm.max(
                        time.perf_counter() - t_call >= time_limit):
                    self._say(f"time limit reached at step {self.step}", bar)
                    if c.eval_every and self.step % c.eval_every != 0:
                        self._eval_and_save(log, bar)   # measure the model the run ends with
                    break
            if self._stopping(stop):
                if log is not None:
                    log.write(json.dumps({"type": "interrupted", "step": self.step,
                                          "signal": stop.signal_name,
                                          "time": self.elapsed}) + "\n")
                    log.flush()
                stop.saving = True
                raise TrainingInterrupted(self.step, self._save_last(), stop.signal_name)
            if self.step < c.max_iters and self.step > 0:
                self._save_last()
        finally:
            if bar is not None:
                bar.close()
            if log is not None:
                log.close()
        results = self.history[start_len:]
        return results


def saved_world_size(checkpoint):
    """The number of ranks the checkpoint's run was trained on (1 when not recorded)."""
    n = checkpoint.state.get("world_size", 1)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ckpt.CheckpointError(f"{checkpoint.path}/checkpoint.json is corrupt: world_size "
                                   f"is {n!r}")
    return n


class _StopSignals:
    """While active (in the main thread), SIGINT and SIGTERM set ``signal_name`` instead of
    interrupting: the training loop stops at the next step boundary and saves. A second
    signal interrupts at once (KeyboardInterrupt), except during that final save, which is
    atomic anyway. Other threads: no handlers (Python delivers signals to the main thread)."""

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self):
        self.signal_name = None
        self.saving = False
        self._old = {}

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if self.signal_name is not None and not self.saving:
            raise KeyboardInterrupt(f"{name} again: stopping without saving")
        self.signal_name = self.signal_name or name

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                sig = getattr(signal, name, None)
                if sig is not None:
                    self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False
