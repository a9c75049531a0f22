"""Reference snapshots: a suite's cases and transformer_c's results in one float64 .npz,
so a grader can run where transformer_c is not installed (reading needs only NumPy).

Layout (every key "CASE/..." with CASE the case index): component, title, hint (str),
hidden, grads (bool), max_score, input_order (str array), config/KEY (int),
params/PATH, inputs/NAME (float64, or the bool / int arrays masks and ids are),
grad_output (absent when only the forward is checked), expected/output,
expected/GRADPATH; and meta/suite, meta/count.
"""
import numpy as np

from . import suites as _suites

__all__ = ["export_snapshot", "load_snapshot"]


def _f64(x):
    x = np.asarray(x)
    return x.astype(np.float64) if x.dtype.kind == "f" else x


def export_snapshot(path, suite, *, seed=0, hidden_seed=None):
    """Write the suite's cases (from seed / hidden_seed) and transformer_c's expected
    outputs and gradients to ``path`` (.npz). Returns the number of cases."""
    from . import reference_results

    cases = _suites.make_cases(suite, seed, hidden_seed)
    data = {"meta/suite": np.array(suite), "meta/count": np.array(len(cases))}
    for i, (case, (out, grads, G)) in enumerate(zip(cases, reference_results(suite, cases))):
        p = f"{i}/"
        data.update({p + "component": np.array(case.component), p + "title": np.array(case.title),
                     p + "hint": np.array(case.hint), p + "hidden": np.array(case.hidden),
                     p + "grads": np.array(case.grads), p + "max_score": np.array(case.max_score),
                     p + "input_order": np.array(list(case.inputs), dtype=str)})
        data.update({p + f"config/{k}": np.array(v) for k, v in case.config.items()})
        data.update({p + f"params/{k}": _f64(v) for k, v in case.params.items()})
        data.update({p + f"inputs/{k}": _f64(v) for k, v in case.inputs.items()})
        if G is not None:
            data[p + "grad_output"] = _f64(G)
        data[p + "expected/output"] = _f64(out)
        data.update({p + f"expected/{k}": _f64(v) for k, v in grads.items()})
    np.savez_compressed(path, **data)
    return len(cases)


def load_snapshot(path):
    """(suite, cases, expected) from an exported snapshot; expected[i] is (output, grads,
    grad_output) as :func:`transformer_c.grade.reference_results` gives them."""
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    suite = str(data["meta/suite"])
    cases, expected = [], []
    for i in range(int(data["meta/count"])):
        p = f"{i}/"

        def group(name):
            pre = p + name + "/"
            return {k[len(pre):]: v for k, v in data.items() if k.startswith(pre)}
        inputs = group("inputs")
        case = _suites.Case(str(data[p + "component"]), str(data[p + "title"]),
                            str(data[p + "hint"]),
                            config={k: v.item() for k, v in group("config").items()},
                            params=group("params"),
                            inputs={k: inputs[k] for k in data[p + "input_order"].tolist()},
                            grads=bool(data[p + "grads"]),
                            max_score=float(data[p + "max_score"]))
        case.hidden = bool(data[p + "hidden"])
        exp = group("expected")
        out = exp.pop("output")
        cases.append(case)
        expected.append((out, exp, data.get(p + "grad_output")))
    return suite, cases, expected
