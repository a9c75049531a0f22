"""Named model + training settings for ``transformer_c train --preset NAME``.

Each preset gives every model size and optimisation setting the command line has; explicit
flags override them. Times are for the machine each was measured on (2 cores; the older
ones an AMD AVX2 machine, ``shakespeare-6x384-muon`` an Intel AVX-512 one).

- ``tiny``: a 2-layer, 64-wide model for smoke tests (seconds).
- ``small`` (the default): 4 layers, 4 heads, 128 wide, block 128, 1000 steps of 8 windows,
  lr 3e-3 (cosine to 3e-4): about 70 s of training on 2 idle cores (measured: 68 s idle,
  92 s with another job on the same cores; README.md), validation loss
  1.91 nats per character on the embedded corpus (Python source), whose samples come out
  looking like Python.
- ``shakespeare-4x128``: nanoGPT's CPU "baby GPT" for Tiny Shakespeare (README: val loss
  1.88): 4 layers, 4 heads, 128 wide, block 64, batch 12, 2000 steps, dropout 0, lr 1e-3 with
  100 warmup steps and cosine decay to 1e-4, beta2 0.99, weight decay 0.1, clip 1.0, no biases.
- ``shakespeare-6x384``: nanoGPT's shakespeare-char model (6 layers, 6 heads, 384 wide,
  block 256) with the batch and step count cut to fit about 60 minutes on 2 cores
  (batch 8, 2400 steps: smaller batches, more steps, for the most progress per token in a
  fixed time); dropout 0 because so short a run (about 5 epochs) does not overfit.
- ``shakespeare-6x384-muon``: the same model trained with Muon (the block matrices; AdamW on
  the rest), batch 16, dropout 0.1, 1850 steps (about 7.6M tokens, 7.5 epochs): validation
  loss 1.486 nats per character on the whole Tiny Shakespeare validation split in 54 minutes
  on 2 idle cores of the AVX-512 machine (README, "Training"; the AdamW preset above: 1.576
  in 58 minutes on the older AVX2 machine).
- ``tiny-llama``: ``tiny`` with LLaMA's block: RoPE, RMSNorm without biases, the gated SiLU
  MLP (SwiGLU) of width 176 (about 8/3 n_embd), one shared key/value head (multi-query
  attention) and an untied output projection; about the same size as ``tiny`` (0.11M
  parameters), its 300 steps end at validation loss 2.288 nats per character on the
  embedded corpus against ``tiny``'s 2.542 (seed 1337, 4-5 s each on 1 thread at load 4;
  one seed, 2026-12-07).

A preset may carry any of ARCH_KEYS (the GPT's architecture options, from GPTConfig: its
BlockOptions and position, norm, activation, tie_embeddings, n_inner); those it leaves out
take GPTConfig's defaults (ARCH_DEFAULTS), so every preset gives every MODEL_KEYS value.
"""
import dataclasses

from .nn import GPTConfig
from .nn._config import BlockOptions

__all__ = ["PRESETS", "DEFAULT_PRESET", "MODEL_KEYS", "SIZE_KEYS", "ARCH_KEYS", "ARCH_DEFAULTS",
           "TRAIN_KEYS"]

SIZE_KEYS = ("n_layer", "n_head", "n_embd", "block_size", "dropout", "bias")
# the architecture options train sets from flags and presets: GPTConfig's own choices, then
# every block option (BlockOptions, declared once in nn._config: a new one joins by itself)
ARCH_KEYS = ("position", "norm", "activation", "tie_embeddings", "n_inner") + tuple(
    BlockOptions.__annotations__)
ARCH_DEFAULTS = {f.name: f.default for f in dataclasses.fields(GPTConfig) if f.name in ARCH_KEYS}
MODEL_KEYS = SIZE_KEYS + ARCH_KEYS
TRAIN_KEYS = ("max_iters", "batch_size", "grad_accum", "lr", "min_lr", "warmup_iters",
              "schedule", "weight_decay", "beta1", "beta2", "grad_clip", "label_smoothing",
              "eval_every", "eval_iters", "log_every", "optimizer", "muon_lr", "muon_momentum")

_NANOGPT = dict(ARCH_DEFAULTS, lr=1e-3, min_lr=1e-4, warmup_iters=100, schedule="cosine",
                weight_decay=0.1, beta1=0.9, beta2=0.99, grad_clip=1.0, label_smoothing=0.0,
                grad_accum=1, log_every=10, bias=False, optimizer="adamw", muon_lr=0.02,
                muon_momentum=0.95)

PRESETS = {
    "tiny": dict(_NANOGPT, n_layer=2, n_head=2, n_embd=64, block_size=64, dropout=0.0,
                 max_iters=300, batch_size=8, lr=2e-3, min_lr=2e-4, warmup_iters=20,
                 eval_every=100, eval_iters=5),
    "small": dict(_NANOGPT, n_layer=4, n_head=4, n_embd=128, block_size=128, dropout=0.0,
                  max_iters=1000, batch_size=8, lr=3e-3, min_lr=3e-4, warmup_iters=50,
                  eval_every=250, eval_iters=10),
    "shakespeare-4x128": dict(_NANOGPT, n_layer=4, n_head=4, n_embd=128, block_size=64,
                              dropout=0.0, max_iters=2000, batch_size=12, eval_every=250,
                              eval_iters=20),
    "shakespeare-6x384": dict(_NANOGPT, n_layer=6, n_head=6, n_embd=384, block_size=256,
                              dropout=0.0, max_iters=2400, batch_size=8, eval_every=200,
                              eval_iters=20),
}
PRESETS["shakespeare-6x384-muon"] = dict(PRESETS["shakespeare-6x384"], optimizer="muon",
                                         batch_size=16, dropout=0.1, max_iters=1850,
                                         eval_every=250)
PRESETS["tiny-llama"] = dict(PRESETS["tiny"], position="rope", norm_type="rmsnorm", bias=False,
                             activation="silu", gated=True, n_inner=176, n_kv_head=1,
                             tie_embeddings=False)
DEFAULT_PRESET = "small"
