"""transformer_c.train (Trainer), transformer_c.schedules and transformer_c.checkpoint.

References are written here: learning rates as numbers, clipping and AdamW in NumPy (and
torch.nn.utils.clip_grad_norm_), gradient accumulation against one big batch, resume
against an uninterrupted run (bitwise).
"""
import json
import math

import numpy as np
import pytest

from transformer_c import checkpoint as ckpt
from transformer_c import functional as F
from transformer_c.data import CharTokenizer, StreamDataset
from transformer_c.nn import GPT, GPTConfig
from transformer_c.schedules import constant_lr, cosine_lr, inverse_sqrt_lr, make_schedule
from transformer_c.train import TrainConfig, Trainer, parameter_groups

TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n"
        "You are all resolved rather to die than to famish?\n") * 20


def tiny_model(dtype=np.float32, *, dropout=0.0, bias=True, tie=True, vocab=None, seed=0,
               block=16):
    tok = CharTokenizer.train(TEXT)
    cfg = GPTConfig(vocab_size=vocab or tok.vocab_size, block_size=block, n_layer=2, n_head=2,
                    n_embd=16, dropout=dropout, bias=bias, tie_embeddings=tie)
    return GPT.create(cfg, np.random.default_rng(seed), dtype=dtype), tok


def datasets(tok, block=16):
    ids = tok.encode(TEXT)
    n = int(0.9 * ids.size)
    return StreamDataset(ids[:n], block), StreamDataset(ids[n:], block)


def make_trainer(dtype=np.float32, *, out_dir=None, dropout=0.0, bias=True, tie=True, **cfg):
    model, tok = tiny_model(dtype, dropout=dropout, bias=bias, tie=tie)
    train, val = datasets(tok)
    base = dict(max_iters=8, batch_size=4, warmup_iters=2, eval_every=4, eval_iters=2,
                log_every=1, lr=3e-3, min_lr=3e-4)
    base.update(cfg)
    return Trainer(model, train, val, TrainConfig(**base), tokenizer=tok, out_dir=out_dir,
                   quiet=True)


# ------------------------------------------------------------------------------ schedules

def test_cosine_schedule_values():
    kw = dict(lr=1e-3, warmup_iters=100, decay_iters=2000, min_lr=1e-4)
    assert cosine_lr(0, **kw) == pytest.approx(1e-3 / 101, rel=1e-15)
    assert cosine_lr(49, **kw) == pytest.approx(1e-3 * 50 / 101, rel=1e-15)
    assert cosine_lr(99, **kw) == pytest.approx(1e-3 * 100 / 101, rel=1e-15)
    assert cosine_lr(100, **kw) == pytest.approx(1e-3, rel=1e-15)
    assert cosine_lr(1050, **kw) == pytest.approx(5.5e-4, rel=1e-14)   # half way: cos = 0
    # a quarter of the way: 1e-4 + 9e-4 * (1 + cos(pi/4)) / 2
    assert cosine_lr(575, **kw) == pytest.approx(1e-4 + 4.5e-4 * (1 + 0.7071067811865476),
                                                 rel=1e-14)
    assert cosine_lr(2000, **kw) == pytest.approx(1e-4, rel=1e-15)
    assert cosine_lr(2001, **kw) == 1e-4
    assert cosine_lr(10 ** 6, **kw) == 1e-4
    lrs = [cosine_lr(i, **kw) for i in range(100, 2001)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_inverse_sqrt_and_constant_schedule_values():
    kw = dict(lr=2e-3, warmup_iters=100)
    assert inverse_sqrt_lr(0, **kw) == pytest.approx(2e-3 / 101, rel=1e-15)
    assert inverse_sqrt_lr(100, **kw) == pytest.approx(2e-3, rel=1e-15)
    assert inverse_sqrt_lr(400, **kw) == pytest.approx(1e-3, rel=1e-15)
    assert inverse_sqrt_lr(10000, **kw) == pytest.approx(2e-4, rel=1e-15)
    assert inverse_sqrt_lr(10 ** 8, **kw, min_lr=1e-5) == 1e-5
    assert inverse_sqrt_lr(0, lr=1.0, warmup_iters=0) == 1.0
    assert inverse_sqrt_lr(4, lr=1.0, warmup_iters=0) == 0.5
    assert constant_lr(0, lr=0.5, warmup_iters=4) == pytest.approx(0.1, rel=1e-15)
    assert constant_lr(4, lr=0.5, warmup_iters=4) == 0.5
    assert make_schedule("inverse_sqrt", lr=2e-3, warmup_iters=100)(400) == \
        pytest.approx(1e-3, rel=1e-15)
    assert make_schedule("constant", lr=3e-4)(123) == 3e-4


def test_schedule_bad_arguments():
    with pytest.raises(ValueError, match="decay_iters"):
        cosine_lr(0, lr=1e-3, warmup_iters=100, decay_iters=50, min_lr=0)
    with pytest.raises(ValueError, match="it must"):
        cosine_lr(-1, lr=1e-3, warmup_iters=1, decay_iters=5, min_lr=0)
    with pytest.raises(ValueError, match="lr"):
        inverse_sqrt_lr(0, lr=float("nan"), warmup_iters=1)
    with pytest.raises(ValueError, match="schedule"):
        make_schedule("linear", lr=1e-3)
    with pytest.raises(ValueError, match="warmup_iters"):
        TrainConfig(max_iters=10, warmup_iters=10)
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="label_smoothing"):
        TrainConfig(label_smoothing=1.0)


def test_trainer_uses_the_schedule(tmp_path):
    t = make_trainer(max_iters=6, warmup_iters=2, lr=1e-2, min_lr=1e-3, eval_every=0)
    lrs = [t.train_step()["lr"] for _ in range(6)]
    want = [cosine_lr(i, lr=1e-2, warmup_iters=2, decay_iters=6, min_lr=1e-3) for i in range(6)]
    assert lrs == want


# ------------------------------------------------------------------------------ clipping

@pytest.mark.parametrize("clip", [0.5, 1e3, 0.0])
def test_clipping_matches_numpy_and_torch(clip, torch):
    t = make_trainer(grad_clip=clip)
    g = np.random.default_rng(1).standard_normal(t.model.num_parameters).astype(np.float32)
    want_norm = float(np.sqrt(np.sum(g.astype(np.float64) ** 2)))
    coef = clip / (want_norm + 1e-6)
    want = g * np.float32(coef) if 0 < clip and coef < 1 else g.copy()
    got = g.copy()
    norm = t.clip_(got)
    assert norm == pytest.approx(want_norm, rel=1e-12)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)
    if clip > 0:
        tg = torch.from_numpy(g.copy())
        p = torch.zeros_like(tg, requires_grad=True)
        p.grad = tg
        torch.nn.utils.clip_grad_norm_([p], clip)
        np.testing.assert_allclose(got, p.grad.numpy(), rtol=1e-6, atol=1e-9)
        if coef < 1:
            assert np.sqrt(np.sum(got.astype(np.float64) ** 2)) == pytest.approx(clip, rel=1e-5)


# ------------------------------------------------------------------------------ weight decay

def _decay_mask(model):
    """1 for linear weights (and a separate lm_head), 0 for biases, norms and embeddings."""
    linear = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight",
              "mlp.c_proj.weight")
    parts = []
    for name, arr in model.state_dict().items():
        decay = name.endswith(linear) or name == "lm_head.weight"
        parts.append(np.full(arr.size, decay))
    return np.concatenate(parts)


@pytest.mark.parametrize("tie,bias", [(True, True), (False, True), (True, False)])
def test_parameter_groups(tie, bias):
    model, _ = tiny_model(tie=tie, bias=bias)
    runs = parameter_groups(model)
    mask = np.zeros(model.num_parameters, dtype=bool)
    assert runs[0][0] == 0 and runs[-1][1] == model.num_parameters
    for (a, b, d), nxt in zip(runs, runs[1:] + [(model.num_parameters, None, None)]):
        assert b == nxt[0]                          # the runs tile the buffer
        mask[a:b] = d
    np.testing.assert_array_equal(mask, _decay_mask(model))


def numpy_adamw(p, g, m, v, *, t, lr, b1, b2, eps, wd):
    p = p * (1 - lr * wd)
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    p = p - lr / (1 - b1 ** t) * m / (np.sqrt(v) / math.sqrt(1 - b2 ** t) + eps)
    return p, m, v


@pytest.mark.parametrize("tie", [True, False])
def test_weight_decay_groups_against_numpy_adamw(tie):
    t = make_trainer(np.float64, tie=tie, weight_decay=0.3, beta2=0.95, lr=1e-2)
    model = t.model
    mask = _decay_mask(model)
    p = model.flat_parameters.copy()
    m, v = np.zeros_like(p), np.zeros_like(p)
    rng = np.random.default_rng(5)
    for step in range(3):
        g = rng.standard_normal(p.size)
        lr = 1e-2 * (step + 1) / 3
        t.apply_update(g, lr)
        t.step += 1
        p, m, v = numpy_adamw(p, g, m, v, t=step + 1, lr=lr, b1=0.9, b2=0.95, eps=1e-8,
                              wd=0.3 * mask)
        np.testing.assert_allclose(model.flat_parameters, p, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(t.exp_avg_sq, v, rtol=1e-12, atol=0)


def test_no_decay_params_untouched_by_decay():
    """With a zero gradient AdamW only decays: linear weights shrink by exactly
    (1 - lr * wd), biases, norms and embeddings stay bitwise the same."""
    t = make_trainer(np.float64, weight_decay=0.5)
    before = t.model.flat_parameters.copy()
    t.apply_update(np.zeros_like(before), 0.1)
    mask = _decay_mask(t.model)
    after = t.model.flat_parameters
    np.testing.assert_array_equal(after[~mask], before[~mask])
    np.testing.assert_allclose(after[mask], before[mask] * (1 - 0.1 * 0.5), rtol=1e-15)
    assert mask.sum() > 0 and (~mask).sum() > 0


# ------------------------------------------------------------------------------ accumulation

def test_gradient_accumulation_equals_one_big_batch():
    a = make_trainer(np.float64, grad_accum=3, batch_size=2, seed=7)
    b = make_trainer(np.float64, grad_accum=1, batch_size=6, seed=7)
    starts = np.random.default_rng(3).integers(0, len(a.train_data), size=6)
    la, ga = a.compute_grads(starts)
    ga = ga.copy()
    lb, gb = b.compute_grads(starts)
    assert la == pytest.approx(lb, rel=1e-12)
    np.testing.assert_allclose(ga, gb, rtol=1e-9, atol=1e-13)
    # and against the mean of the micro-batches' own gradients (independent of the trainer)
    model = tiny_model(np.float64)[0]
    want = np.zeros(model.num_parameters)
    for j in range(3):
        x, y = a.train_data.batch_at(starts[2 * j:2 * j + 2])
        model.loss_and_grads(x, y)
        want += model.flat_grads / 3
    np.testing.assert_allclose(ga, want, rtol=1e-9, atol=1e-13)
    # whole steps: same parameters after 3 updates (same data RNG: starts drawn at once)
    for _ in range(3):
        a.train_step()
        b.train_step()
    np.testing.assert_allclose(a.model.flat_parameters, b.model.flat_parameters, rtol=1e-9,
                               atol=1e-12)


def test_label_smoothing_loss_and_gradient(torch):
    t = make_trainer(np.float64, label_smoothing=0.1, bias=False)
    starts = np.array([0, 7, 30])
    loss, g = t.compute_grads(np.concatenate([starts, [11]]))
    x, y = t.train_data.batch_at(np.concatenate([starts, [11]]))
    logits = torch.from_numpy(t.model.forward(x)).reshape(-1, t.model.config.vocab_size)
    want = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y).reshape(-1),
                                             label_smoothing=0.1).item()
    assert loss == pytest.approx(want, rel=1e-12)
    # central differences on a few parameters
    p = t.model.flat_parameters
    for i in np.random.default_rng(0).choice(p.size, 6, replace=False):
        old = p[i]
        vals = []
        for d in (1e-6, -1e-6):
            p[i] = old + d
            lg = torch.from_numpy(t.model.forward(x)).reshape(-1, t.model.config.vocab_size)
            vals.append(torch.nn.functional.cross_entropy(
                lg, torch.from_numpy(y).reshape(-1), label_smoothing=0.1).item())
        p[i] = old
        assert g[i] == pytest.approx((vals[0] - vals[1]) / 2e-6, rel=1e-5, abs=1e-9)


# ------------------------------------------------------------------------------ evaluation

def test_evaluate_perplexities():
    t = make_trainer(eval_iters=0)
    t.chars_per_token = {"train": 1.0, "val": 2.0}
    r = t.evaluate()
    ds = t.val_data
    total, n = 0.0, 0
    for x, y in ds.eval_batches(4):                      # every non-overlapping window
        total += t.model.loss(x, y) * y.size
        n += y.size
    assert r["val_loss"] == pytest.approx(total / n, rel=1e-6)
    assert r["val_ppl"] == pytest.approx(math.exp(r["val_loss"]), rel=1e-12)
    assert r["val_ppl_char"] == pytest.approx(math.exp(r["val_loss"] / 2), rel=1e-12)
    assert r["train_ppl_char"] == pytest.approx(r["train_ppl"], rel=1e-12)


# ------------------------------------------------------------------------------ resume

def _train_lines(path):
    out = []
    with open(path) as f:
        lines = f.readlines()
    for line in lines:
        r = json.loads(line)
        if r["type"] == "train":
            out.append((r["step"], r["loss"], r["lr"], r["grad_norm"], r["tokens"]))
        elif r["type"] == "eval":
            out.append((r["step"], r["train_loss"], r["val_loss"], r["best_val_loss"]))
    return out


def test_resume_equals_uninterrupted(tmp_path):
    kw = dict(dropout=0.1, grad_accum=2, max_iters=8, eval_every=3)
    full = make_trainer(out_dir=tmp_path / "full", **kw)
    full.train()
    half = make_trainer(out_dir=tmp_path / "half", **kw)
    half.train(num_steps=4)
    assert half.step == 4
    model, tok = tiny_model(dropout=0.1)
    train, val = datasets(tok)
    rest = Trainer.resume(tmp_path / "half" / "last", train, val, out_dir=tmp_path / "half",
                          quiet=True)
    assert rest.step == 4
    rest.train()
    assert rest.step == full.step == 8
    np.testing.assert_array_equal(rest.model.flat_parameters, full.model.flat_parameters)
    np.testing.assert_array_equal(rest.exp_avg, full.exp_avg)
    np.testing.assert_array_equal(rest.exp_avg_sq, full.exp_avg_sq)
    assert rest.rng.bit_generator.state == full.rng.bit_generator.state
    assert rest.best_val_loss == full.best_val_loss
    assert _train_lines(tmp_path / "half" / "log.jsonl") == \
        _train_lines(tmp_path / "full" / "log.jsonl")
    # the saved best/ and last/ checkpoints of both runs agree too
    a = ckpt.load(tmp_path / "full" / "last")
    b = ckpt.load(tmp_path / "half" / "last")
    np.testing.assert_array_equal(a.model.flat_parameters, b.model.flat_parameters)
    assert a.state["step"] == b.state["step"] == 8


def test_jsonl_log_contents(tmp_path):
    t = make_trainer(out_dir=tmp_path, max_iters=6, log_every=2, eval_every=3)
    results = t.train()
    with open(tmp_path / "log.jsonl") as f:
        recs = [json.loads(line) for line in f]
    assert recs[0]["type"] == "start" and recs[0]["step"] == 0
    assert recs[0]["parameters"] == t.model.num_parameters
    assert recs[0]["train_config"]["max_iters"] == 6
    train = [r for r in recs if r["type"] == "train"]
    evals = [r for r in recs if r["type"] == "eval"]
    assert [r["step"] for r in train] == [2, 4, 6]
    assert [r["step"] for r in evals] == [0, 3, 6]
    for r in train:
        assert set(r) >= {"loss", "lr", "grad_norm", "tokens_per_sec", "tokens", "time"}
        assert r["lr"] == pytest.approx(t.schedule(r["step"] - 1), rel=1e-15)
        assert r["tokens"] == r["step"] * 4 * 16
        assert r["tokens_per_sec"] > 0 and math.isfinite(r["loss"])
    for r, res in zip(evals[1:], results[1:]):
        assert r["val_loss"] == res["val_loss"]
        assert r["val_ppl"] == pytest.approx(math.exp(r["val_loss"]))
    assert evals[-1]["best_val_loss"] == min(r["val_loss"] for r in evals)
    assert (tmp_path / "best" / "checkpoint.json").is_file()
    assert (tmp_path / "last" / "checkpoint.json").is_file()


# ------------------------------------------------------------------------------ checkpoints

def test_checkpoint_roundtrip_and_errors(tmp_path):
    t = make_trainer(out_dir=tmp_path)
    t.train(num_steps=2)
    assert ckpt.load(tmp_path).state["step"] == 0   # best/: step 0's evaluation (no other yet)
    c = ckpt.load(tmp_path, prefer="last")      # a run directory resolves to best/ or last/
    assert c.tokenizer == t.tokenizer and c.state["step"] == 2
    np.testing.assert_array_equal(c.model.flat_parameters, t.model.flat_parameters)
    with pytest.raises(ckpt.CheckpointError, match="not found"):
        ckpt.load(tmp_path / "missing")
    meta = json.loads((tmp_path / "last" / "checkpoint.json").read_text())
    meta["format_version"] = 99
    (tmp_path / "last" / "checkpoint.json").write_text(json.dumps(meta))
    with pytest.raises(ckpt.CheckpointError, match="format 99"):
        ckpt.load(tmp_path / "last")
    (tmp_path / "last" / "checkpoint.json").write_text("{not json")
    with pytest.raises(ckpt.CheckpointError, match="corrupt"):
        ckpt.load(tmp_path / "last")
    (tmp_path / "last" / "checkpoint.json").write_text(json.dumps(dict(meta, format_version=2)))
    (tmp_path / "last" / "model.safetensors").write_bytes(b"\x10\x00garbage")
    with pytest.raises(ckpt.CheckpointError, match="model.safetensors is corrupt"):
        ckpt.load(tmp_path / "last")


def test_trainer_argument_errors():
    model, tok = tiny_model()
    train, val = datasets(tok)
    with pytest.raises(TypeError, match="model"):
        Trainer(object(), train)
    with pytest.raises(TypeError, match="train_data"):
        Trainer(model, np.arange(100))
    with pytest.raises(ValueError, match="block_size"):
        Trainer(model, StreamDataset(tok.encode(TEXT), 32))
    with pytest.raises(TypeError, match="config"):
        Trainer(model, train, val, {"max_iters": 3})


def test_nan_loss_stops_training():
    t = make_trainer(eval_every=0)
    t.model.flat_parameters[:] = np.nan
    with pytest.raises(FloatingPointError, match="learning rate"):
        t.train()


def test_optimizer_update_is_in_c_over_flat_buffer():
    """apply_update's result equals one adamw_update_ per run (no hidden NumPy math)."""
    t = make_trainer(np.float64, weight_decay=0.2)
    g = np.random.default_rng(2).standard_normal(t.model.num_parameters)
    p, m, v = t.model.flat_parameters.copy(), np.zeros_like(g), np.zeros_like(g)
    for a, b, d in parameter_groups(t.model):
        F.adamw_update_(p[a:b], g[a:b], m[a:b], v[a:b], step=1, lr=1e-3, betas=(0.9, 0.99),
                        weight_decay=0.2 if d else 0.0)
    t.apply_update(g, 1e-3)
    np.testing.assert_array_equal(t.model.flat_parameters, p)


def test_progress_bar_and_quiet(capsys):
    model, tok = tiny_model()
    train, val = datasets(tok)
    cfg = TrainConfig(max_iters=3, batch_size=2, warmup_iters=1, eval_every=0, eval_iters=1)
    Trainer(model, train, val, cfg, progress=True).train()
    out, err = capsys.readouterr()
    assert "3/3" in err and "loss=" in err              # the tqdm bar, on stderr
    assert "step 3: train loss" in out
    Trainer(model, train, val, cfg, quiet=True, progress=True).train()
    assert capsys.readouterr() == ("", "")
    Trainer(model, train, val, cfg).train()             # stderr is not a terminal: no bar
    out, err = capsys.readouterr()
    assert err == "" and "step 3: train loss" in out


def test_time_limit_stops_evaluates_and_saves(tmp_path):
    t = make_trainer(out_dir=tmp_path, max_iters=50, eval_every=7)
    results = t.train(time_limit=0.0)          # the limit is checked after each step
    assert t.step == 1
    assert [r["step"] for r in results] == [0, 1]     # the initial and the stopping eval
    assert ckpt.load(tmp_path / "last").state["step"] == 1
