"""Cross-entropy (fused log-softmax + NLL): NumPy reference, finite differences, PyTorch
parity for every option combination, awkward shapes, large logits and bad input."""
import math

import numpy as np
import pytest

import transformer_c as tc
from conftest import check_grads, fortran, non_contiguous, rng, to_torch, tol

F = tc.functional
REDUCTIONS = ["mean", "sum", "none"]


# ------------------------------------------------------------------ references

def ref_log_softmax(x):
    x = np.asarray(x, dtype=np.float64)
    z = x - x.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def ref_target_dist(x, t, ignore_index, eps):
    """(q (..., V) smoothed target distribution, keep (...) bool mask of rows counted)."""
    V = x.shape[-1]
    if np.issubdtype(np.asarray(t).dtype, np.integer):
        keep = t != ignore_index
        q = np.eye(V)[np.where(keep, t, 0)] * (1 - eps) + eps / V
        return q * keep[..., None], keep
    return np.asarray(t, dtype=np.float64) * (1 - eps) + eps / V, np.ones(x.shape[:-1], bool)


def ref_cross_entropy(x, t, ignore_index=-100, eps=0.0, reduction="mean"):
    q, keep = ref_target_dist(x, t, ignore_index, eps)
    losses = -(q * ref_log_softmax(x)).sum(axis=-1)
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    return losses.sum() / keep.sum() if keep.sum() else math.nan


def ref_cross_entropy_grad(x, t, ignore_index=-100, eps=0.0, reduction="mean", g=1.0):
    q, keep = ref_target_dist(x, t, ignore_index, eps)
    p = np.exp(ref_log_softmax(x))
    if reduction == "none":
        w = np.asarray(g, dtype=np.float64) * keep
    elif reduction == "sum":
        w = g * keep
    else:
        w = (g / keep.sum() if keep.sum() else 0.0) * keep
    return w[..., None] * (p * q.sum(axis=-1, keepdims=True) - q)


def make_case(shape, kind, ignore, dtype, seed=0, scale=3.0):
    """Random logits of `shape`, targets of `kind` ("ids" / "probs"), and ignore_index.
    ignore: None (no row ignored), "default" (-100 rows) or "class" (rows of class 1)."""
    r = rng(seed)
    V = shape[-1]
    x = (scale * r.standard_normal(shape)).astype(dtype)
    if kind == "probs":
        t = r.random(shape)
        t = (t / t.sum(axis=-1, keepdims=True)).astype(dtype)
        return x, t, -100
    t = r.integers(0, V, size=shape[:-1])
    ignore_index = -100
    if ignore == "default" and t.size:
        t.reshape(-1)[::3] = -100
    elif ignore == "class":
        ignore_index = min(1, V - 1)
        t.reshape(-1)[::3] = ignore_index
    return x, t, ignore_index


def torch_cross_entropy(torch, x, t, ignore_index, eps, reduction, g):
    """(loss as numpy, dloss/dx as numpy) from torch autograd, classes on the last axis."""
    tx = to_torch(torch, x)
    tt = torch.from_numpy(np.ascontiguousarray(t))
    if not np.issubdtype(t.dtype, np.integer):
        tt = tt.clone()
    else:
        tt = tt.long()
    xin = tx if x.ndim <= 2 else tx.movedim(-1, 1)
    tin = tt if (x.ndim <= 2 or tt.dtype == torch.long) else tt.movedim(-1, 1)
    loss = torch.nn.functional.cross_entropy(xin, tin, ignore_index=ignore_index,
                                             label_smoothing=eps, reduction=reduction)
    (loss * torch.as_tensor(g, dtype=tx.dtype)).sum().backward()
    return loss.detach().numpy(), tx.grad.numpy()


# ------------------------------------------------------------------ NumPy reference

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(5, 7), (2, 3, 13), (1, 1), (1, 9), (4, 1), (9,), (33, 8)])
@pytest.mark.parametrize("kind,ignore", [("ids", None), ("ids", "default"), ("ids", "class"),
                                         ("probs", None)])
@pytest.mark.parametrize("eps", [0.0, 0.1, 1.0])
def test_matches_numpy_reference(dtype, shape, kind, ignore, eps):
    x, t, ii = make_case(shape, kind, ignore, dtype, seed=len(shape) * 7 + shape[-1])
    for red in REDUCTIONS:
        got = F.cross_entropy(x, t, ignore_index=ii, label_smoothing=eps, reduction=red)
        want = ref_cross_entropy(x, t, ii, eps, red)
        if red == "none":
            assert isinstance(got, np.ndarray) and got.dtype == dtype and got.shape == shape[:-1]
        else:
            assert type(got) is float
        np.testing.assert_allclose(got, want, **tol(dtype))
        g = rng(1).standard_normal(shape[:-1]).astype(dtype) if red == "none" else 0.7
        dx = F.cross_entropy_backward(x, t, ignore_index=ii, label_smoothing=eps, reduction=red,
                                      grad_output=g)
        assert dx.dtype == dtype and dx.shape == shape
        np.testing.assert_allclose(dx, ref_cross_entropy_grad(x, t, ii, eps, red, g), **tol(dtype))


# ------------------------------------------------------------------ PyTorch parity

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(6, 11), (2, 5, 11)])
@pytest.mark.parametrize("kind,ignore", [("ids", None), ("ids", "default"), ("ids", "class"),
                                         ("probs", None)])
@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_matches_torch(torch, dtype, shape, kind, ignore, eps, reduction):
    x, t, ii = make_case(shape, kind, ignore, dtype, seed=3)
    g = rng(4).standard_normal(shape[:-1]).astype(dtype) if reduction == "none" else 0.7
    want_loss, want_dx = torch_cross_entropy(torch, x, t, ii, eps, reduction, g)
    got = F.cross_entropy(x, t, ignore_index=ii, label_smoothing=eps, reduction=reduction)
    np.testing.assert_allclose(got, want_loss, **tol(dtype))
    dx = F.cross_entropy_backward(x, t, ignore_index=ii, label_smoothing=eps,
                                  reduction=reduction, grad_output=g)
    assert dx.dtype == dtype
    np.testing.assert_allclose(dx, want_dx, **tol(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["ids", "probs"])
@pytest.mark.parametrize("shape", [(1, 1), (7, 1), (1, 13), (64, 1000)])
def test_matches_torch_edge_shapes(torch, dtype, kind, shape):
    # V = 1, N = 1, and a case large enough to run in parallel (N * V >= 32768)
    x, t, ii = make_case(shape, kind, "default", dtype, seed=5)
    for eps in (0.0, 0.1):
        want_loss, want_dx = torch_cross_entropy(torch, x, t, ii, eps, "mean", 1.0)
        np.testing.assert_allclose(F.cross_entropy(x, t, ignore_index=ii, label_smoothing=eps),
                                   want_loss, **tol(dtype))
        np.testing.assert_allclose(
            F.cross_entropy_backward(x, t, ignore_index=ii, label_smoothing=eps),
            want_dx, **tol(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["ids", "probs"])
@pytest.mark.parametrize("offset", [0.0, 1e4, -1e4])
def test_large_logits_do_not_overflow(torch, dtype, kind, offset):
    # spread of 1e4 (near one-hot softmax) and a common offset of +-1e4 (exp would overflow
    # without max subtraction); the functional backward recomputes the row statistics, so
    # even float32 keeps full relative accuracy
    x, t, ii = make_case((4, 5, 9), kind, "default", np.float64, seed=6, scale=1.0)
    x = (x * (1e4 if offset == 0 else 1.0) + offset).astype(dtype)
    t = t.astype(dtype) if kind == "probs" else t
    for eps in (0.0, 0.1):
        for red in REDUCTIONS:
            g = np.full(x.shape[:-1], 0.5, dtype) if red == "none" else 0.5
            want_loss, want_dx = torch_cross_entropy(torch, x, t, ii, eps, red, g)
            got = F.cross_entropy(x, t, ignore_index=ii, label_smoothing=eps, reduction=red)
            assert np.all(np.isfinite(got))
            np.testing.assert_allclose(got, want_loss, **tol(dtype))
            dx = F.cross_entropy_backward(x, t, ignore_index=ii, label_smoothing=eps,
                                          reduction=red, grad_output=g)
            assert np.all(np.isfinite(dx))
            np.testing.assert_allclose(dx, want_dx, **tol(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_unnormalised_probability_targets_match_torch(torch, dtype, eps):
    # torch takes the targets as given (the loss is linear in them): rows need not sum to 1
    r = rng(14)
    x = r.standard_normal((2, 4, 6)).astype(dtype)
    t = (2 * r.random((2, 4, 6))).astype(dtype)
    for red in REDUCTIONS:
        g = np.full((2, 4), -0.3, dtype) if red == "none" else -0.3
        want_loss, want_dx = torch_cross_entropy(torch, x, t, -100, eps, red, g)
        np.testing.assert_allclose(F.cross_entropy(x, t, label_smoothing=eps, reduction=red),
                                   want_loss, **tol(dtype))
        np.testing.assert_allclose(
            F.cross_entropy_backward(x, t, label_smoothing=eps, reduction=red, grad_output=g),
            want_dx, **tol(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_one_hot_targets_equal_id_targets(dtype, eps, reduction):
    x, t, _ = make_case((3, 4, 10), "ids", None, dtype, seed=7)
    onehot = np.eye(10, dtype=dtype)[t]
    a = F.cross_entropy(x, t, label_smoothing=eps, reduction=reduction)
    b = F.cross_entropy(x, onehot, label_smoothing=eps, reduction=reduction)
    np.testing.assert_allclose(a, b, **tol(dtype))
    g = np.linspace(-1, 1, 12).reshape(3, 4).astype(dtype) if reduction == "none" else 1.3
    da = F.cross_entropy_backward(x, t, label_smoothing=eps, reduction=reduction, grad_output=g)
    db = F.cross_entropy_backward(x, onehot, label_smoothing=eps, reduction=reduction,
                                  grad_output=g)
    np.testing.assert_allclose(da, db, **tol(dtype))


# ------------------------------------------------------------------ finite differences

@pytest.mark.parametrize("kind,ignore", [("ids", None), ("ids", "default"), ("probs", None)])
@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_backward_finite_differences(kind, ignore, eps, reduction):
    x, t, ii = make_case((2, 3, 5), kind, ignore, np.float64, seed=8, scale=1.0)
    kw = dict(ignore_index=ii, label_smoothing=eps, reduction=reduction)

    def forward():
        return np.asarray(F.cross_entropy(x, t, **kw))

    def grads(G):
        g = G if reduction == "none" else float(G)
        return {"x": F.cross_entropy_backward(x, t, grad_output=g, **kw)}

    check_grads(forward, grads, {"x": x})


# ------------------------------------------------------------------ the C cache path

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["ids", "probs"])
def test_raw_kernels_and_lse_cache(dtype, kind):
    x, t, ii = make_case((40, 17), kind, "default", dtype, seed=9)
    t2 = t if kind == "ids" else t
    losses, lse, total, n_valid = tc._C.cross_entropy_forward(x, t2, ii, 0.1)
    assert losses.dtype == dtype and lse.dtype == dtype and losses.shape == lse.shape == (40,)
    x64 = x.astype(np.float64)
    m = x64.max(axis=1)
    np.testing.assert_allclose(lse, m + np.log(np.exp(x64 - m[:, None]).sum(axis=1)), **tol(dtype))
    np.testing.assert_allclose(losses, ref_cross_entropy(x, t, ii, 0.1, "none"), **tol(dtype))
    np.testing.assert_allclose(total, losses.astype(np.float64).sum(), rtol=1e-12)
    assert n_valid == (np.count_nonzero(t != ii) if kind == "ids" else 40)
    g = rng(2).standard_normal(40).astype(dtype)
    with_cache = tc._C.cross_entropy_backward(x, t2, lse, g, "none", ii, 0.1)
    without = tc._C.cross_entropy_backward(x, t2, None, g, "none", ii, 0.1)
    want = ref_cross_entropy_grad(x, t, ii, 0.1, "none", g)
    np.testing.assert_allclose(with_cache, want, **tol(dtype))
    np.testing.assert_allclose(without, want, **tol(dtype))


def test_ignored_rows_get_exactly_zero_gradient():
    x, t, ii = make_case((30, 6), "ids", "class", np.float64, seed=10)
    dx = F.cross_entropy_backward(x, t, ignore_index=ii, label_smoothing=0.1)
    assert np.all(dx[t == ii] == 0.0)
    assert np.all(np.abs(dx[t != ii]).sum(axis=1) > 0)
    losses = F.cross_entropy(x, t, ignore_index=ii, reduction="none")
    assert np.all(losses[t == ii] == 0.0)


@pytest.mark.parametrize("kind", ["ids", "probs"])
def test_empty_batch_and_all_ignored(torch, kind):
    for shape in [(0, 5), (2, 0, 5)]:
        x, t, ii = make_case(shape, kind, None, np.float32)
        assert math.isnan(F.cross_entropy(x, t))
        assert F.cross_entropy(x, t, reduction="sum") == 0.0
        none = F.cross_entropy(x, t, reduction="none")
        assert none.shape == shape[:-1] and none.dtype == np.float32
        dx = F.cross_entropy_backward(x, t)
        assert dx.shape == shape and dx.dtype == np.float32
        g = np.zeros(shape[:-1], np.float32)
        assert F.cross_entropy_backward(x, t, reduction="none", grad_output=g).shape == shape
    if kind == "ids":
        # every row ignored: mean is nan (0 / 0) exactly as torch, gradient exactly zero
        x = rng(11).standard_normal((3, 4))
        t = np.full(3, -100)
        want_loss, want_dx = torch_cross_entropy(torch, x, t, -100, 0.1, "mean", 1.0)
        assert math.isnan(want_loss) and math.isnan(F.cross_entropy(x, t, label_smoothing=0.1))
        dx = F.cross_entropy_backward(x, t, label_smoothing=0.1)
        assert np.array_equal(dx, np.zeros_like(x)) and np.array_equal(dx, want_dx)


@pytest.mark.parametrize("layout", [non_contiguous, fortran])
@pytest.mark.parametrize("kind", ["ids", "probs"])
def test_any_memory_layout_and_integer_dtype(layout, kind):
    x, t, ii = make_case((6, 9), kind, "default", np.float64, seed=12)
    want = F.cross_entropy(x, t, reduction="none")
    want_dx = F.cross_entropy_backward(x, t, label_smoothing=0.1)
    lt = layout(t) if kind == "probs" else t[::-1].copy()[::-1]  # ids: a negative-stride view
    np.testing.assert_array_equal(F.cross_entropy(layout(x), lt, reduction="none"), want)
    np.testing.assert_array_equal(F.cross_entropy_backward(layout(x), lt, label_smoothing=0.1),
                                  want_dx)
    if kind == "ids":
        for idt in (np.int32, np.int16, np.int8):
            np.testing.assert_array_equal(F.cross_entropy(x, t.astype(idt), reduction="none"),
                                          want)


def test_bitwise_reproducible_and_thread_independent():
    x, t, _ = make_case((200, 300), "ids", "default", np.float32, seed=13)
    a = F.cross_entropy_backward(x, t, label_smoothing=0.1)
    assert np.array_equal(a, F.cross_entropy_backward(x, t, label_smoothing=0.1))
    n = tc.get_num_threads()
    try:
        tc.set_num_threads(1)
        one = (F.cross_entropy(x, t), F.cross_entropy_backward(x, t, label_smoothing=0.1))
    finally:
        tc.set_num_threads(n)
    # each row belongs to one thread and the total is summed in row order: bitwise equal
    assert one[0] == F.cross_entropy(x, t) and np.array_equal(one[1], a)


# ------------------------------------------------------------------ bad input

def test_bad_input_names_the_argument():
    x = np.zeros((3, 4))
    t = np.array([0, 1, 2])
    with pytest.raises(ValueError, match="reduction"):
        F.cross_entropy(x, t, reduction="avg")
    with pytest.raises(ValueError, match="reduction"):
        F.cross_entropy_backward(x, t, reduction="batchmean")
    with pytest.raises(IndexError, match="targets"):
        F.cross_entropy(x, np.array([0, 4, 1]))
    with pytest.raises(IndexError, match="targets"):
        F.cross_entropy_backward(x, np.array([0, -1, 1]))
    with pytest.raises(IndexError, match="targets"):  # -100 is only skipped when it is ignore_index
        F.cross_entropy(x, np.array([0, -100, 1]), ignore_index=2)
    with pytest.raises(ValueError, match="targets"):
        F.cross_entropy(x, np.array([0, 1]))
    with pytest.raises(ValueError, match="targets"):
        F.cross_entropy(x, np.zeros((3, 5)))
    with pytest.raises(ValueError, match="targets"):
        F.cross_entropy_backward(x, np.zeros((4, 3)))
    with pytest.raises(TypeError, match="targets"):
        F.cross_entropy(x, np.zeros((3, 4), np.float32))
    with pytest.raises(TypeError, match="targets"):
        F.cross_entropy(x, np.array([True, False, True]))
    with pytest.raises(TypeError, match="logits"):
        F.cross_entropy(np.zeros((3, 4), np.int64), t)
    with pytest.raises(ValueError, match="logits"):
        F.cross_entropy(np.zeros((3, 0)), t)
    with pytest.raises(ValueError, match="logits"):
        F.cross_entropy(np.float64(1.0), np.int64(0))
    with pytest.raises(ValueError, match="label_smoothing"):
        F.cross_entropy(x, t, label_smoothing=1.5)
    with pytest.raises(ValueError, match="label_smoothing"):
        F.cross_entropy_backward(x, t, label_smoothing=-0.1)
    with pytest.raises(ValueError, match="label_smoothing"):
        F.cross_entropy(x, t, label_smoothing=float("nan"))
    with pytest.raises(ValueError, match="ignore_index"):
        F.cross_entropy(x, np.full((3, 4), 0.25), ignore_index=0)
    with pytest.raises(TypeError, match="ignore_index"):
        F.cross_entropy(x, t, ignore_index=1.5)
    with pytest.raises(ValueError, match="grad_output"):
        F.cross_entropy_backward(x, t, reduction="none", grad_output=np.ones(4))
    with pytest.raises(TypeError, match="grad_output"):
        F.cross_entropy_backward(x, t, reduction="none", grad_output=np.ones(3, np.float32))
    with pytest.raises(TypeError, match="grad_output"):
        F.cross_entropy_backward(x, t, reduction="mean", grad_output=np.ones(3))


def test_raw_binding_raises_instead_of_crashing():
    C = tc._C
    x, t = np.zeros((3, 4)), np.array([0, 1, 2])
    with pytest.raises(TypeError, match="logits"):
        C.cross_entropy_forward("not an array", t, -100, 0.0)
    with pytest.raises(TypeError):
        C.cross_entropy_forward(x, t)
    with pytest.raises(ValueError, match="logits"):
        C.cross_entropy_forward(np.zeros((2, 3, 4)), t, -100, 0.0)
    with pytest.raises(IndexError, match="targets"):
        C.cross_entropy_forward(x, np.array([0, 9, 1]), -100, 0.0)
    with pytest.raises(ValueError, match="targets"):
        C.cross_entropy_forward(x, np.array([0, 1]), -100, 0.0)
    with pytest.raises(TypeError, match="targets"):
        C.cross_entropy_forward(x, None, -100, 0.0)
    with pytest.raises(TypeError, match="targets"):
        C.cross_entropy_forward(x, np.zeros((3, 4), np.float32), -100, 0.0)
    with pytest.raises(ValueError, match="targets"):
        C.cross_entropy_forward(x, np.zeros((3, 5)), -100, 0.0)
    with pytest.raises(ValueError, match="label_smoothing"):
        C.cross_entropy_forward(x, t, -100, float("nan"))
    with pytest.raises(TypeError, match="ignore_index"):
        C.cross_entropy_forward(x, t, "a", 0.0)
    with pytest.raises(ValueError, match="ignore_index"):
        C.cross_entropy_forward(x, t, 2**70, 0.0)
    with pytest.raises(ValueError, match="lse"):
        C.cross_entropy_backward(x, t, np.zeros(5), 1.0, "mean", -100, 0.0)
    with pytest.raises(TypeError, match="lse"):
        C.cross_entropy_backward(x, t, np.zeros(3, np.float32), 1.0, "mean", -100, 0.0)
    with pytest.raises(ValueError, match="reduction"):
        C.cross_entropy_backward(x, t, None, 1.0, "avg", -100, 0.0)
    with pytest.raises(TypeError, match="grad_output"):
        C.cross_entropy_backward(x, t, None, "one", "sum", -100, 0.0)
    with pytest.raises(ValueError, match="grad_output"):
        C.cross_entropy_backward(x, t, None, np.ones(2), "none", -100, 0.0)
