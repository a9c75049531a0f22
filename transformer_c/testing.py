"""Checking implementations against each other and against finite differences (for
instructors and students).

- :func:`gradcheck` checks a module's (or a function's) backward against float64 central
  differences, in the spirit of ``torch.autograd.gradcheck``; a failure names the
  parameter or input path, the index, and the analytic and numeric values.
- :func:`compare_modules` runs a student's module and a reference on the same inputs and
  reports, per output and per gradient, the maximum absolute and relative error and where
  the worst one is.
- :func:`default_tolerances` is the dtype-aware tolerance both use:

  ==========  ==========  ==========
  dtype       rtol        atol
  ==========  ==========  ==========
  float64     1e-7        1e-9
  float32     1e-4        1e-5
  ==========  ==========  ==========

  (float32 kernels accumulate in a different order than NumPy, so agreement to a few ulps
  times the reduction length is all one can ask; float64 leaves room for the same.)

Two module protocols are understood (see :func:`run_module`): the tree protocol of
transformer_c.nn and the POSTECH "mlp" framework (``parameters``, ``forward(**inputs)``,
``backward(gradient_outputs, **inputs) -> (param_grads, input_grads)``), and the stateful
CMU "mytorch" protocol (``forward(*inputs)`` stores state, ``backward(grad)`` returns the
input gradient(s) and leaves parameter gradients in ``dLd*`` attributes).
"""
import types

import numpy as np

from . import tree as _tree

__all__ = ["default_tolerances", "GradcheckError", "gradcheck", "ErrorStats",
           "compare_modules", "compare_results", "run_module"]

_TOLERANCES = {np.dtype(np.float64): dict(rtol=1e-7, atol=1e-9),
               np.dtype(np.float32): dict(rtol=1e-4, atol=1e-5)}


def default_tolerances(dtype):
    """{"rtol": ..., "atol": ...} for comparing results of ``dtype`` (float32 or float64;
    anything else gets float64's)."""
    return dict(_TOLERANCES.get(np.dtype(dtype), _TOLERANCES[np.dtype(np.float64)]))


class GradcheckError(AssertionError):
    """A gradient disagrees with finite differences (the message names path and index)."""


_NOT_SUBMODULES = (np.ndarray, type, types.FunctionType, types.MethodType, types.ModuleType,
                   types.BuiltinFunctionType)


def _is_tree_module(m):
    return hasattr(m, "parameters") and hasattr(m, "with_parameters")


def _is_float(x):
    return isinstance(x, np.ndarray) and x.dtype.kind == "f"


def _grads_dict(grads, names):
    if isinstance(grads, dict):
        return grads
    if not isinstance(grads, (tuple, list)):
        grads = (grads,)
    return dict(zip(names, grads))


def _stateful_param_grads(module, prefix="", seen=None):
    """{path: array} for every ``dLd*`` ndarray attribute of module and its sub-objects
    (attribute paths joined by '.'), dLdA (the returned input gradient) excluded."""
    seen = set() if seen is None else seen
    if id(module) in seen or not hasattr(module, "__dict__"):
        return {}
    seen.add(id(module))
    out = {}
    for name, val in vars(module).items():
        if name.startswith("dLd") and name != "dLdA" and isinstance(val, np.ndarray):
            out[prefix + name] = val
        elif hasattr(val, "__dict__") and not isinstance(val, _NOT_SUBMODULES):
            out.update(_stateful_param_grads(val, f"{prefix}{name}.", seen))
    return out


def run_module(module, inputs, gradient_outputs):
    """Run forward then backward once. inputs: dict name -> array (in the order a
    stateful module's forward takes them positionally); gradient_outputs: the output's
    shape. Returns (output, grads) with grads a flat dict: "inputs/NAME" and
    "parameters/PATH" (tree protocol) or "parameters/ATTR.dLdW" (stateful)."""
    names = list(inputs)
    if _is_tree_module(module):
        out = module.forward(**inputs)
        pgrads, igrads = module.backward(gradient_outputs, **inputs)
        grads = {f"parameters/{k}": v for k, v in _tree.flatten(pgrads).items()}
    else:
        out = module.forward(*inputs.values())
        igrads = _grads_dict(module.backward(gradient_outputs), names)
        grads = {f"parameters/{k}": v for k, v in _stateful_param_grads(module).items()}
    grads.update({f"inputs/{k}": v for k, v in _grads_dict(igrads, names).items()
                  if _is_float(np.asarray(inputs.get(k)))})
    return out, grads


def gradcheck(target, inputs, *, eps=1e-6, atol=1e-5, rtol=1e-3, backward=None,
              max_checks=None, seed=0):
    """Check analytic gradients against float64 central differences; returns True.

    target: a module (either protocol, see :func:`run_module`), or a function
      ``f(**inputs) -> output`` together with ``backward(grad_output, **inputs) -> input
      grads`` (dict by name, or a tuple in the inputs' order).
    inputs: dict name -> array; float arrays are perturbed (integer ones, e.g. token ids,
      are held fixed). Everything runs in float64: inputs are cast, tree modules get float64
      parameters through ``with_parameters``, a stateful module's float weights are cast in
      place (attribute ``X`` for each gradient attribute ``dLdX``).
    The scalar checked is sum(output * G) with G a seeded standard-normal array of the
    output's shape, so one backward gives every analytic gradient. Each element (or, with
    ``max_checks``, that many seeded random elements per array) is perturbed by +-eps.
    Raises GradcheckError naming the path ("parameters/..." or "inputs/NAME"), the index,
    and the analytic and numeric values when |analytic - numeric| > atol + rtol*|numeric|.
    """
    inputs = {k: (np.asarray(v, np.float64) if _is_float(np.asarray(v)) else np.asarray(v))
              for k, v in inputs.items()}
    if backward is not None:
        module = _FunctionModule(target, backward, list(inputs))
    elif _is_tree_module(target):
        module = target.with_parameters(
            _tree.tree_map(lambda p: np.asarray(p, np.float64), target.parameters))
    elif hasattr(target, "forward") and hasattr(target, "backward"):
        module = target
    else:
        raise TypeError("gradcheck needs a module (forward and backward), or a function "
                        "and backward=")
    out0 = np.asarray(_forward(module, inputs))
    _, first = run_module(module, inputs, np.zeros(out0.shape))  # names stateful grads
    slots = list(_slots(module, inputs, first))                 # casts stateful weights
    G = np.random.default_rng(seed).standard_normal(out0.shape)
    _, analytic = run_module(module, inputs, G)

    def loss(mod, inp):
        return float(np.sum(np.asarray(_forward(mod, inp), np.float64) * G))

    rng = np.random.default_rng(seed + 1)
    for path, arr, setter in slots:
        ana = np.asarray(analytic.get(path), np.float64)
        if path not in analytic or ana.shape != arr.shape:
            raise GradcheckError(f"{path}: backward gave no gradient of shape {arr.shape} "
                                 f"(got {None if path not in analytic else ana.shape})")
        idx = list(np.ndindex(arr.shape))
        if max_checks is not None and len(idx) > max_checks:
            idx = [idx[i] for i in sorted(rng.choice(len(idx), max_checks, replace=False))]
        for i in idx:
            plus, minus = arr.copy(), arr.copy()
            plus[i] += eps
            minus[i] -= eps
            num = (loss(*setter(plus)) - loss(*setter(minus))) / (2 * eps)
            setter(arr)
            if not abs(ana[i] - num) <= atol + rtol * abs(num):
                raise GradcheckError(f"{path}{list(i)}: analytic {ana[i]!r} vs numeric "
                                     f"{num!r} (|diff| {abs(ana[i] - num):.3g} > atol "
                                     f"{atol:g} + rtol {rtol:g} * |numeric|)")
    return True


def _forward(module, inputs):
    if _is_tree_module(module):
        return module.forward(**inputs)
    return module.forward(*inputs.values())


class _FunctionModule:
    """A function and its backward seen as a stateful module (no parameters)."""

    def __init__(self, f, backward, names):
        self.f, self.b, self.names, self.last = f, backward, names, None

    def forward(self, *args):
        self.last = dict(zip(self.names, args))
        return self.f(**self.last)

    def backward(self, g):
        return self.b(g, **self.last)


def _attr_owner(module, dotted):
    *parents, leaf = dotted.split(".")
    for p in parents:
        module = getattr(module, p)
    return module, leaf


def _slots(module, inputs, grads):
    """(path, float64 array, setter) for every float input and parameter; setter(new)
    returns (module, inputs) with that array replaced (stateful modules: in place)."""
    for name, arr in inputs.items():
        if _is_float(arr):
            yield (f"inputs/{name}", arr,
                   lambda new, name=name: (module, {**inputs, name: new}))
    if _is_tree_module(module):
        flat = _tree.flatten(module.parameters)
        for path, arr in flat.items():
            def setter(new, path=path):
                p = dict(flat, **{path: new})
                return module.with_parameters(_tree.unflatten(p, like=module.parameters)), inputs
            yield f"parameters/{path}", np.asarray(arr, np.float64), setter
        return
    for path in grads:
        if not path.startswith("parameters/"):
            continue
        owner, attr = _attr_owner(module, path[len("parameters/"):])
        pname = attr[len("dLd"):]
        if not _is_float(getattr(owner, pname, None)):
            raise GradcheckError(f"{path}: no float array attribute {pname!r} to perturb")
        setattr(owner, pname, np.asarray(getattr(owner, pname), np.float64))

        def setter(new, owner=owner, pname=pname):
            setattr(owner, pname, new)
            return module, inputs
        yield path, getattr(owner, pname).copy(), setter


class ErrorStats:
    """How far one student array is from the reference's.

    Attributes: name; shape_ok (False when the shapes differ, and then only ``message``
    is meaningful); max_abs, max_rel (max |s - r| / max(|r|, tiny)); worst_index (the
    index of the largest excess over the tolerance; for boolean arrays the first
    differing one), student / reference values there; mismatches (entries beyond the
    tolerance); nonfinite (count of NaN/inf in the student's array where the reference is finite);
    ok (within rtol/atol everywhere, NaN matching NaN).
    """

    def __init__(self, name, student, reference, rtol, atol):
        self.name, self.rtol, self.atol = name, rtol, atol
        self.missing = student is None
        s, r = np.asarray(np.nan if student is None else student), np.asarray(reference)
        self.shape_ok = s.shape == r.shape and not self.missing
        self.student_shape, self.reference_shape = s.shape, r.shape
        self.max_abs = self.max_rel = float("nan")
        self.worst_index = self.student_value = self.reference_value = None
        self.nonfinite = self.mismatches = 0
        self.boolean = r.dtype == np.bool_
        if not self.shape_ok:
            self.ok = False
            return
        s, r = s.astype(np.float64), r.astype(np.float64)
        both_nan = np.isnan(s) & np.isnan(r)
        diff = np.where(both_nan, 0.0, np.abs(s - r))
        diff = np.where(np.isnan(diff), np.inf, diff)
        self.nonfinite = int(np.sum(~np.isfinite(s) & np.isfinite(r)))
        excess = diff - (atol + rtol * np.abs(np.nan_to_num(r)))
        self.mismatches = int(np.sum(excess > 0))
        self.ok = self.mismatches == 0
        if s.size:
            self.max_abs = float(diff.max())
            self.max_rel = float((diff / np.maximum(np.abs(r), 1e-300)).max())
            w = np.unravel_index(int(np.argmax(excess)), s.shape)
            self.worst_index = tuple(int(i) for i in w)
            cast = bool if self.boolean else float
            self.student_value, self.reference_value = cast(s[w]), cast(r[w])
        else:
            self.max_abs = self.max_rel = 0.0

    @property
    def message(self):
        """One line a student can act on."""
        if self.missing:
            return f"{self.name}: MISSING (not produced; expected shape {self.reference_shape})"
        if not self.shape_ok:
            return (f"{self.name}: shape {self.student_shape}, expected "
                    f"{self.reference_shape}")
        if self.boolean:
            if self.ok:
                return f"{self.name}: ok"
            return (f"{self.name}: MISMATCH {self.mismatches} of {np.prod(self.reference_shape)}"
                    f" entries differ; first at index {list(self.worst_index)}: got "
                    f"{self.student_value}, expected {self.reference_value}")
        head = "ok" if self.ok else "MISMATCH"
        msg = (f"{self.name}: {head}  max abs err {self.max_abs:.3g}, max rel err "
               f"{self.max_rel:.3g}")
        if not self.ok:
            msg += (f"; {self.mismatches} entries off, worst at index {list(self.worst_index)}: got {self.student_value!r}, "
                    f"expected {self.reference_value!r} (rtol {self.rtol:g}, atol "
                    f"{self.atol:g})")
            if self.nonfinite:
                msg += f"; {self.nonfinite} NaN/inf value(s) where the reference is finite"
        return msg

    def __repr__(self):
        return f"ErrorStats({self.message})"


def compare_modules(student, reference, inputs, *, gradient_outputs=None, seed=0,
                    rtol=None, atol=None):
    """Run ``student`` and ``reference`` (same protocol, same parameters) on ``inputs``
    and compare the output and every gradient.

    inputs: dict name -> array (positional order for stateful modules).
    gradient_outputs: the gradient fed to both backwards (default: seeded standard normal
      of the reference output's shape, in its dtype).
    rtol / atol: default :func:`default_tolerances` of the reference output's dtype.
    Returns {"output": ErrorStats, "inputs/NAME": ..., "parameters/PATH": ...} in that
    order; a gradient the student does not produce is reported as MISSING. Exceptions raised by the student propagate.
    """
    ref_out = np.asarray(_forward(reference, inputs))
    tol = default_tolerances(ref_out.dtype)
    tol = dict(rtol=tol["rtol"] if rtol is None else rtol,
               atol=tol["atol"] if atol is None else atol)
    if gradient_outputs is None:
        gradient_outputs = np.random.default_rng(seed).standard_normal(
            ref_out.shape).astype(ref_out.dtype if ref_out.dtype.kind == "f" else np.float64)
    ref_out, ref_grads = run_module(reference, inputs, gradient_outputs)
    out, grads = run_module(student, inputs, gradient_outputs)
    return compare_results(out, grads, ref_out, ref_grads, **tol)


def compare_results(output, grads, ref_output, ref_grads, *, rtol, atol):
    """The comparison behind :func:`compare_modules`, on results already computed (e.g. a
    reference loaded from a snapshot): {"output": ErrorStats, path: ErrorStats for every
    path of ref_grads} (a path missing from ``grads`` is reported MISSING)."""
    report = {"output": ErrorStats("output", output, ref_output, rtol=rtol, atol=atol)}
    for path, r in ref_grads.items():
        report[path] = ErrorStats(path, grads.get(path), r, rtol=rtol, atol=atol)
    return report
