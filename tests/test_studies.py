"""transformer_c.studies: the framework (Report, Context, the registry, run, the `study`
command) and every registered study in quick mode, whose tables must have the promised
columns and sane values."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import transformer_c as tc
from transformer_c import studies
from transformer_c.studies import Budget, Context, Report, TrainLog, format_value

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------ Report

def test_report_rows_and_markdown():
    r = Report("demo", "A demo", columns=["name", "ppl", "ok"])
    r.add_row({"name": "a", "ppl": 1.23456, "ok": True})
    r.add_row(["b", None, False])
    r.add_row(name="c", ppl=float("inf"), ok=False)
    assert r.column("name") == ["a", "b", "c"]
    md = r.table_markdown().splitlines()
    assert md[0] == "| name | ppl | ok |"
    assert md[2] == "| a | 1.235 | yes |"
    assert md[3] == "| b | N/A | no |"
    assert md[4] == "| c | inf | no |"
    with pytest.raises(ValueError, match="missing columns \\['ok'\\]"):
        r.add_row({"name": "d", "ppl": 1.0})
    with pytest.raises(ValueError, match="unknown columns \\['zzz'\\]"):
        r.add_row({"name": "d", "ppl": 1.0, "ok": True, "zzz": 1})
    with pytest.raises(ValueError, match="2 values for 3 columns"):
        r.add_row(["d", 1.0])
    with pytest.raises(KeyError, match="no column 'x'"):
        r.column("x")
    with pytest.raises(ValueError, match="distinct"):
        Report("x", "x", columns=["a", "a"])


def test_format_value():
    assert format_value(12345.678) == "1.235e+04"
    assert format_value(0.5) == "0.5"
    assert format_value(1e-5) == "1.000e-05"
    assert format_value(3) == "3"
    assert format_value(float("nan")) == "nan"


def test_report_write(tmp_path):
    pytest.importorskip("matplotlib")
    ctx = Context()
    r = Report("demo", "A demo", command="python -m transformer_c study demo",
               columns=["k", "v"], rows=[{"k": "x", "v": np.float64(2.0)}],
               notes=["A note."], meta={"threads": 1, "wall_time_s": 3.2, "quick": True})
    fig = ctx.figure(4, 3)
    fig.subplots().plot([0, 1], [1, 0])
    r.add_figure(fig, "demo_curve.png")
    with pytest.raises(ValueError, match="filename"):
        r.add_figure(fig, "sub/x.png")
    with pytest.raises(ValueError, match="already added"):
        r.add_figure(fig, "demo_curve.png")
    paths = r.write(tmp_path / "out")
    assert [os.path.basename(p) for p in paths] == ["demo.json", "demo.md", "demo_curve.png"]
    d = json.loads((tmp_path / "out" / "demo.json").read_text())
    assert d["columns"] == ["k", "v"] and d["rows"] == [{"k": "x", "v": 2.0}]
    assert d["figures"] == ["demo_curve.png"] and d["meta"]["threads"] == 1
    md = (tmp_path / "out" / "demo.md").read_text()
    assert md.startswith("# A demo\n")
    assert "`python -m transformer_c study demo`; 1 thread; wall time 3 s; quick mode" in md
    assert "| x | 2 |" in md and "A note." in md and "![demo_curve.png](demo_curve.png)" in md
    png = (tmp_path / "out" / "demo_curve.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000


# ------------------------------------------------------------------ Context

def test_context_validation(tmp_path):
    with pytest.raises(ValueError, match="seed"):
        Context(seed=-1)
    with pytest.raises(ValueError, match="threads"):
        Context(threads=0)
    with pytest.raises(ValueError, match="data_dir"):
        Context(data_dir=tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="data_dir .* has no tinyshakespeare.txt"):
        Context(data_dir=tmp_path).shakespeare()
    assert Context(quick=True).pick(10, 2) == 2 and Context().pick(10, 2) == 10


def test_budget():
    b = Budget(100)
    assert 0 <= b.elapsed < 5 and not b.expired and 95 < b.remaining <= 100
    assert 95 / 4 < b.share(0, 4) <= 25 and 95 / 2 < b.share(2, 4) <= 50
    with pytest.raises(ValueError, match="seconds"):
        Budget(0)
    with pytest.raises(ValueError, match="k < n"):
        b.share(4, 4)


def test_shakespeare_from_a_data_dir(tmp_path):
    text = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 30
    (tmp_path / "tinyshakespeare.txt").write_text(text)
    ctx = Context(data_dir=tmp_path)
    c = ctx.shakespeare()
    n = int(len(text) * 0.9)
    assert c.name == "tinyshakespeare" and c.train_text == text[:n] and c.val_text == text[n:]
    assert c.vocab_size == len(set(text)) and c.tokenizer.decode(c.train_ids) == text[:n]
    assert c.train_ids.dtype == np.int64 and c.val_ids.size == len(text) - n
    assert ctx.meta["data"]["source"] == "tinyshakespeare"
    assert ctx.shakespeare() is c


def test_shakespeare_falls_back_to_the_embedded_corpus(monkeypatch, tmp_path):
    from transformer_c.studies import _context
    monkeypatch.setattr(_context, "default_data_dirs", lambda: [tmp_path])
    c = Context().shakespeare()
    assert c.name == "python-stdlib"
    assert len(c.train_text) + len(c.val_text) == 1_115_394
    assert len(c.train_text) == int(1_115_394 * 0.9)


def test_train_lm_logs_and_records_gradients():
    from transformer_c.nn import GPT, GPTConfig
    from transformer_c.train import TrainConfig
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 11, 3000)
    cfg = GPTConfig(vocab_size=11, block_size=16, n_layer=1, n_head=2, n_embd=16)
    model = GPT.create(cfg, np.random.default_rng(0))
    seen = []
    def on_grads(step, grads):
        assert grads.shape == model.flat_parameters.shape
        seen.append((step, float(np.linalg.norm(grads.astype(np.float64)))))
    log = Context().train_lm(model, ids, ids, block_size=8, log_every=2, on_grads=on_grads,
                             config=TrainConfig(max_iters=6, batch_size=4, warmup_iters=1,
                                                eval_iters=2))
    assert isinstance(log, TrainLog) and log.step == 6 and log.stopped_by == "steps"
    assert log.steps == [2, 4, 6] and len(log.losses) == 3 and not log.diverged
    assert log.times == sorted(log.times) and log.seconds >= log.times[-1]
    assert [s for s, _ in seen] == list(range(6))
    # the recorded pre-clipping norms are the trainer's grad_norm of the same steps
    assert np.allclose([n for _, n in seen][1::2], log.grad_norms, rtol=1e-4)
    loss, _ = log.trainer.eval_loss(log.trainer.val_data)
    assert 1.0 < loss < 4.0         # near log(11) = 2.40 after 6 steps on random ids
    assert math.isclose(log.final_loss(2), np.mean(log.losses[-2:]))


def test_train_lm_stops_on_divergence():
    from transformer_c.nn import GPT, GPTConfig
    from transformer_c.train import TrainConfig
    cfg = GPTConfig(vocab_size=7, block_size=8, n_layer=1, n_head=1, n_embd=8)
    model = GPT.create(cfg, np.random.default_rng(0))
    model.flat_parameters[:] = 1e30  # overflows to inf / nan in the first forward
    log = Context().train_lm(model, np.arange(200) % 7, config=TrainConfig(
        max_iters=5, batch_size=2, warmup_iters=1))
    assert log.diverged and log.stopped_by == "diverged" and log.step == 1
    assert log.final_loss() == math.inf


# ------------------------------------------------------------------ registry, run, CLI

@pytest.fixture
def demo_study():
    @studies.register("_demo", "a test study")
    def _demo(ctx):
        return Report("_demo", "Demo", columns=["quick", "threads"],
                      rows=[{"quick": ctx.quick, "threads": tc.get_num_threads()}])
    yield "_demo"
    del studies.STUDIES["_demo"]


def test_register_and_run(demo_study, tmp_path):
    with pytest.raises(ValueError, match="already registered"):
        studies.register(demo_study, "again")(lambda ctx: None)
    before = tc.get_num_threads()
    r = studies.run(demo_study, tmp_path, quick=True, threads=1, seed=3)
    assert tc.get_num_threads() == before
    assert r.rows == [{"quick": True, "threads": 1}]
    assert r.command == "python -m transformer_c study _demo --quick --threads 1 --seed 3"
    m = r.meta
    assert m["quick"] is True and m["seed"] == 3 and m["threads"] == 1
    assert m["wall_time_s"] >= 0 and len(m["loadavg_start"]) == 3
    assert (tmp_path / "_demo.json").exists() and (tmp_path / "_demo.md").exists()
    with pytest.raises(ValueError, match="unknown study 'nope'"):
        studies.run("nope", tmp_path)


def test_cli_study(demo_study, tmp_path, capsys):
    from transformer_c.cli import main
    assert main(["study", "--list"]) == 0
    assert "_demo" in capsys.readouterr().out
    assert main(["study", "_demo", "--quick", "--threads", "1", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| quick | threads |" in out and "| yes | 1 |" in out
    assert json.loads((tmp_path / "_demo.json").read_text())["meta"]["quick"] is True
    assert main(["study", "nope"]) == 2
    assert "unknown study 'nope'" in capsys.readouterr().err
    assert main(["study"]) == 2
    assert main(["study", "_demo", "--data-dir", str(tmp_path / "missing")]) == 2
    assert "--data-dir" in capsys.readouterr().err


def test_cli_study_list_subprocess():
    env = dict(os.environ, PYTHONPATH=ROOT)
    r = subprocess.run([sys.executable, "-m", "transformer_c", "study", "--list"], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert sorted(line.split()[0] for line in r.stdout.splitlines()) == sorted(studies.STUDIES)
