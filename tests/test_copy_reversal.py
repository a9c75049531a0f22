"""Sequence copy and reversal end to end (examples/copy_reversal.py): a small encoder-decoder
trained briefly on copy or reversal learns it clearly, and its KV-cached greedy and beam
decoding reproduce held-out strings. The full runs (copy and reversal, loss < 0.1 within 1000 steps,
>= 95% exact match) are the example script; this one trains for a few hundred steps."""
import importlib.util
import pathlib

import numpy as np
import pytest

import transformer_c as tc
from transformer_c.generate import generate

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "copy_reversal.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("copy_reversal_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("name", ["copy", "reversal"])
def test_encoding(example, name):
    task, tok = example.make_task(name)
    assert tok.vocab_size == 17 and (task.min_len, task.max_len) == (5, 20)
    examples = task.sample(3, np.random.default_rng(0))
    src, lengths, tgt_in, tgt_out = example.encode_examples(examples, tok)
    for i, ex in enumerate(examples):
        s = ex.prompt[:-1]
        want = s if name == "copy" else s[::-1]
        assert ex.answer == want
        assert tok.decode(src[i, :lengths[i] - 1].tolist()) == s
        assert src[i, lengths[i] - 1] == tok.eos_id and np.all(src[i, lengths[i]:] == tok.pad_id)
        n = len(want)
        assert tgt_in[i, 0] == tok.sos_id and tok.decode(tgt_in[i, 1:n + 1].tolist()) == want
        assert tok.decode(tgt_out[i, :n].tolist()) == want and tgt_out[i, n] == tok.eos_id
        assert np.all(tgt_out[i, n + 1:] == tok.pad_id) and np.all(tgt_in[i, n + 1:] == tok.pad_id)


def test_held_out_strings_are_never_trained_on(example):
    task, _ = example.make_task("reversal")
    train = {e.prompt for e in task.sample(2000, np.random.default_rng(0))}
    held = {e.prompt for e in task.sample(300, np.random.default_rng(1), "val")}
    assert not train & held


@pytest.fixture
def one_thread():
    # the training below is many small steps: one thread is fastest on a shared machine
    n = tc.get_num_threads()
    tc.set_num_threads(1)
    yield
    tc.set_num_threads(n)


@pytest.mark.parametrize("name", ["copy", "reversal"])
def test_train_briefly_learns(example, one_thread, name):
    # strings of 5-10 symbols (the full runs use 5-20 and 1000 steps)
    task, tok = example.make_task(name, max_len=10)
    held_out = task.sample(200, np.random.default_rng(1), "val")
    model = example.make_model(tok.vocab_size, block_size=12, seed=0)
    model.eval()
    acc0, _ = example.exact_match(model, held_out, tok)
    model.train()
    losses = example.train(model, task, tok, steps=300, batch_size=64, lr=3e-3, warmup=30)
    model.eval()
    acc, answers = example.exact_match(model, held_out, tok)
    acc_beam, _ = example.exact_match(model, held_out, tok, num_beams=3)
    assert acc0 == 0.0
    assert np.mean(losses[:10]) > 2.0 and np.mean(losses[-20:]) < 0.1
    assert acc >= 0.9, acc
    assert acc_beam >= acc - 0.02, (acc_beam, acc)
    # the example's decoding is transformer_c.generate on the model itself
    sources = [np.append(tok.encode(ex.prompt[:-1]), tok.eos_id) for ex in held_out[:20]]
    out = generate(model, sources, max_new_tokens=11, eos_id=tok.eos_id)
    direct = [tok.decode(t[:-1].tolist()) if t[-1] == tok.eos_id else None for t in out.tokens]
    assert direct == answers[:20]
