"""The GPT training step with the modern block options of issue 17 (RMSNorm, QK-norm, also
with grouped kv heads, logit soft-capping), each against the same model without it: transformer_c's
loss_and_grads (the whole forward + backward in C), float32, every variant's steps
interleaved sample by sample in one process (a machine shared with other work slows them
alike).

python -m benchmarks.gpt_blocks [--threads 1] [--configs small medium] [--repeats 7]

One JSON line per (config, threads, variant): ms per step (median and best), the ratio to
the baseline "layernorm" (median and best), the step's matrix-product FLOPs
(benchmarks.gpt.step_flops: the grouped k, v projections' smaller products counted) and
the ratio of time per FLOP to the baseline's (> 1: slower per FLOP), and the 1-minute load
average.
"""
import argparse
import os
import statistics

import numpy as np

from benchmarks.common import emit, median_time, set_threads
from benchmarks.gpt import CONFIGS, step_flops
from transformer_c.nn import GPT, GPTConfig

VARIANTS = {
    "layernorm": {},
    "rmsnorm": dict(norm_type="rmsnorm"),
    "qk_norm": dict(qk_norm=True),
    "softcap": dict(logit_softcap=30.0),
    "rmsnorm_qk_norm_softcap": dict(norm_type="rmsnorm", qk_norm=True, logit_softcap=30.0),
    "qk_norm_gqa": dict(qk_norm=True, n_kv_head=2),  # 2 kv heads (4 or 6 query heads)
}


def run(names, threads, repeats, variants=VARIANTS):
    """Emit one record per (config, thread count, variant); returns them."""
    out = []
    for name in names:
        kw, B, T = CONFIGS[name]
        r = np.random.default_rng(1)
        models = {}
        for v, extra in variants.items():
            cfg = GPTConfig(**kw, **extra)
            models[v] = GPT.create(cfg, np.random.default_rng(0))
        x = r.integers(0, kw["vocab_size"], (B, T))
        y = r.integers(0, kw["vocab_size"], (B, T))
        fns = {v: (lambda m=m: m.loss_and_grads(x, y)) for v, m in models.items()}
        for t in threads:
            set_threads(t)
            samples = {v: [] for v in fns}
            for fn in fns.values():
                fn()
                fn()
            for _ in range(repeats):
                for v, fn in fns.items():
                    samples[v].append(median_time(fn, repeats=1, warmup=0, min_time=0.2))
            base = "layernorm" if "layernorm" in samples else next(iter(samples))
            b_med, b_best = statistics.median(samples[base]), min(samples[base])
            b_flops = step_flops(models[base].config, B, T)
            for v, times in samples.items():
                med, best = statistics.median(times), min(times)
                flops = step_flops(models[v].config, B, T)
                rec = {"bench": "gpt_blocks", "config": name, **kw, "B": B, "T": T,
                       "threads": t, "variant": v, **variants[v],
                       "ms": round(med * 1e3, 2), "best_ms": round(best * 1e3, 2),
                       "ratio_vs_layernorm": round(med / b_med, 3),
                       "best_ratio_vs_layernorm": round(best / b_best, 3),
                       "gflop_per_step": round(flops / 1e9, 6),
                       "gflops": round(flops / med / 1e9, 1),
                       "time_per_flop_vs_layernorm": round((med / flops) / (b_med / b_flops), 3),
                       "load_avg_1min": os.getloadavg()[0]}
                emit(rec)
                out.append(rec)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--threads", type=int, nargs="+", default=[1])
    p.add_argument("--configs", nargs="+", default=["small", "medium"], choices=sorted(CONFIGS))
    p.add_argument("--repeats", type=int, default=7)
    a = p.parse_args(argv)
    run(a.configs, a.threads, a.repeats)


if __name__ == "__main__":
    main()
