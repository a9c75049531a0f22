"""Autograding student NumPy implementations against transformer_c.

    python -m transformer_c.grade STUDENT_FILE --suite mytorch|mlp|hw4lib
        [--seed 0] [--hidden-seed N] [--snapshot REF.npz] [--results results.json]
    python -m transformer_c.grade --export-snapshot REF.npz --suite NAME [--hidden-seed N]

Each test builds the student's class and the reference (transformer_c) with the same
parameters through the course's own constructors (see :mod:`.suites`), runs forward and
backward on seeded inputs (awkward shapes included: T=1, odd sizes, masks), and compares
the output (half the test's points) and every gradient (the other half) with
:func:`transformer_c.testing.compare_results` at float64 tolerances. The report names,
for each failing test, the array, the worst index with the student's and the expected
value, NaN/inf counts, and what the test probes. ``results.json`` is in Gradescope's
format. With ``--snapshot`` the expected results come from an exported float64 .npz
(inputs, parameters, the output gradient fed to backward, expected outputs and gradients)
instead of running transformer_c's implementation.
"""
import importlib.util
import json
import pathlib
import signal
import sys
import threading
import traceback
import warnings

import numpy as np

from ..testing import _forward, compare_results, default_tolerances, run_module
from . import suites as _suites
from .snapshot import export_snapshot, load_snapshot

__all__ = ["grade", "load_student", "reference_results", "GradeResult", "export_snapshot",
           "load_snapshot"]


def load_student(path):
    """Import a student's file (any name) and return its namespace dict."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"student file {path} does not exist")
    name = f"student_submission_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses, pickling and the like look the module up
    sys.path.insert(0, str(path.parent.resolve()))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.pop(0)
    return vars(module)


def _grad_output(index, shape):
    """The seeded gradient of the output fed to both backwards."""
    return np.random.default_rng([index, 12345]).standard_normal(shape)


def reference_results(suite, cases):
    """[(output, grads, grad_output)] of transformer_c's implementation for each case."""
    ns = _suites.reference_namespace(suite)
    results = []
    for i, case in enumerate(cases):
        ref = _suites.build(suite, ns, case)
        out, grads, G = _run(ref, case, i)
        results.append((out, grads, G))
    return results


def _run(module, case, index, G=None):
    """(output, grads, G) of one module on one case (grads {} when not checked)."""
    if not case.grads:
        return np.asarray(module.forward(*case.inputs.values())), {}, None
    if G is None:
        G = _grad_output(index, np.shape(_forward(module, case.inputs)))
    out, grads = run_module(module, case.inputs, G)
    return np.asarray(out), grads, G


def _where(exc, student_file):
    """'at FILE:LINE in FUNC: code' for the deepest frame in the student's file."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if student_file and pathlib.Path(f.filename).resolve() == student_file]
    if not frames:
        return ""
    f = frames[-1]
    return f" at {pathlib.Path(f.filename).name}:{f.lineno} in {f.name}: {f.line}"


class GradeResult:
    """tests: list of dicts (name, score, max_score, output, visibility, passed)."""

    def __init__(self, suite, student, tests):
        self.suite, self.student, self.tests = suite, student, tests
        self.score = sum(t["score"] for t in tests)
        self.max_score = sum(t["max_score"] for t in tests)

    @property
    def passed(self):
        return all(t["passed"] for t in self.tests)

    def report(self):
        """The per-test text report a student can act on."""
        lines = [f"transformer_c grader: suite {self.suite}, {self.student}"]
        for t in self.tests:
            tag = "PASS" if t["passed"] else "FAIL"
            lines.append(f"{tag}  {t['score']:.1f}/{t['max_score']:.1f}  {t['name']}")
            if not t["passed"]:
                lines.extend("      " + ln for ln in t["output"].splitlines())
        n_ok = sum(t["passed"] for t in self.tests)
        lines.append(f"{n_ok}/{len(self.tests)} tests passed; score {self.score:.1f}/"
                     f"{self.max_score:.1f}")
        return "\n".join(lines)

    def results_json(self):
        """Gradescope's results.json content (a dict)."""
        return {"score": self.score, "output": f"{sum(t['passed'] for t in self.tests)}/"
                f"{len(self.tests)} tests passed ({self.suite})",
                "tests": [{k: t[k] for k in ("name", "score", "max_score", "output",
                                             "visibility")} for t in self.tests]}

    def write_results(self, path):
        """Write results.json to ``path``."""
        pathlib.Path(path).write_text(json.dumps(self.results_json(), indent=2))


def grade(student_file, suite, *, seed=0, hidden_seed=None, snapshot=None, timeout=60.0):
    """Grade ``student_file`` on ``suite``; returns a GradeResult.

    seed / hidden_seed: inputs of the visible cases / of the hidden repeat (None: none).
    snapshot: an exported .npz (then suite/seeds come from it and transformer_c's
    implementation is not run). timeout: seconds one test may take (the test fails with
    a message saying so; enforced with SIGALRM, so only in the main thread on POSIX;
    None disables it)."""
    if not pathlib.Path(student_file).is_file():
        raise FileNotFoundError(f"student file {student_file} does not exist")
    if snapshot is not None:
        suite, cases, expected = load_snapshot(snapshot)
    else:
        cases = _suites.make_cases(suite, seed, hidden_seed)
        expected = reference_results(suite, cases)
    path = pathlib.Path(student_file).resolve()
    try:
        ns, load_error = load_student(path), None
    except Exception as exc:  # noqa: BLE001 - any student error is reported, not raised
        ns, load_error = {}, f"importing the file raised {type(exc).__name__}: {exc}" \
            f"{_where(exc, path)}"
    tol = default_tolerances(np.float64)
    tests = [_grade_case(suite, ns, load_error, case, i, exp, path, tol, timeout)
             for i, (case, exp) in enumerate(zip(cases, expected))]
    return GradeResult(suite, path.name, tests)


class _TimedOut(BaseException):
    """Raised by the alarm; a BaseException so that a student's ``except Exception``
    cannot swallow it."""


class _Deadline:
    """Raise _TimedOut in the block after ``seconds`` (SIGALRM; a no-op where unavailable)."""

    def __init__(self, seconds):
        self.on = (seconds is not None and hasattr(signal, "setitimer")
                   and threading.current_thread() is threading.main_thread())
        self.seconds = seconds

    def _fire(self, signum, frame):
        raise _TimedOut()

    def __enter__(self):
        if self.on:
            self.old = signal.signal(signal.SIGALRM, self._fire)
            signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def __exit__(self, *exc):
        if self.on:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.old)


def _grade_case(suite, ns, load_error, case, index, expected, path, tol, timeout):
    ref_out, ref_grads, G = expected
    lines, score = [], 0.0
    try:
        if load_error:
            raise _Reported(load_error)
        if case.component not in ns:
            raise _Reported(f"the file defines no {case.component!r}")
        student = _suites.build(suite, ns, case)
        with warnings.catch_warnings(record=True) as caught, _Deadline(timeout), \
                np.errstate(over="warn", invalid="warn", divide="warn"):
            warnings.simplefilter("always")
            out, grads, _ = _run(student, case, index, G)
        report = compare_results(out, grads, ref_out, ref_grads, **tol)
        out_ok = report["output"].ok
        grads_ok = all(s.ok for k, s in report.items() if k != "output")
        score = case.max_score * ((0.5 * out_ok + 0.5 * grads_ok) if case.grads else out_ok)
        lines = [s.message for s in report.values() if not s.ok]
        if len(lines) > _MAX_LINES:
            lines = lines[:_MAX_LINES] + [f"... and {len(lines) - _MAX_LINES} more gradients "
                                          f"off"]
        if not out_ok:
            why = _suites.diagnose(case, out)
            if why:
                lines.insert(0, f"likely cause: {why}")
        if score < case.max_score:
            lines.extend(_warning_lines(caught, path))
        if not out_ok and not grads_ok and case.grads:
            lines.append("(the gradient mismatches may follow from the output's: fix the "
                         "forward first)")
    except _Reported as r:
        lines = [str(r)]
    except _TimedOut:
        lines = [f"did not finish within {timeout:g} s (an endless loop, or far too slow)"]
    except Exception as exc:  # noqa: BLE001 - a student exception fails this test only
        lines = [f"raised {type(exc).__name__}: {exc}{_where(exc, path)}"]
    passed = score == case.max_score
    if not passed:
        lines.append(f"what this test checks: {case.hint}")
    return {"name": case.name, "score": score, "max_score": case.max_score,
            "output": "\n".join(lines) if lines else "ok", "passed": passed,
            "visibility": "after_published" if case.hidden else "visible"}


_MAX_LINES = 5  # mismatching arrays listed per test


def _warning_lines(caught, path):
    """'warning at FILE:LINE: message' for warnings raised in the student's file (once)."""
    seen = []
    for w in caught:
        if pathlib.Path(w.filename).resolve() == path:
            line = f"warning at {path.name}:{w.lineno}: {w.category.__name__}: {w.message}"
            if line not in seen:
                seen.append(line)
    return seen


class _Reported(Exception):
    pass
