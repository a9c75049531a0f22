"""examples/recipe_ablation.py: variants compose, the step count follows the CPU budget,
the reported validation loss is the mean over every window of the validation split, the
command line refuses unknown variants. Runs the tiny preset on the embedded corpus."""
import importlib.util
import pathlib

import numpy as np
import pytest

from transformer_c.data import CharTokenizer, default_corpus, split_text

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "recipe_ablation.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("recipe_ablation", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_variants_compose_in_order_over_the_preset(example):
    s = example.settings("muon+modern", "shakespeare-6x384")
    assert s["optimizer"] == "muon" and s["norm_type"] == "rmsnorm" and s["gated"]
    assert s["n_layer"] == 6 and s["lr"] == 1e-3  # the rest is the preset's
    assert example.settings("base", "tiny")["n_embd"] == 64
    with pytest.raises(KeyError, match="nope"):
        example.settings("muon+nope")


def test_run_variant_budget_and_whole_split_loss(example, tmp_path):
    text = default_corpus()[:60_000]
    rec, trainer = example.run_variant("muon+modern", text, 1.0, preset="tiny",
                                       out_dir=str(tmp_path / "v"), min_steps=5)
    assert trainer.config.optimizer == "muon"
    assert trainer.model.config.norm_type == "rmsnorm" and trainer.model.config.gated
    assert rec["steps"] == trainer.step >= 5
    if rec["steps"] > 5:  # budget / step cost, floored (step_cpu is rounded in the record)
        assert abs(rec["steps"] - 1.0 / rec["step_cpu"]) <= 1
    assert trainer.config.max_iters == rec["steps"]
    # the loss over every whole non-overlapping window of the validation split (starts 0,
    # T, 2T, ... while T + 1 tokens remain: evaluate_text leaves out a shorter tail), by hand
    tok = CharTokenizer.train(text)
    ids = tok.encode(split_text(text, 0.1)[1])
    T = trainer.model.config.block_size
    assert ids.size > 2 * T + 1
    trainer.model.eval()
    losses = [trainer.model.loss(ids[None, i:i + T], ids[None, i + 1:i + T + 1])
              for i in range(0, ids.size - T, T)]
    # one window per call here, batches of 16 there: products differ at rounding level
    assert rec["val_whole"] == pytest.approx(np.mean(losses), abs=2e-4)
    assert (tmp_path / "v" / "log.jsonl").is_file()


def test_command_line_refuses_unknown_variants_and_budgets(example, capsys):
    assert example.main(["--list"]) == 0
    assert "muon" in capsys.readouterr().out
    for argv, word in ((["nope"], "variants"), (["base", "--cpu-seconds", "0"], "--cpu-seconds"),
                       (["base", "--data", "/no/such/file"], "--data")):
        with pytest.raises(SystemExit) as e:
            example.main(argv)
        assert e.value.code == 2
        assert word in capsys.readouterr().err
