"""examples/snli.py at its --quick size (a tiny Bert, 300 pairs per split, a few pretraining
and fine-tuning steps): the splits and labels as the raw files say, the baselines, the
accuracies agreeing with the confusion matrices, the figure written. The full run and its
numbers are in README.md. Skips when ../shared/data/snli is absent."""
import importlib.util
import json
import os
import pathlib

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "snli.py"
DATA = ROOT / ".." / "shared" / "data"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("snli_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def need_data():
    if not (DATA / "snli" / "compact" / "snli_train_0.01.jsonl").is_file():
        pytest.skip("../shared/data/snli is absent")


def raw_labels(name, limit):
    out = []
    with open(DATA / "snli" / "compact" / name) as f:
        for line in f:
            g = json.loads(line)["gold_label"]
            if g != "-":
                out.append(g)
    return out[:limit]


def test_logistic_regression_baseline_fits_a_separable_problem(example):
    r = np.random.default_rng(0)
    X = np.concatenate([r.normal(size=(300, 4)), np.ones((300, 1))], axis=1)
    y = (X @ r.normal(size=(5, 3))).argmax(1)  # linearly separable classes
    W = example.fit_logistic(X, y, 3, 1e-4, iters=500, lr=0.1)
    assert np.mean((X @ W).argmax(1) == y) > 0.95
    vocab = {"dog": 0, "cat": 1}
    np.testing.assert_array_equal(example.bow_features(["A dog, a DOG!", "no"], vocab),
                                  [[1, 0, 1], [0, 0, 1]])


def test_snli_quick(example, tmp_path):
    need_data()
    args = example.parse_args(["--quick", "--pretrain-steps", "6", "--out", str(tmp_path),
                               "--threads", "1", "--data-dir", str(DATA)])
    res = example.run(args)
    assert res["sizes"] == {"train": 300, "dev": 300, "test": 300, "test_hard": 300}
    data = example.load_snli(str(DATA), 300)
    for split, name in example.SPLITS.items():
        want = raw_labels(name, 300)
        assert [example.LABELS[i] for i in data[split][1]] == want
        counts = np.bincount(data[split][1], minlength=3)
        if split != "train":
            majority = example.LABELS.index(res["majority_class"])
            assert res[f"majority_{split}_acc"] == counts[majority] / 300
            cm = np.array(res[f"confusion_{split}"])
            assert cm.sum() == 300 and (cm.sum(axis=1) == counts).all()
            assert res[f"bert_{split}_acc"] == pytest.approx(np.trace(cm) / 300, abs=1e-12)
            assert 0 <= res[f"bow_hypothesis_{split}_acc"] <= 1
    assert res["majority_class"] == example.LABELS[
        int(np.bincount(data["train"][1], minlength=3).argmax())]
    assert res["pretrain_val_mlm_loss"] < res["pretrain_first_val_mlm_loss"]
    assert res["vocab_size"] == 400 and res["parameters"] > 0
    assert json.loads((tmp_path / "results.json").read_text())["bert_test_acc"] == \
        res["bert_test_acc"]
    again = example.evaluate_checkpoint(example.parse_args(
        ["--quick", "--evaluate", str(tmp_path / "finetune"), "--threads", "1",
         "--data-dir", str(DATA), "--figure", str(tmp_path / "again.png")]))
    assert again["step"] == res["best_step"]
    for split in ("dev", "test", "test_hard"):  # the best checkpoint is the model reported
        assert again[f"bert_{split}_acc"] == res[f"bert_{split}_acc"]
    if res["confusion_png"] is not None:
        assert os.path.getsize(res["confusion_png"]) > 5000
        assert os.path.getsize(again["confusion_png"]) > 5000


def test_train_plus_dev_split_holds_out_pool_pairs_and_never_test(example):
    need_data()
    data = example.load_snli(str(DATA), 300, lowercase=True)
    assert all(a == a.lower() and b == b.lower() for a, b in data["test"][0])
    fit, yfit, sel, ysel, name = example.training_split(data, "train+dev", 50, seed=4)
    assert name == "holdout" and len(fit) == 550 and len(sel) == 50
    pool = data["train"][0] + data["dev"][0]
    pool_y = dict(zip(pool, np.concatenate([data["train"][1], data["dev"][1]])))
    assert sorted(fit + sel) == sorted(pool)          # a partition of train + dev
    assert not set(fit) & set(sel)
    assert not (set(fit) | set(sel)) & set(data["test"][0])
    assert [pool_y[p] for p in sel] == list(ysel) and [pool_y[p] for p in fit] == list(yfit)
    again = example.training_split(data, "train+dev", 50, seed=4)
    assert again[2] == sel                            # seeded: --evaluate finds the same
    assert example.training_split(data, "train", 50, 4)[2] == data["dev"][0]
    with pytest.raises(ValueError, match="holdout"):
        example.training_split(data, "train+dev", 600, seed=4)
    corpus = example.pretrain_text(str(DATA), fit, "snli")
    assert corpus.count("\n") + 1 == len(set(a for a, _ in fit)) + len(fit)
    assert not any(b in corpus for _, b in data["test"][0] if len(b) > 40)


def test_no_baselines_skips_them_and_still_reports_the_model(example, tmp_path):
    need_data()
    args = example.parse_args(["--quick", "--no-baselines", "--out", str(tmp_path),
                               "--threads", "1", "--data-dir", str(DATA)])
    res = example.run(args)
    assert not any(k.startswith(("majority", "bow_")) for k in res)
    cm = np.array(res["confusion_test"])
    assert cm.sum() == 300
    assert res["bert_test_acc"] == pytest.approx(np.trace(cm) / 300, abs=1e-12)
