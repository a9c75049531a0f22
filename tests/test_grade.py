"""transformer_c.grade: the autograder (suites, report, Gradescope results.json, reference
snapshots) and the worked example of three buggy submissions (issue 15, items 5 and 6)."""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from transformer_c import grade as G
from transformer_c.grade import suites as S

DATA = pathlib.Path(__file__).parent / "data" / "grade"
ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("suite", ["mytorch", "mlp", "hw4lib"])
def test_correct_numpy_submissions_get_full_marks(suite):
    r = G.grade(DATA / f"{suite}_student.py", suite, hidden_seed=11)
    assert r.passed and r.score == r.max_score == len(r.tests), r.report()
    assert sum(t["visibility"] == "after_published" for t in r.tests) == len(r.tests) // 2
    assert r.report().endswith(f"{len(r.tests)}/{len(r.tests)} tests passed; score "
                               f"{r.max_score:.1f}/{r.max_score:.1f}")


def test_suites_cover_awkward_shapes():
    names = " | ".join(c.name for s in S.SUITES for c in S.make_cases(s))
    for probe in ("(1, 1, 1, 2)", "T=1", "L=1", "(5, 1)", "large logits", "causal + key padding",
                  "boolean mask", "constant rows", "(3, 1)", "x (3, 5)", "x (1, 3), hidden 2",
                  "DecoderLayer: T=1", "Decoder: T=1"):
        assert probe in names, probe
    a, b = S.make_cases("mlp", 0, 3), S.make_cases("mlp", 0, 3)
    assert len(a) == 2 * len(S.MLP)
    np.testing.assert_array_equal(a[-1].inputs["x"], b[-1].inputs["x"])  # seeded
    assert not np.array_equal(a[0].inputs["x"], a[len(S.MLP)].inputs["x"])  # hidden differ
    with pytest.raises(ValueError, match="unknown suite"):
        S.make_cases("nope")


def test_results_json_is_gradescope_format(tmp_path):
    r = G.grade(DATA / "buggy_softmax.py", "mytorch")
    r.write_results(tmp_path / "results.json")
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["score"] == r.score == len(r.tests) - 1
    for t in data["tests"]:
        assert set(t) == {"name", "score", "max_score", "output", "visibility"}
        assert isinstance(t["output"], str) and t["max_score"] == 1.0


def test_student_errors_are_reported_not_raised(tmp_path):
    bad = tmp_path / "student.py"
    bad.write_text("import numpy as np\n\n\nclass Linear:\n    def __init__(self, i, o):\n"
                   "        pass\n\n    def init_weights(self, W, b):\n        self.W = W\n\n"
                   "    def forward(self, A):\n        return A @ self.W\n")
    r = G.grade(bad, "mytorch")
    lin = [t for t in r.tests if t["name"].startswith("Linear")]
    assert all(t["score"] == 0 for t in lin)
    assert "raised ValueError" in lin[0]["output"]
    assert "at student.py:12 in forward: return A @ self.W" in lin[0]["output"]
    other = next(t for t in r.tests if t["name"].startswith("Softmax"))
    assert "the file defines no 'Softmax'" in other["output"]
    broken = tmp_path / "broken.py"
    broken.write_text("import numpy as np\nraise RuntimeError('oops')\n")
    r = G.grade(broken, "hw4lib")
    assert r.score == 0 and "importing the file raised RuntimeError: oops at broken.py:2" \
        in r.tests[0]["output"]


def test_snapshot_round_trip_grades_without_transformer_c(tmp_path, monkeypatch):
    snap = tmp_path / "ref.npz"
    assert G.export_snapshot(snap, "mytorch", seed=3, hidden_seed=5) == 2 * len(S.MYTORCH)
    with np.load(snap) as z:
        floats = [z[k].dtype for k in z.files if z[k].dtype.kind == "f"]
        assert floats and set(floats) == {np.dtype(np.float64)}
        assert "0/expected/parameters/dLdW" in z.files and "0/grad_output" in z.files
    direct = G.grade(DATA / "buggy_softmax.py", "mytorch", seed=3, hidden_seed=5)

    def refuse(*a, **k):
        raise AssertionError("the reference implementation must not run")
    monkeypatch.setattr(G, "reference_results", refuse)
    via = G.grade(DATA / "buggy_softmax.py", None, snapshot=snap)
    assert [t["name"] for t in via.tests] == [t["name"] for t in direct.tests]
    assert [t["score"] for t in via.tests] == [t["score"] for t in direct.tests]
    assert via.report().splitlines()[1:] == direct.report().splitlines()[1:]


def run_cli(*args, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "transformer_c.grade", *map(str, args)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_cli_grades_exports_and_writes_results(tmp_path):
    p = run_cli(DATA / "hw4lib_student.py", "--suite", "hw4lib", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "6/6 tests passed" in p.stdout and (tmp_path / "results.json").is_file()
    p = run_cli(DATA / "buggy_causal_mask.py", "--suite", "hw4lib", "--results",
                tmp_path / "r.json", cwd=tmp_path)
    assert p.returncode == 1 and json.loads((tmp_path / "r.json").read_text())["score"] == 3
    p = run_cli("--export-snapshot", tmp_path / "s.npz", "--suite", "hw4lib", cwd=tmp_path)
    assert p.returncode == 0 and "wrote 6 cases" in p.stdout
    p = run_cli(DATA / "buggy_causal_mask.py", "--snapshot", tmp_path / "s.npz", cwd=tmp_path)
    assert p.returncode == 1 and "3/6 tests passed" in p.stdout
    p = run_cli(tmp_path / "missing.py", "--suite", "mlp", cwd=tmp_path)
    assert p.returncode == 2 and "does not exist" in p.stderr
    p = run_cli(DATA / "hw4lib_student.py", cwd=tmp_path)
    assert p.returncode == 2 and "--suite is required" in p.stderr


# ---------------------------------------------------- item 6: three buggy submissions
def failing(result):
    return {t["name"]: t["output"] for t in result.tests if not t["passed"]}


def test_buggy_softmax_overflow_is_caught_and_named():
    r = G.grade(DATA / "buggy_softmax.py", "mytorch")
    bad = failing(r)
    assert list(bad) == ["Softmax: dim=-1 of (4, 6), large logits (|z| ~ 1000)"]
    out = next(iter(bad.values()))
    assert out.startswith("likely cause: NaN/inf on large logits: exp overflows; subtract "
                          "the maximum")
    assert "NaN/inf value(s) where the reference is finite" in out
    assert "warning at buggy_softmax.py:10: RuntimeWarning: overflow encountered in exp" in out


def test_buggy_causal_mask_off_by_one_is_caught_and_named():
    r = G.grade(DATA / "buggy_causal_mask.py", "hw4lib", hidden_seed=2)
    bad = failing(r)
    assert bad and all(n.startswith("CausalMask") for n in bad)
    assert len(bad) == 2 * 3  # every CausalMask case, visible and hidden; PadMask passes
    for out in bad.values():
        assert out.startswith("likely cause: the diagonal is masked (True): a token must be "
                              "able to attend to itself")
        assert "first at index [0, 0]: got True, expected False" in out


def test_buggy_layernorm_variance_is_caught_and_named():
    r = G.grade(DATA / "buggy_layernorm.py", "mlp")
    bad = failing(r)
    assert set(bad) == {"LayerNorm: x (4, 7), D=7", "LayerNorm: x (2, 3, 5), batched",
                        "DecoderLayer: T=4 D=6 heads=2 hidden=8, causal",
                        "DecoderLayer: T=1 D=4 heads=1 hidden=3, causal",
                        "Decoder: T=6 V=7 D=4 heads=2 layers=2",
                        "Decoder: T=1 V=3 D=2 heads=1 layers=1"}
    assert "fix those first" in bad["DecoderLayer: T=4 D=6 heads=2 hidden=8, causal"]
    for out in (v for k, v in bad.items() if k.startswith("LayerNorm")):
        assert out.startswith("likely cause: your variance divides by D - 1 (unbiased, "
                              "ddof=1)")
        assert "parameters/weights: MISMATCH" in out and "inputs/x: MISMATCH" in out


def test_other_known_mistakes_are_diagnosed():
    case = S.make_cases("hw4lib")[0]
    T = case.inputs["padded_input"].shape[1]
    assert "transposed" in S.diagnose(case, np.tril(np.ones((T, T), bool), -1))
    assert "polarity" in S.diagnose(case, ~np.triu(np.ones((T, T), bool), 1))
    assert "superdiagonal" in S.diagnose(case, np.triu(np.ones((T, T), bool), 2))
    ln = S.make_cases("mlp")[0]
    x, w, b = ln.inputs["x"], ln.params["weights"], ln.params["bias"]
    assert "all axes" in S.diagnose(ln, w * (x - x.mean()) / np.sqrt(x.var() + 1e-5) + b)
    sm = S.make_cases("mytorch")[4]  # dim=1 of (2, 3, 4)
    z = sm.inputs["Z"]
    e = np.exp(z - z.max(-1, keepdims=True))
    assert "along axis 2, not along dim=1" in S.diagnose(sm, e / e.sum(-1, keepdims=True))
    assert S.diagnose(sm, np.zeros_like(z)) is None


def test_readme_example_report_is_what_the_grader_prints():
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index("```text\ntransformer_c grader: suite mytorch"):]
    block = block[:block.index("\n```", 4)].splitlines()[1:]
    printed = []
    for name, suite in (("buggy_softmax", "mytorch"), ("buggy_causal_mask", "hw4lib"),
                        ("buggy_layernorm", "mlp")):
        printed += G.grade(DATA / f"{name}.py", suite).report().splitlines()
    assert len(block) > 20
    assert [ln for ln in block if ln.strip() and ln not in printed] == []


def test_a_test_that_never_finishes_fails_with_a_timeout(tmp_path):
    slow = tmp_path / "slow.py"
    slow.write_text("import numpy as np\n\n\ndef PadMask(x, lengths):\n    while True:\n"
                    "        pass\n\n\ndef CausalMask(x):\n"
                    "    return np.triu(np.ones((x.shape[1],) * 2, bool), 1)\n")
    r = G.grade(slow, "hw4lib", timeout=0.2)
    bad = failing(r)
    assert len(bad) == 3 and all(n.startswith("PadMask") for n in bad)
    assert all("did not finish within 0.2 s" in o for o in bad.values())
