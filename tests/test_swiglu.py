"""The gated MLP (SwiGLU with activation="silu", GeGLU with "gelu"): nn.GatedMLP against a
NumPy reference and a PyTorch twin (LLaMA's feed-forward), float64 finite differences, the
block option ``gated`` (parameter layout with mlp.c_gate, validation, old checkpoints, an
encoder), the GPT fast path against its module path. (GPT variants with gated=True against
the whole-model torch twin and the KV-cached decoder are in test_gpt.py / test_decode.py.)"""
import numpy as np
import pytest

import transformer_c as tc
from conftest import check_grads, rng, to_torch, tol
from test_gpt import TOL, batch, close, make_model
from transformer_c import nn
from transformer_c.nn import GPTConfig

F = tc.functional
CFG = dict(vocab_size=11, block_size=9, n_layer=2, n_head=2, n_embd=8, n_inner=12,
           gated=True)


def silu(x):
    return x / (1 + np.exp(-x))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(5, 8), (1, 8), (2, 3, 8), (0, 8)])
def test_gated_mlp_matches_numpy(dtype, shape):
    m = nn.GatedMLP.create(8, 12, 8, rng(0), dtype=dtype)
    x = rng(1).standard_normal(shape).astype(dtype)
    p = m.parameters
    x64 = x.astype(np.float64)

    def lin(z, q):
        return z @ q["weight"].astype(np.float64).T + q["bias"]

    want = lin(silu(lin(x64, p["c_gate"])) * lin(x64, p["c_fc"]), p["c_proj"])
    y = m.forward(x=x)
    assert y.shape == shape and y.dtype == dtype
    np.testing.assert_allclose(y, want, **tol(dtype))


@pytest.mark.parametrize("act", ["silu", "gelu", "relu2"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gated_mlp_matches_torch(torch, act, dtype):
    m = nn.GatedMLP.create(8, 12, 6, rng(2), activation=act, dtype=dtype)
    x = rng(3).standard_normal((4, 5, 8)).astype(dtype)
    G = rng(4).standard_normal((4, 5, 6)).astype(dtype)
    P = tc.tree.tree_map(lambda a: to_torch(torch, a), m.parameters)
    tx = to_torch(torch, x)
    TF = torch.nn.functional
    fn = {"silu": TF.silu, "gelu": TF.gelu, "relu2": lambda t: torch.relu(t) ** 2}[act]

    def lin(z, q):
        return TF.linear(z, q["weight"], q["bias"])

    ty = lin(fn(lin(tx, P["c_gate"])) * lin(tx, P["c_fc"]), P["c_proj"])
    (ty * to_torch(torch, G, grad=False)).sum().backward()
    y = m.forward(x=x)
    grads, dx = m.backward(G, x=x)
    np.testing.assert_allclose(y, ty.detach().numpy(), **tol(dtype))
    np.testing.assert_allclose(dx["x"], tx.grad.numpy(), **tol(dtype))
    for k in ("c_fc", "c_gate", "c_proj"):
        for leaf in ("weight", "bias"):
            np.testing.assert_allclose(grads[k][leaf], P[k][leaf].grad.numpy(), **tol(dtype))


def test_gated_mlp_finite_differences():
    m = nn.GatedMLP.create(5, 7, 5, rng(5))
    x = rng(6).standard_normal((3, 5))
    W = m.parameters["c_gate"]["weight"]  # perturbed in place: the module holds the array
    check_grads(lambda: m.forward(x=x),
                lambda G: {"x": m.backward(G, x=x)[1]["x"],
                           "W": m.backward(G, x=x)[0]["c_gate"]["weight"]},
                {"x": x, "W": W})


def test_parameter_layout_and_count():
    model = make_model(GPTConfig(**CFG))
    mlp = model.parameters["h"][0]["mlp"]
    assert list(mlp) == ["c_fc", "c_gate", "c_proj"]
    assert mlp["c_gate"]["weight"].shape == (12, 8) and mlp["c_gate"]["bias"].shape == (12,)
    plain = make_model(GPTConfig(**dict(CFG, gated=False)))
    assert model.num_parameters - plain.num_parameters == 2 * (12 * 8 + 12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kw", [dict(activation="silu"), dict(activation="gelu", norm="post",
                                                              dropout=0.2, bias=False),
                                dict(activation="silu", position="rope", n_kv_head=1)])
def test_fast_path_equals_the_module_path(dtype, kw):
    model = make_model(GPTConfig(**CFG, **kw), dtype, seed=7)
    idx, tgt = batch(model.config, 3, 9)
    tol_ = TOL[dtype]
    close(model.forward(idx, fast=True), model.forward(idx, fast=False), tol_)
    loss, grads = model.loss_and_grads(idx, tgt, fast=True)
    grads = tc.tree.tree_map(np.copy, grads)
    want_loss, want = model.loss_and_grads(idx, tgt, fast=False)
    close(loss, want_loss, tol_)
    for name, g in tc.tree.flatten(grads).items():
        close(g, tc.tree.flatten(want)[name], tol_, name)


def test_encoder_takes_gated():
    cfg = nn.EncoderConfig(vocab_size=11, block_size=9, n_layer=1, n_head=2, n_embd=8,
                           n_inner=6, gated=True, activation="silu")
    enc = nn.Encoder.create(cfg, rng(8))
    assert enc.parameters["h"][0]["mlp"]["c_gate"]["weight"].shape == (6, 8)
    y = enc.forward(rng(9).integers(0, 11, (2, 5)))
    assert y.shape == (2, 5, 8) and np.isfinite(y).all()


def test_old_checkpoints_load_and_save_roundtrip(tmp_path):
    d = GPTConfig(**dict(CFG, gated=False)).to_dict()
    del d["gated"]  # a config saved before the field existed
    assert GPTConfig.from_dict(d).gated is False
    model = make_model(GPTConfig(**CFG))
    model.save(tmp_path / "m.npz")
    back = nn.GPT.load(tmp_path / "m.npz")
    assert back.config.gated is True
    ids = batch(model.config, 1, 5)[0]
    np.testing.assert_array_equal(back.forward(ids), model.forward(ids))


@pytest.mark.parametrize("bad", [dict(gated=1), dict(gated="yes"),
                                 dict(gated=True, ffn="moe")])
def test_bad_gated_names_it(bad):
    with pytest.raises(ValueError, match="gated"):
        GPTConfig(**dict(CFG, **bad))
    with pytest.raises(ValueError, match="c_gate"):
        nn.GatedMLP(nn.Dense.create(4, 6, rng(0)), nn.Dense.create(4, 5, rng(0)),
                    nn.Dense.create(6, 4, rng(0)))
