"""Tiny Shakespeare recipe ablation at equal compute (issue "Time to quality", item 6).

Each variant is a preset (default ``shakespeare-6x384``) with a few settings changed. Every
variant gets the same budget of one-thread CPU seconds: a short calibration measures its own
step cost, its step count is budget / step cost, and its schedule (warmup, then cosine)
spans exactly those steps, so a variant with a dearer step (Muon's Newton-Schulz products,
a bigger batch) trains fewer steps, as it would in the same wall time. CPU time on one
thread, unlike wall time, hardly depends on what else the machine runs, so the ablation can
run while other jobs share the cores (several variants at once, one per core). A budget of
540 CPU seconds on one thread is about 5 minutes of two-thread wall time on the reference
machine (the 6x384 step scales 1.9x on 2 threads).

After training, the whole validation split (the last 10% of the corpus, every
non-overlapping window) is evaluated: ``val_whole`` in nats per character.

    python examples/recipe_ablation.py base muon --cpu-seconds 540 --threads 1
    python examples/recipe_ablation.py --list

One JSON line per variant on stdout (and appended to ``--results``).
"""
import argparse
import dataclasses
import json
import os
import shutil
import sys
import time

import numpy as np

import transformer_c as tc
from transformer_c.cli import evaluate_text
from transformer_c.data import CharTokenizer, StreamDataset, split_text
from transformer_c.nn import GPT, GPTConfig
from transformer_c.presets import PRESETS
from transformer_c.train import Trainer, TrainConfig

# LLaMA-style block at the same parameter count: RMSNorm, SwiGLU of width 8C/3 (1024 at C=384)
MODERN = dict(norm_type="rmsnorm", gated=True, activation="silu", n_inner=1024)
VARIANTS = {
    "base": {},
    "muon": dict(optimizer="muon"),
    "b16": dict(batch_size=16),
    "lr2e-3": dict(lr=2e-3, min_lr=2e-4),
    "modern": MODERN,
    "rope": dict(position="rope"),
    "qknorm": dict(qk_norm=True),
    "drop0.1": dict(dropout=0.1),
    "t128": dict(block_size=128, batch_size=16),
    "4layer": dict(n_layer=4),
    "8layer": dict(n_layer=8),
}
"""name -> settings changed from the preset; join names with "+" (e.g. "muon+modern")."""

GPT_FIELDS = {f.name for f in dataclasses.fields(GPTConfig)}
TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


def settings(variant, preset="shakespeare-6x384"):
    """The preset's settings with each "+"-joined part of ``variant`` applied in order
    (KeyError naming an unknown part)."""
    s = dict(PRESETS[preset])
    for part in variant.split("+"):
        if part not in VARIANTS:
            raise KeyError(f"unknown variant {part!r}; known: {sorted(VARIANTS)}")
        s.update(VARIANTS[part])
    return s


def make_trainer(s, splits, vocab_size, max_iters, out_dir, seed=1337):
    """A Trainer for settings ``s`` over ``splits`` = (train ids, val ids) whose schedule
    spans ``max_iters`` steps (warmup capped at a tenth of them); four evaluations of 20
    batches along the way (none when out_dir is None: the calibration)."""
    g = {k: v for k, v in s.items() if k in GPT_FIELDS}
    model = GPT.create(GPTConfig(vocab_size=vocab_size, **g), np.random.default_rng(seed))
    t = {k: v for k, v in s.items() if k in TRAIN_FIELDS}
    t.update(max_iters=max_iters, warmup_iters=min(t["warmup_iters"], max_iters // 10),
             eval_every=0 if out_dir is None else max(max_iters // 4, 1), eval_iters=20,
             seed=seed)
    T = model.config.block_size
    return Trainer(model, StreamDataset(splits[0], T), StreamDataset(splits[1], T),
                   TrainConfig(**t), out_dir=out_dir, quiet=True)


def step_cpu_seconds(s, splits, vocab_size, steps=6):
    """One step's CPU seconds for settings ``s``: the mean of ``steps`` steps after two
    warm-up steps, measured with time.process_time."""
    cal = make_trainer(s, splits, vocab_size, 1000, None)
    cal.train(num_steps=2)
    c0 = time.process_time()
    cal.train(num_steps=steps)
    return (time.process_time() - c0) / steps


def run_variant(variant, text, cpu_seconds, *, preset="shakespeare-6x384", out_dir=None,
                min_steps=20):
    """Train ``variant`` on ``text`` (split 90/10, character tokenizer) for ``cpu_seconds``
    of CPU time; returns (record, trainer): the record holds the steps, the measured CPU
    and wall seconds, val_whole (the loss over the whole validation split) and best_val20
    (the best of the evaluations along the way, 20 batches each)."""
    s = settings(variant, preset)
    tok = CharTokenizer.train(text)
    tr_text, va_text = split_text(text, 0.1)
    splits = (tok.encode(tr_text), tok.encode(va_text))
    step_cpu = step_cpu_seconds(s, splits, tok.vocab_size)
    steps = max(int(cpu_seconds / step_cpu), min_steps)
    if out_dir is not None:
        shutil.rmtree(out_dir, ignore_errors=True)
    trainer = make_trainer(s, splits, tok.vocab_size, steps, out_dir)
    c0, w0 = time.process_time(), time.perf_counter()
    trainer.train()
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    whole = evaluate_text(trainer.model, tok, va_text, 16)
    return dict(variant=variant, preset=preset, cpu_budget=cpu_seconds,
                step_cpu=round(step_cpu, 4), steps=steps, cpu=round(cpu, 1),
                wall=round(wall, 1), threads=tc.get_num_threads(),
                val_whole=round(whole["loss"], 4), best_val20=round(trainer.best_val_loss, 4),
                params=trainer.model.num_parameters,
                load=round(os.getloadavg()[0], 2)), trainer


def default_data():
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.join(here, "..", "..", "shared", "data", "tinyshakespeare.txt")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("variants", nargs="*", help="variant names, parts joined by '+'")
    p.add_argument("--cpu-seconds", type=float, default=540.0)
    p.add_argument("--preset", default="shakespeare-6x384", choices=sorted(PRESETS))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data", default=None, help="a text file (default: "
                   "../shared/data/tinyshakespeare.txt)")
    p.add_argument("--out", default="runs/recipe", help="one run folder per variant")
    p.add_argument("--results", default=None, help="append the JSON lines here too")
    p.add_argument("--list", action="store_true", help="print the variants and exit")
    a = p.parse_args(argv)
    if a.list or not a.variants:
        for name, change in VARIANTS.items():
            print(f"{name:8s} {change}")
        return 0
    for v in a.variants:
        try:
            settings(v, a.preset)
        except KeyError as e:
            p.error(f"variants: {e.args[0]}")
    if not a.cpu_seconds > 0:
        p.error(f"--cpu-seconds must be > 0, got {a.cpu_seconds}")
    path = a.data or default_data()
    if not os.path.isfile(path):
        p.error(f"--data: no such file {path}")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    tc.set_num_threads(a.threads)
    for v in a.variants:
        rec, _ = run_variant(v, text, a.cpu_seconds, preset=a.preset,
                          out_dir=os.path.join(a.out, v))
        line = json.dumps(rec)
        print(line, flush=True)
        if a.results:
            with open(a.results, "a") as f:
                f.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
