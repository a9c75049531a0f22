"""Trainer and checkpoints with a Bert: classification (PairDataset, accuracy) and masked-LM
(MaskedLMDataset) training, a resumed run equal bitwise to an uninterrupted one, checkpoint
loading of a Bert, weight-decay groups, mismatched model / data errors; and the
``classify train|eval`` command line on a temporary JSONL file."""
import json
import os
import random
import signal

import numpy as np
import pytest

from transformer_c import checkpoint as ckpt
from transformer_c import cli
from transformer_c.data import (BERT_SPECIALS, BPETokenizer, MaskedLMDataset, PairDataset,
                                StreamDataset)
from transformer_c.nn import GPT, Bert, BertConfig, GPTConfig
from transformer_c.train import TrainConfig, Trainer, parameter_groups

WORDS = "red blue green dog cat man woman runs sleeps plays big small the a".split()


def make_pairs(n, seed=0):
    """A learnable toy task: label 1 iff text_b repeats text_a's first word."""
    r = random.Random(seed)
    pairs, labels = [], []
    for _ in range(n):
        a = " ".join(r.choice(WORDS) for _ in range(r.randint(2, 6)))
        y = r.randint(0, 1)
        b = (a.split()[0] if y else r.choice(["sky", "tree", "road"])) + " " + r.choice(WORDS)
        pairs.append((a, b))
        labels.append(y)
    return pairs, np.array(labels)


@pytest.fixture(scope="module")
def tok():
    pairs, _ = make_pairs(200)
    return BPETokenizer.train("\n".join(a + "\n" + b for a, b in pairs), 300,
                              specials=BERT_SPECIALS)


def bert(tok, **kw):
    cfg = BertConfig(**{**dict(vocab_size=tok.vocab_size, block_size=24, n_layer=1, n_head=2,
                               n_embd=16, num_labels=2, dropout=0.1), **kw})
    return Bert.create(cfg, np.random.default_rng(0))


def test_classifier_learns_and_resume_is_bitwise(tok, tmp_path):
    pairs, y = make_pairs(240)
    train, val = PairDataset(tok, pairs[:200], y[:200], 24), PairDataset(tok, pairs[200:],
                                                                         y[200:], 24)
    cfg = TrainConfig(max_iters=8, batch_size=8, lr=3e-3, warmup_iters=1, eval_every=4,
                      eval_iters=0, log_every=2, seed=3)
    full = Trainer(bert(tok), train, val, cfg, tokenizer=tok, out_dir=tmp_path / "a",
                   quiet=True)
    hist = full.train()
    assert [h["step"] for h in hist] == [0, 4, 8]
    assert {"train_acc", "val_acc", "val_loss"} <= set(hist[-1]) and "val_ppl" not in hist[-1]
    assert 0 <= hist[-1]["val_acc"] <= 1
    # the same run stopped after 4 steps and resumed from its checkpoint
    part = Trainer(bert(tok), train, val, cfg, tokenizer=tok, out_dir=tmp_path / "b",
                   quiet=True)
    part.train(num_steps=4)
    c = ckpt.load(tmp_path / "b", prefer="last")
    assert isinstance(c.model, Bert) and c.state["step"] == 4
    assert c.tokenizer.special_id("<MASK>") == 6
    resumed = Trainer.resume(tmp_path / "b", train, val, out_dir=tmp_path / "b", quiet=True)
    resumed.train()
    np.testing.assert_array_equal(resumed.model.flat_parameters, full.model.flat_parameters)
    with open(tmp_path / "a" / "log.jsonl") as f:
        evals = [json.loads(x) for x in f if '"eval"' in x]
    assert evals[-1]["val_acc"] == hist[-1]["val_acc"]
    # longer training learns the toy task
    cfg = TrainConfig(max_iters=150, batch_size=16, lr=3e-3, warmup_iters=10, eval_every=0,
                      eval_iters=0, seed=1)
    t = Trainer(bert(tok, dropout=0.0, pooling="mean"), train, val, cfg, quiet=True)
    r = t.train()[-1]
    assert r["train_acc"] > 0.9 and r["val_acc"] > 0.8, r


def test_masked_lm_training_lowers_the_loss(tok):
    pairs, _ = make_pairs(400, seed=1)
    ids = np.asarray(tok.encode(" ".join(a + " " + b for a, b in pairs)))
    train = MaskedLMDataset(ids[:-300], 16, tok, seed=0)
    val = MaskedLMDataset(ids[-300:], 16, tok, seed=1)
    cfg = TrainConfig(max_iters=60, batch_size=16, lr=3e-3, warmup_iters=5, eval_every=60,
                      eval_iters=4, seed=0)
    t = Trainer(bert(tok, dropout=0.0), train, val, cfg, quiet=True)
    hist = t.train()
    assert hist[-1]["val_loss"] < hist[0]["val_loss"] - 1.0, hist


def test_parameter_groups_and_mismatches(tok):
    m = bert(tok)
    names = {}
    flat = m.flat_parameters
    base = flat.__array_interface__["data"][0]
    for name, arr in m.state_dict().items():
        names[(arr.__array_interface__["data"][0] - base) // flat.itemsize] = name
    decayed = {names[s] for a, b, d in parameter_groups(m) if d for s in names if a <= s < b}
    assert "classifier.weight" in decayed and "mlm.c_fc.weight" in decayed
    assert not decayed & {"wte.weight", "wpe.weight", "wtt.weight", "classifier.bias"}
    pairs, y = make_pairs(20)
    ds = PairDataset(tok, pairs, y, 24)
    gpt = GPT.create(GPTConfig(vocab_size=tok.vocab_size, block_size=8, n_layer=1, n_head=1,
                               n_embd=8), np.random.default_rng(0))
    with pytest.raises(TypeError, match="model"):
        Trainer(gpt, ds)
    with pytest.raises(TypeError, match="model"):
        Trainer(m, StreamDataset(np.arange(50) % 7, 8))
    with pytest.raises(ValueError, match="val_data"):
        Trainer(m, ds, MaskedLMDataset(np.arange(50) % 7 + 7, 8, tok))
    with pytest.raises(ValueError, match="label_smoothing"):
        Trainer(m, ds, config=TrainConfig(label_smoothing=0.1, max_iters=1, warmup_iters=0),
                quiet=True).train_step()


# ------------------------------------------------------------------ the command line

@pytest.fixture
def jsonl(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pairs, y = make_pairs(150, seed=2)
    names = ["no", "yes"]
    for name, rows in (("train.jsonl", range(120)), ("val.jsonl", range(120, 150))):
        with open(name, "w") as f:
            for i in rows:
                f.write(json.dumps({"text_a": pairs[i][0], "text_b": pairs[i][1],
                                    "label": names[y[i]]}) + "\n")
            f.write(json.dumps({"text_a": "x", "text_b": "y", "label": "-"}) + "\n")
    return tmp_path


SMALL = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--vocab-size", "300",
         "--max-len", "24", "--batch-size", "8", "--threads", "1"]


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_classify_train_eval_resume(jsonl, capsys, monkeypatch):
    code, out, err = run(capsys, "classify", "train", "--data", "train.jsonl", "--val",
                         "val.jsonl", "--labels", "no,yes", *SMALL, "--max-iters", "6",
                         "--eval-every", "3", "--out", "run")
    assert code == 0, err
    assert "Training a Bert classifier (1 layers" in out and "classes no, yes" in out
    assert "step 6: train loss" in out and "accuracy" in out
    for sub in ("last", "best"):
        assert set(os.listdir(jsonl / "run" / sub)) == {
            "checkpoint.json", "model.safetensors", "optimizer.safetensors", "tokenizer.json"}
    meta = json.loads((jsonl / "run" / "last" / "checkpoint.json").read_text())
    assert meta["step"] == 6 and meta["data"]["labels"] == ["no", "yes"]
    assert meta["data"]["train"]["rows"] == 120  # the "-" row is skipped
    with open(jsonl / "run" / "log.jsonl") as f:
        recs = [json.loads(line) for line in f]
    assert [r["step"] for r in recs if r["type"] == "eval"] == [0, 3, 6]
    assert all("val_acc" in r for r in recs if r["type"] == "eval")

    code, out, err = run(capsys, "classify", "eval", "--ckpt", "run/last", "--data",
                         "val.jsonl")
    assert code == 0, err
    res = json.loads(out.strip().splitlines()[-1])
    assert res["n"] == 30 and res["labels"] == ["no", "yes"]
    assert np.sum(res["confusion"]) == 30
    assert abs(res["accuracy"] - np.trace(res["confusion"]) / 30) < 1e-12

    # the same run interrupted by SIGINT after step 3, then resumed: bitwise the same
    code, _, err = run(capsys, "classify", "train", "--data", "train.jsonl", "--val",
                       "val.jsonl", "--labels", "no,yes", *SMALL, "--max-iters", "6",
                       "--eval-every", "3", "--out", "run2")
    assert code == 0, err
    with monkeypatch.context() as mp:
        step = Trainer.train_step

        def interrupted(self):
            r = step(self)
            if self.step == 3:
                os.kill(os.getpid(), signal.SIGINT)
            return r
        mp.setattr(Trainer, "train_step", interrupted)
        code, _, err = run(capsys, "classify", "train", "--data", "train.jsonl", "--val",
                           "val.jsonl", "--labels", "no,yes", *SMALL, "--max-iters", "6",
                           "--eval-every", "3", "--out", "run3")
    assert code == 130 and "SIGINT at step 3: saved a resumable checkpoint" in err
    assert json.loads((jsonl / "run3" / "last" / "checkpoint.json").read_text())["step"] == 3
    code, out, err = run(capsys, "classify", "train", "--out", "run3", "--resume")
    assert code == 0, err
    assert "resuming" in out
    for sub in ("last", "best"):
        a = ckpt.load(jsonl / "run2" / sub)
        b = ckpt.load(jsonl / "run3" / sub)
        assert a.state["step"] == b.state["step"]
        assert a.model.flat_parameters.tobytes() == b.model.flat_parameters.tobytes()
        assert a.optimizer["exp_avg_sq"].tobytes() == b.optimizer["exp_avg_sq"].tobytes()


@pytest.mark.parametrize("argv, message", [
    (["classify", "train", "--out", "r"], "needs --data"),
    (["classify", "train", "--data", "missing.jsonl"], "no such file"),
    (["classify", "train", "--data", "train.jsonl", "--fields", "a,b"], "--fields"),
    (["classify", "train", "--data", "train.jsonl", "--labels", "yes"], "--labels"),
    (["classify", "train", "--data", "train.jsonl", "--labels", "cat,dog"], "no usable rows"),
    (["classify", "train", "--data", "bad.jsonl"], "bad.jsonl:2"),
    (["classify", "eval", "--ckpt", "nowhere", "--data", "val.jsonl"], "not found"),
])
def test_classify_user_errors(jsonl, capsys, argv, message):
    (jsonl / "bad.jsonl").write_text('{"text_a": "a", "label": "x"}\n[1, 2]\n')
    code, out, err = run(capsys, *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_classify_resume_contradictions_and_reuse(jsonl, capsys):
    code, _, err = run(capsys, "classify", "train", "--data", "train.jsonl", *SMALL,
                       "--max-iters", "2", "--out", "run")
    assert code == 0, err
    code, _, err = run(capsys, "classify", "train", "--data", "train.jsonl", *SMALL,
                       "--max-iters", "2", "--out", "run")
    assert code == 2 and "already holds a run" in err
    code, _, err = run(capsys, "classify", "train", "--out", "run", "--resume", "--n-embd",
                       "32", "--max-iters", "4")
    assert code == 2 and "--n-embd 32" in err
    code, _, err = run(capsys, "classify", "train", "--out", "run", "--resume")
    assert code == 2 and "complete" in err


def test_classify_init_from_a_bert_checkpoint(jsonl, capsys):
    code, _, err = run(capsys, "classify", "train", "--data", "train.jsonl", *SMALL,
                       "--max-iters", "2", "--out", "base")
    assert code == 0, err
    base = ckpt.load(jsonl / "base", prefer="last")
    code, out, err = run(capsys, "classify", "train", "--data", "train.jsonl", "--init-from",
                         "base", "--max-iters", "2", "--batch-size", "8", "--out", "tuned",
                         "--threads", "1")
    assert code == 0, err
    tuned = ckpt.load(jsonl / "tuned", prefer="last")
    assert tuned.model.config == base.model.config and tuned.state["step"] == 2
    assert tuned.tokenizer.vocab_size == base.tokenizer.vocab_size
    code, _, err = run(capsys, "classify", "train", "--data", "train.jsonl", "--init-from",
                       "base", "--resume", "--out", "tuned")
    assert code == 2 and "--init-from" in err
