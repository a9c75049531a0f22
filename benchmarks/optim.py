"""The immutable tree optimizers against the in-place flat update, side by side in one
process (samples interleaved round after round, median of the rounds).

python -m benchmarks.optim [--configs medium] [--threads 1] [--repeats 7] [--optimizers adamw]
                          (also: adam, sgd, muon)

Cases per (config, threads, optimizer), the GPT of benchmarks.gpt.CONFIGS, float32:
  flat:     functional.<name>_update_ over model.flat_parameters / flat_grads (in place);
            for muon, muon_update_ on the model's matrices + adamw_update_ on the rest
  tree:     opt.step(model.parameters, grads) then model.with_parameters(new parameters),
            grads the tree loss_and_grads returns (views of flat_grads)
  step:     tree without the with_parameters (what a copy-free with_parameters would give)
  separate: opt.step over a dict tree of separate arrays with the same leaves (the
            coursework case: no flat buffer behind the trees)
One JSON line each: ms (median and best), tree / flat and separate / flat ratios, the clock
and the 1-minute load average. One thread is timed by the thread's CPU time (as
benchmarks.ab: other processes on a shared machine do not count), more by wall time (the
numbers then mean little under load).
The tree / flat ratio is the cost of the immutable API: the step writes new buffers (the
out-of-place kernel, non-temporal stores) and with_parameters adopts the new parameter
buffer, so it should stay near 1 for the Adam family; muon's flat and tree cases both run
the Newton-Schulz products, which dominate.
"""
import argparse
import os
import time

import numpy as np

import transformer_c as tc
from benchmarks.common import emit, paired_times, set_threads
from benchmarks.gpt import CONFIGS
from transformer_c import optim
from transformer_c.nn import GPT, GPTConfig

OPTIMIZERS = {
    # name: (tree optimizer, flat update of (param, grad, state buffers, step))
    "adamw": (lambda: optim.AdamW(learning_rate=1e-4),
              lambda p, g, s, k: tc.functional.adamw_update_(p, g, s[0], s[1], step=k,
                                                               lr=1e-4, weight_decay=1e-2)),
    "adam": (lambda: optim.Adam(learning_rate=1e-4),
             lambda p, g, s, k: tc.functional.adam_update_(p, g, s[0], s[1], step=k, lr=1e-4)),
    "sgd": (lambda: optim.SGD(learning_rate=1e-4, momentum=0.9),
            lambda p, g, s, k: tc.functional.sgd_update_(p, g, s[0], lr=1e-4, momentum=0.9,
                                                         first_step=k == 1)),
    "muon": (lambda: optim.Muon(), None),  # flat: muon_flat below
}


def muon_flat(table, n):
    """The in-place flat Muon + AdamW update of a model with matrices ``table`` (n
    parameters): (p, g, [momentum, m, v], k) -> None, optim.Muon's defaults."""
    from transformer_c.optim import _complement_runs

    runs = _complement_runs(table, n)

    def update(p, g, s, k):
        tc.functional.muon_update_(p, g, s[0], table)
        for a, b in runs:
            tc.functional.adamw_update_(p[a:b], g[a:b], s[1][a:b], s[2][a:b], step=k, lr=3e-4,
                                        betas=(0.9, 0.95), eps=1e-10, weight_decay=0.0)
    return update


def cases(config, name):
    """{"flat": fn, "tree": fn, "step": fn, "separate": fn}: one optimizer step each per
    call (the module doc)."""
    make_opt, flat_update = OPTIMIZERS[name]
    model = GPT.create(GPTConfig(**CONFIGS[config][0]), random_generator=np.random.default_rng(0))
    rng = np.random.default_rng(1)
    model.flat_grads[...] = rng.standard_normal(model.num_parameters).astype(model.dtype) * 1e-3
    grads = model._grads_tree()  # the tree loss_and_grads returns: views of flat_grads
    flat_model = model.with_parameters(model.parameters)
    flat_state = [np.zeros_like(flat_model.flat_parameters) for _ in range(3)]
    if flat_update is None:
        flat_update = muon_flat(model.muon_matrices(), model.num_parameters)
    flat_k = [0]

    def flat():
        flat_k[0] += 1
        flat_update(flat_model.flat_parameters, flat_model.flat_grads, flat_state, flat_k[0])

    tree_state = {"model": model, "opt": make_opt()}

    def tree():
        params, tree_state["opt"] = tree_state["opt"].step(tree_state["model"].parameters, grads)
        tree_state["model"] = tree_state["model"].with_parameters(params)

    step_state = {"opt": make_opt()}

    def step():
        _, step_state["opt"] = step_state["opt"].step(model.parameters, grads)

    leaves = tc.tree.flatten(model.parameters)
    sep = {"params": {k: v.copy() for k, v in leaves.items()}, "opt": make_opt()}
    sep_grads = {k: v.copy() for k, v in tc.tree.flatten(grads).items()}

    def separate():
        sep["params"], sep["opt"] = sep["opt"].step(sep["params"], sep_grads)

    return {"flat": flat, "tree": tree, "step": step, "separate": separate}


def run(configs=("medium",), threads=(1,), repeats=7, optimizers=("adamw",), quiet=False,
        min_time=0.2):
    """One record per (config, threads, optimizer); returns the records."""
    records = []
    for config in configs:
        for n in threads:
            set_threads(n)
            for name in optimizers:
                fns = cases(config, name)
                clock = time.thread_time if n == 1 else time.perf_counter
                times = paired_times(fns, {"repeats": repeats, "warmup": 2,
                                            "min_time": min_time, "clock": clock})
                rec = {"bench": "optim_tree_vs_flat", "config": config, "threads": n,
                       "optimizer": name, "clock": "thread" if n == 1 else "wall",
                       "load_1min": round(os.getloadavg()[0], 2)}
                for k, (med, best) in times.items():
                    rec[f"{k}_ms"] = round(med * 1e3, 2)
                    rec[f"{k}_best_ms"] = round(best * 1e3, 2)
                rec["tree_over_flat"] = round(times["tree"][0] / times["flat"][0], 3)
                for k in ("step", "separate"):
                    rec[f"{k}_over_flat"] = round(times[k][0] / times["flat"][0], 3)
                records.append(emit(rec, quiet=quiet))
    return records


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", nargs="+", default=["medium"], choices=sorted(CONFIGS))
    ap.add_argument("--threads", nargs="+", type=int, default=[1])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--optimizers", nargs="+", default=["adamw"], choices=sorted(OPTIMIZERS))
    args = ap.parse_args(argv)
    run(args.configs, args.threads, args.repeats, args.optimizers)


if __name__ == "__main__":
    main()
