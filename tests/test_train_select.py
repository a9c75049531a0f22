"""Model selection by a metric other than the validation loss (TrainConfig.select): which
evaluation out_dir/best holds (scripted evaluations where loss and accuracy disagree, and a
real classifier run), best/ saved at step 0's evaluation, the best value kept across a
resume, and the errors for a bad or inapplicable metric; ``classify train --select``."""
import json

import numpy as np
import pytest

from transformer_c import checkpoint as ckpt
from transformer_c import cli
from transformer_c.data import PairDataset, StreamDataset
from transformer_c.nn import GPT, GPTConfig
from transformer_c.train import SELECTIONS, TrainConfig, Trainer

from test_train_bert import bert, jsonl, make_pairs, tok  # noqa: F401 (fixtures)

# scripted evaluations {step: (val_loss, val_acc)}: the loss is lowest at step 4, the
# accuracy highest at step 8; after step 8 both are worse than their best so far
SCRIPT = {0: (1.10, 0.30), 4: (0.90, 0.50), 8: (1.00, 0.70), 12: (0.95, 0.60),
          16: (1.20, 0.65)}


def scripted(monkeypatch):
    def evaluate(self):
        loss, acc = SCRIPT[self.step]
        return {"step": self.step, "train_loss": loss, "train_acc": acc, "val_loss": loss,
                "val_acc": acc}
    monkeypatch.setattr(Trainer, "evaluate", evaluate)


def data(tok):
    pairs, y = make_pairs(60)
    return PairDataset(tok, pairs[:40], y[:40], 24), PairDataset(tok, pairs[40:], y[40:], 24)


def config(**kw):
    return TrainConfig(**{**dict(max_iters=16, batch_size=4, lr=1e-3, warmup_iters=1,
                                 eval_every=4, eval_iters=0, log_every=4, seed=2), **kw})


def eval_records(run):
    with open(run / "log.jsonl") as f:
        return [json.loads(x) for x in f if '"eval"' in x]


def best_step(run):
    return json.loads((run / "best" / "checkpoint.json").read_text())["step"]


@pytest.mark.parametrize("select, step, value", [("val_loss", 4, 0.90),
                                                 ("val_accuracy", 8, 0.70)])
def test_best_follows_the_selected_metric(tok, tmp_path, monkeypatch, select, step, value):
    scripted(monkeypatch)
    train, val = data(tok)
    t = Trainer(bert(tok), train, val, config(select=select), tokenizer=tok,
                out_dir=tmp_path, quiet=True)
    t.train()
    assert best_step(tmp_path) == step and t.best_selected == value
    assert t.best_val_loss == 0.90       # the lowest loss is tracked (and logged) either way
    recs = eval_records(tmp_path)
    if select == "val_accuracy":
        assert [r["best_val_acc"] for r in recs] == [0.30, 0.50, 0.70, 0.70, 0.70]
    else:
        assert "best_val_acc" not in recs[-1]
    assert [r["best_val_loss"] for r in recs] == [1.10, 0.90, 0.90, 0.90, 0.90]


@pytest.mark.parametrize("select", tuple(SELECTIONS))
def test_resume_keeps_the_best_value(tok, tmp_path, monkeypatch, select):
    """Stopped at step 12 (worse than the best, at 4 or 8), resumed: step 16 is better
    than step 12 but not than the best, so best/ must stay where the full run has it."""
    scripted(monkeypatch)
    train, val = data(tok)
    full = Trainer(bert(tok), train, val, config(select=select), tokenizer=tok,
                   out_dir=tmp_path / "full", quiet=True)
    full.train()
    part = Trainer(bert(tok), train, val, config(select=select), tokenizer=tok,
                   out_dir=tmp_path / "part", quiet=True)
    part.train(num_steps=12)
    saved = ckpt.load(tmp_path / "part", prefer="last").state
    assert saved["best_selected"] == part.best_selected == full.best_selected
    resumed = Trainer.resume(tmp_path / "part", train, val, out_dir=tmp_path / "part",
                             quiet=True)
    assert resumed.config.select == select and resumed.best_selected == part.best_selected
    resumed.train()
    assert best_step(tmp_path / "part") == best_step(tmp_path / "full") == \
        {"val_loss": 4, "val_accuracy": 8}[select]
    a, b = ckpt.load(tmp_path / "full" / "best"), ckpt.load(tmp_path / "part" / "best")
    assert a.model.flat_parameters.tobytes() == b.model.flat_parameters.tobytes()


@pytest.mark.parametrize("select", tuple(SELECTIONS))
def test_best_is_saved_at_step_0_when_never_beaten(tok, tmp_path, select):
    """lr 0: the model never changes, so no evaluation beats step 0's (ties do not count)."""
    train, val = data(tok)
    t = Trainer(bert(tok, dropout=0.0), train, val, config(select=select, lr=0.0, min_lr=0.0),
                tokenizer=tok, out_dir=tmp_path, quiet=True)
    start = t.model.flat_parameters.copy()
    hist = t.train()
    assert len({h["val_loss"] for h in hist}) == 1 and len(hist) == 5
    assert best_step(tmp_path) == 0
    c = ckpt.load(tmp_path / "best")
    np.testing.assert_array_equal(c.model.flat_parameters, start)
    assert c.state["best_selected"] == hist[0][SELECTIONS[select][0]]


def test_real_run_best_is_the_first_highest_accuracy(tok, tmp_path):
    pairs, y = make_pairs(240)
    train = PairDataset(tok, pairs[:200], y[:200], 24)
    val = PairDataset(tok, pairs[200:], y[200:], 24)
    t = Trainer(bert(tok), train, val, config(max_iters=40, lr=3e-3, eval_every=5,
                                              select="val_accuracy"),
                tokenizer=tok, out_dir=tmp_path, quiet=True)
    hist = t.train()
    accs = [h["val_acc"] for h in hist]
    assert best_step(tmp_path) == hist[int(np.argmax(accs))]["step"]
    assert t.best_selected == max(accs)
    # the saved best/ model really scores that accuracy on val
    m = ckpt.load(tmp_path / "best").model
    b = val.batch_at(np.arange(len(val)))
    pred = m.predict(b["src"], b["token_types"], b["src_lengths"])
    assert np.mean(pred == val.labels) == pytest.approx(max(accs), abs=1e-12)


def test_bad_selection_errors(tok):
    with pytest.raises(ValueError, match="select must be one of"):
        TrainConfig(select="accuracy")
    gpt = GPT.create(GPTConfig(vocab_size=tok.vocab_size, block_size=8, n_layer=1, n_head=2,
                               n_embd=16), np.random.default_rng(0))
    stream = StreamDataset(np.arange(100) % tok.vocab_size, 8)
    with pytest.raises(ValueError, match="select='val_accuracy' needs a classifier"):
        Trainer(gpt, stream, stream, config(select="val_accuracy"))
    assert TrainConfig.from_dict(config(select="val_accuracy").to_dict()).select == \
        "val_accuracy"


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


SMALL = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--vocab-size", "300",
         "--max-len", "24", "--batch-size", "8", "--threads", "1", "--labels", "no,yes",
         "--data", "train.jsonl", "--val", "val.jsonl", "--max-iters", "12",
         "--eval-every", "3"]


@pytest.mark.parametrize("flags, select", [([], "val_accuracy"),
                                           (["--select", "val_loss"], "val_loss")])
def test_classify_cli_selects_by_accuracy_by_default(jsonl, capsys, flags, select):
    code, out, err = run(capsys, "classify", "train", *SMALL, *flags, "--out", "run")
    assert code == 0, err
    meta = json.loads((jsonl / "run" / "last" / "checkpoint.json").read_text())
    assert meta["train_config"]["select"] == select
    recs = eval_records(jsonl / "run")
    key, higher, _ = SELECTIONS[select]
    values = [r[key] for r in recs]
    first_best = values.index(max(values) if higher else min(values))
    assert best_step(jsonl / "run") == recs[first_best]["step"]
    assert f"best {select} {values[first_best]:.4f}" in out
    # resume may not switch the metric
    code, _, err = run(capsys, "classify", "train", "--out", "run", "--resume",
                       "--max-iters", "15", "--select",
                       "val_loss" if select == "val_accuracy" else "val_accuracy")
    assert code == 2 and "--select" in err and "contradict" in err
