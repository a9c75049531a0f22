"""The Trainer and CLI with optimizer="muon": the step is Muon on the model's hidden
matrices (at muon_lr times the schedule's ratio) plus AdamW on the other runs, checked
against functional calls written here; the momentum buffer is checkpointed and a resumed
run equals the uninterrupted one bitwise; a Muon run cannot resume from an AdamW
checkpoint; bad settings are errors naming the field."""
import numpy as np
import pytest

from test_train import datasets, make_trainer, tiny_model
from transformer_c import checkpoint as ckpt
from transformer_c import functional as F
from transformer_c.train import TrainConfig, Trainer, parameter_groups


def test_muon_step_is_muon_on_matrices_and_adamw_elsewhere():
    t = make_trainer(optimizer="muon", muon_lr=0.05, muon_momentum=0.9, grad_clip=0.0,
                     max_iters=4, warmup_iters=2)
    model = t.model
    p = model.flat_parameters.copy()
    mom, m, v = (np.zeros_like(p) for _ in range(3))
    table = model.muon_matrices()
    inside = np.zeros(p.size, bool)
    for off, r, c in table:
        inside[off:off + r * c] = True
    decay = np.zeros(p.size, bool)
    for a, b, d in parameter_groups(model):
        decay[a:b] = d
    assert len(table) == 8 and inside.any() and (~inside).any()
    for step in range(3):
        lr = t.schedule(t.step)
        rec = {}
        t.train_step(on_grads=lambda s, g: rec.setdefault("g", g.copy()))
        g = rec["g"]
        F.muon_update_(p, g, mom, table, lr=0.05 * lr / 3e-3, momentum=0.9)
        for d in (True, False):
            sel = ~inside & (decay == d)
            q, mm, vv = p[sel].copy(), m[sel].copy(), v[sel].copy()
            F.adamw_update_(q, g[sel], mm, vv, step=step + 1, lr=lr, betas=(0.9, 0.99),
                            weight_decay=0.1 if d else 0.0)
            p[sel], m[sel], v[sel] = q, mm, vv
        np.testing.assert_array_equal(model.flat_parameters, p)
        np.testing.assert_array_equal(t.momentum_buffer, mom)
        np.testing.assert_array_equal(t.exp_avg, m)


def test_muon_learns_and_resume_is_bitwise(tmp_path):
    kw = dict(optimizer="muon", max_iters=8, eval_every=3, grad_accum=2)
    full = make_trainer(out_dir=tmp_path / "full", **kw)
    first = full.evaluate()["val_loss"]
    full.train()
    assert full.evaluate()["val_loss"] < first
    half = make_trainer(out_dir=tmp_path / "half", **kw)
    half.train(num_steps=4)
    saved = ckpt.load(tmp_path / "half" / "last")
    np.testing.assert_array_equal(saved.optimizer["momentum_buffer"], half.momentum_buffer)
    _, tok = tiny_model()
    train, val = datasets(tok)
    rest = Trainer.resume(tmp_path / "half" / "last", train, val, out_dir=tmp_path / "half",
                          quiet=True)
    assert rest.config.optimizer == "muon" and rest.step == 4
    rest.train()
    np.testing.assert_array_equal(rest.model.flat_parameters, full.model.flat_parameters)
    np.testing.assert_array_equal(rest.momentum_buffer, full.momentum_buffer)
    np.testing.assert_array_equal(rest.exp_avg, full.exp_avg)


def test_muon_cannot_resume_an_adamw_checkpoint(tmp_path):
    t = make_trainer(out_dir=tmp_path, max_iters=3, eval_every=3)
    t.train()
    assert t.momentum_buffer is None
    muon = make_trainer(optimizer="muon")
    with pytest.raises(ckpt.CheckpointError, match="momentum_buffer"):
        muon.load_state(ckpt.load(tmp_path / "last"))


@pytest.mark.parametrize("field, value", [("optimizer", "sgd"), ("muon_lr", -1.0),
                                          ("muon_momentum", 1.0),
                                          ("muon_weight_decay", float("nan"))])
def test_bad_muon_settings_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


def test_cli_trains_and_resumes_with_muon(tmp_path, capsys):
    from transformer_c.cli import main

    corpus = tmp_path / "c.txt"
    corpus.write_text("def f(x):\n    return x + 1\n" * 200)
    out = tmp_path / "run"
    args = ["train", "--data", str(corpus), "--preset", "tiny", "--max-iters", "4",
            "--eval-every", "2", "--eval-iters", "1", "--out", str(out), "--optimizer", "muon",
            "--muon-lr", "0.03"]
    assert main(args) in (0, None)
    c = ckpt.load(out / "last")
    assert c.state["train_config"]["optimizer"] == "muon"
    assert c.state["train_config"]["muon_lr"] == 0.03
    assert "momentum_buffer" in c.optimizer
    capsys.readouterr()
    assert main(["train", "--data", str(corpus), "--out", str(out), "--resume",
                 "--max-iters", "6"]) in (0, None)
    assert ckpt.load(out / "last").state["step"] == 6
