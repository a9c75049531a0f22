"""Integer addition end to end (the arithmetic study's pipeline,
transformer_c/studies/arithmetic.py, which examples/addition.py calls): a small GPT trained
briefly on "37+85=122" with the loss on the answer tokens learns clearly, and its KV-cached
greedy decoding answers held-out problems. The full run (>= 90% exact match) is the example
script; this one trains for a few hundred steps."""
import importlib.util
import pathlib

import numpy as np
import pytest

from transformer_c.data import ArithmeticTask

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "addition.py"


@pytest.fixture(scope="module")
def addition():
    from transformer_c.studies import arithmetic
    return arithmetic


def test_example_is_a_thin_caller_of_the_study():
    from transformer_c.studies import arithmetic
    spec = importlib.util.spec_from_file_location("addition_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for name in ("encode_examples", "make_model", "train", "answer_perplexity", "exact_match"):
        assert getattr(mod, name) is getattr(arithmetic, name), name


@pytest.fixture(scope="module")
def task():
    t = ArithmeticTask(digits=2, ops="+", seed=0)
    return t, t.tokenizer()


def test_encoding_scores_only_the_answer(addition, task):
    t, tok = task
    ex = t.all_examples("train")[123]
    x, y = addition.encode_examples([ex], tok)
    text = ex.prompt + ex.answer
    assert tok.decode(x[0][x[0] != tok.pad_id].tolist()[1:]) == text
    assert x[0, 0] == tok.sos_id
    scored = y[0] != addition.IGNORE
    # the answer characters and the final <EOS>, predicted from the position before each
    assert tok.decode(y[0][scored][:-1].tolist()) == ex.answer
    assert y[0][scored][-1] == tok.eos_id
    assert np.array_equal(np.flatnonzero(scored),
                          np.arange(len(ex.prompt), len(ex.prompt) + len(ex.answer) + 1))


def test_train_briefly_learns_addition(addition, task):
    t, tok = task
    train_ex = t.all_examples("train")
    val_ex = t.all_examples("val")[::4]          # 246 held-out problems, never trained on
    assert not {e.prompt for e in val_ex} & {e.prompt for e in train_ex}
    x, y = addition.encode_examples(train_ex, tok)
    xv, yv = addition.encode_examples(val_ex, tok)
    model = addition.make_model(tok.vocab_size, n_embd=64, n_head=4, seed=0)
    model.eval()
    ppl0 = addition.answer_perplexity(model, xv, yv)
    acc0, _ = addition.exact_match(model, val_ex, tok)
    model.train()
    losses = addition.train(model, x, y, steps=300, batch_size=64, lr=3e-3, warmup=30)
    model.eval()
    ppl = addition.answer_perplexity(model, xv, yv)
    acc, answers = addition.exact_match(model, val_ex, tok)
    # untrained: about uniform over the 16 symbols and never right
    assert ppl0 > 8 and acc0 < 0.02
    assert np.mean(losses[:5]) > 2.0 and np.mean(losses[-20:]) < 1.2
    assert ppl < 3.0
    assert acc > 0.08, (acc, answers[:10])
    # the answers are numbers of the right size even when wrong
    well_formed = [a for a in answers if a is not None and a.isdigit() and 1 <= len(a) <= 3]
    assert len(well_formed) > 0.9 * len(val_ex)
