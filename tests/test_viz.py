"""transformer_c.viz: the computations against hand-worked answers, every figure rendered
headless (non-empty, titled, labelled, colour bars where promised), and the one error when
matplotlib is missing."""
import io
import json
import sys

import numpy as np
import pytest

from transformer_c import viz
from transformer_c.functional import sinusoidal_positions, softmax

RNG = np.random.default_rng(7)


def causal_attention(L, H, T, sharpness=2.0):
    """(L, H, T, T) causal softmax probabilities (computed by the C softmax)."""
    s = RNG.normal(size=(L, H, T, T)) * sharpness
    return softmax(np.where(np.tril(np.ones((T, T))) > 0, s, -np.inf), axis=-1)


# ---------------------------------------------------------------- computations (NumPy only)

def test_attention_rollout_by_hand():
    # layer 0: heads [[1,0],[1,0]] and [[1,0],[0,1]] -> mean [[1,0],[.5,.5]]
    # A0 = .5 I + .5 mean = [[1,0],[.25,.75]]; layer 1 the same heads swapped -> A1 = A0
    # R = A1 A0 = [[1,0],[.25 + .75*.25, .75*.75]] = [[1,0],[.4375,.5625]]
    h0, h1 = np.array([[1.0, 0], [1, 0]]), np.eye(2)
    att = np.array([[h0, h1], [h1, h0]])
    np.testing.assert_allclose(viz.attention_rollout(att), [[1, 0], [0.4375, 0.5625]])
    np.testing.assert_allclose(viz.attention_rollout(list(att)), [[1, 0], [0.4375, 0.5625]])
    # residual 0: the product of the head means; residual 1: the identity
    m = att.mean(axis=1)
    np.testing.assert_allclose(viz.attention_rollout(att, residual=0.0), m[1] @ m[0])
    np.testing.assert_allclose(viz.attention_rollout(att, residual=1.0), np.eye(2))
    # rows of a random causal stack stay stochastic and causal
    r = viz.attention_rollout(causal_attention(3, 4, 9))
    np.testing.assert_allclose(r.sum(axis=1), 1.0, rtol=1e-12)
    assert np.all(np.triu(r, 1) == 0)
    # a zero (padding) row renormalises to the residual alone
    z = np.zeros((1, 1, 2, 2))
    z[0, 0, 0] = [1, 0]
    np.testing.assert_allclose(viz.attention_rollout(z), [[1, 0], [0, 1]])
    with pytest.raises(ValueError, match="attention"):
        viz.attention_rollout(np.ones((2, 3, 4)))
    with pytest.raises(ValueError, match="residual"):
        viz.attention_rollout(att, residual=1.5)


def known_heads(T=6):
    """(1, 4, T, T): previous-token, first-token, self and uniform causal heads."""
    prev, first, self_ = np.zeros((T, T)), np.zeros((T, T)), np.eye(T)
    prev[0, 0] = 1
    prev[np.arange(1, T), np.arange(T - 1)] = 1
    first[:, 0] = 1
    uniform = np.tril(np.ones((T, T)))
    uniform /= uniform.sum(axis=1, keepdims=True)
    return np.stack([prev, first, self_, uniform])[None]


def test_head_specialisation_on_known_patterns():
    T = 6
    tokens = np.array([5, 1, 9, 0, 1, 2])                     # key 3 is the delimiter 0
    t = viz.head_specialisation(known_heads(T), tokens=tokens, delimiters={0}, long_range=2)
    assert list(t) == ["previous", "first", "self", "delimiter", "long_range"]
    assert all(v.shape == (1, 4) for v in t.values())
    # uniform causal head: row p spreads 1/(p+1) over keys 0..p
    rows = 1.0 / np.arange(1, T + 1)
    uni_long = np.mean([max(p - 1, 0) / (p + 1) for p in range(T)])
    uni_delim = np.mean([1 / (p + 1) if p >= 3 else 0 for p in range(T)])
    expect = {  # columns: previous-token, first-token, self, uniform heads
        "previous": [1, 1 / 5, 0, rows[1:].mean()],
        "first": [2 / 6, 1, 1 / 6, rows.mean()],
        "self": [1 / 6, 1 / 6, 1, rows.mean()],
        "delimiter": [1 / 6, 0, 1 / 6, uni_delim],
        "long_range": [0, 4 / 6, 0, uni_long],
    }
    for k, v in expect.items():
        np.testing.assert_allclose(t[k][0], v, err_msg=k, atol=1e-15)
    # a predicate gives the same delimiters; (H, T, S) is one layer; no delimiters: no column
    t2 = viz.head_specialisation(known_heads(T)[0], tokens, lambda i: i == 0, long_range=2)
    np.testing.assert_allclose(t2["delimiter"], t["delimiter"])
    assert "delimiter" not in viz.head_specialisation(known_heads(T))
    # queries are the last T of S keys (decoding with a cache): key p = t + S - T is "self"
    shifted = np.zeros((1, 2, 4))
    shifted[0, [0, 1], [2, 3]] = 1
    t3 = viz.head_specialisation(shifted, long_range=3)
    assert t3["self"][0, 0] == 1 and t3["previous"][0, 0] == 0 and t3["first"][0, 0] == 0
    with pytest.raises(ValueError, match="tokens"):
        viz.head_specialisation(known_heads(T), delimiters={0})
    with pytest.raises(ValueError, match="long_range"):
        viz.head_specialisation(known_heads(T), long_range=0)


def test_qk_spectra_known_ranks():
    H, D, dk = 3, 8, 3
    wq, wk = RNG.normal(size=(H, D, dk)), RNG.normal(size=(H, D, dk))
    wk[1] = np.outer(RNG.normal(size=D), RNG.normal(size=dk))   # rank 1
    wq[2] = 0                                                   # rank 0
    spectra, ranks = viz.qk_spectra(wq, wk)
    assert ranks.tolist() == [3, 1, 0] and spectra.shape == (H, D)
    for h in range(H):
        np.testing.assert_allclose(spectra[h], np.linalg.svd(wq[h] @ wk[h].T, compute_uv=False),
                                   atol=1e-12)
    # the (D, H*dk) layout (heads side by side in the columns) is the same
    flat = [w.transpose(1, 0, 2).reshape(D, H * dk) for w in (wq, wk)]
    s2, r2 = viz.qk_spectra(*flat, n_heads=H)
    np.testing.assert_array_equal(r2, ranks)
    np.testing.assert_allclose(s2, spectra)
    # activations: q (H, T, dk), k (H, S, dk) -> (T, S) per head, rank <= dk
    q, k = RNG.normal(size=(2, 5, 2)), RNG.normal(size=(2, 7, 2))
    s3, r3 = viz.qk_spectra(q=q, k=k)
    assert s3.shape == (2, 5) and r3.tolist() == [2, 2]
    # a loose tolerance drops small singular values
    w = np.diag([1.0, 1e-3, 1e-9])[None]
    assert viz.qk_spectra(w, np.eye(3)[None])[1].tolist() == [3]
    assert viz.qk_spectra(w, np.eye(3)[None], rtol=1e-6)[1].tolist() == [2]
    with pytest.raises(ValueError, match="either"):
        viz.qk_spectra(wq, q=q, k=k)
    with pytest.raises(ValueError, match="n_heads"):
        viz.qk_spectra(*flat, n_heads=5)


def test_effective_rank_known_spectra():
    assert viz.effective_rank(np.ones(5)) == pytest.approx(5.0, rel=1e-12)
    assert viz.effective_rank([3.0, 0.0, 0.0]) == pytest.approx(1.0, rel=1e-12)
    # two equal values and one zero: exp(log 2) = 2; unequal: exp of the entropy by hand
    assert viz.effective_rank([2.0, 2.0, 0.0]) == pytest.approx(2.0, rel=1e-12)
    p = np.array([3.0, 1.0]) / 4
    assert viz.effective_rank([3.0, 1.0]) == pytest.approx(np.exp(-(p * np.log(p)).sum()))
    batch = viz.effective_rank(np.array([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]))
    np.testing.assert_allclose(batch, [3.0, 1.0], rtol=1e-12)
    assert np.isnan(viz.effective_rank(np.zeros(3)))
    with pytest.raises(ValueError, match="singular_values must be >= 0"):
        viz.effective_rank([1.0, -1.0])
    with pytest.raises(ValueError, match="singular_values"):
        viz.effective_rank(np.ones((2, 0)))
    with pytest.raises(ValueError, match="singular_values contains non-finite"):
        viz.effective_rank([1.0, np.inf])


def test_pe_dot_products_depend_only_on_distance():
    D, K = 16, 20
    pe = sinusoidal_positions(80, D)
    dots = viz.pe_dot_products(pe, [0, 7, 40], K)
    w = 10000.0 ** (-np.arange(0, D, 2) / D)
    by_hand = np.cos(np.arange(K + 1)[:, None] * w[None]).sum(axis=1)
    for row in dots:
        np.testing.assert_allclose(row, by_hand, atol=1e-12)
    with pytest.raises(ValueError, match="rows"):
        viz.pe_dot_products(pe, [70], 20)


def test_embedding_pca_recovers_known_directions():
    u, v = np.eye(5)[1], (np.eye(5)[2] + np.eye(5)[3]) / np.sqrt(2)
    a, b = np.array([-3.0, -1, 1, 3]), np.array([1.0, -1, -1, 1])
    E = 2.0 + a[:, None] * u + b[:, None] * v
    coords, explained = viz.embedding_pca(E)
    np.testing.assert_allclose(coords[:, 0], a, atol=1e-12)     # sign: max |coord| > 0
    np.testing.assert_allclose(coords[:, 1], b, atol=1e-12)
    np.testing.assert_allclose(explained, [20 / 24, 4 / 24])
    with pytest.raises(ValueError, match="n_components"):
        viz.embedding_pca(E, 6)


def test_singular_values_over_training():
    hist = [(20, np.diag([1.0, 5.0])), (10, np.array([3.0, 4.0, 0.5])), (30, np.eye(3) * 2)]
    steps, sv = viz.singular_values_over_training(hist)
    assert steps.tolist() == [10, 20, 30]
    np.testing.assert_allclose(sv, [[4, 3, 0.5], [5, 1, np.nan], [2, 2, 2]])
    assert viz.singular_values_over_training(hist, top_k=1)[1].shape == (3, 1)
    with pytest.raises(ValueError, match="history"):
        viz.singular_values_over_training([(1, np.ones((2, 2, 2)))])


def test_confusion_matrix_counts():
    m = viz.confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2])
    np.testing.assert_array_equal(m, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    assert viz.confusion_matrix([0], [0], n_classes=3).shape == (3, 3)
    with pytest.raises(ValueError, match="y_pred"):
        viz.confusion_matrix([0, 1], [0, -1])


# ---------------------------------------------------------------- figures, headless

def fake_log():
    recs = [{"type": "train", "step": s, "loss": 4 * np.exp(-s / 40) + 1 + 0.05 * np.sin(s),
             "lr": 1e-3 * min(1.0, s / 10), "grad_norm": 2 * np.exp(-s / 50)}
            for s in range(1, 101)]
    recs += [{"type": "eval", "step": s, "train_loss": 4 * np.exp(-s / 40) + 1,
              "val_loss": 4 * np.exp(-s / 40) + 1.1} for s in range(0, 101, 20)]
    return recs


def figures():
    """(name, thunk, colour bars expected) for every plotting function."""
    toks = list("the quick brown fox jumps over the lazy dog")
    T = len(toks)
    a = causal_attention(2, 3, T)
    cross = softmax(RNG.normal(size=(2, 2, 6, 6)) + 5 * np.eye(6)[::-1], axis=-1)
    hist = [(s, RNG.normal(size=(12, 6)) * (1 + s / 50)) for s in range(0, 200, 25)]
    grads = {s: {f"h.{i}": np.exp(-s / 80) * (i + 1) for i in range(3)} for s in range(0, 200, 5)}
    y = RNG.integers(0, 4, 100)
    p = np.where(RNG.random(100) < 0.7, y, RNG.integers(0, 4, 100))
    return [
        ("positional_encoding", lambda: viz.plot_positional_encoding(length=101, dim=32), 1),
        ("positional_encoding_table", lambda: viz.plot_positional_encoding(RNG.normal(size=(20, 8))), 1),
        ("pe_dot_vs_distance", lambda: viz.plot_pe_dot_vs_distance(), 0),
        ("attention_maps", lambda: viz.plot_attention_maps(a, toks), 1),
        ("attention_maps_one_head", lambda: viz.plot_attention_maps(a[1, 2], toks), 1),
        ("attention_maps_long", lambda: viz.plot_attention_maps(causal_attention(1, 2, 130)), 1),
        ("attention_rollout", lambda: viz.plot_attention_rollout(a, toks), 1),
        ("cross_attention", lambda: viz.plot_cross_attention(cross, list("abcdef"), list("fedcba")), 1),
        ("head_specialisation", lambda: viz.plot_head_specialisation(
            a, [ord(c) for c in toks], {ord(" ")}, long_range=4), 1),
        ("embedding_pca", lambda: viz.plot_embedding_pca(RNG.normal(size=(40, 10)),
                                                         [chr(65 + i) for i in range(40)]), 0),
        ("singular_values", lambda: viz.plot_singular_values(hist, 4, name="embedding"), 0),
        ("qk_spectra", lambda: viz.plot_qk_spectra(RNG.normal(size=(16, 8)),
                                                   RNG.normal(size=(16, 8)), n_heads=2), 0),
        ("grad_norms", lambda: viz.plot_grad_norms(grads), 0),
        ("grad_norms_log", lambda: viz.plot_grad_norms(fake_log()), 0),
        ("training_curves", lambda: viz.plot_training_curves(fake_log()), 0),
        ("confusion_matrix", lambda: viz.plot_confusion_matrix(
            viz.confusion_matrix(y, p, 4), ["cat", "dog", "bird", "fish"]), 2),
    ]


FIGURES = figures()


def render(fig):
    """PNG bytes of fig and its pixels (H, W, 4)."""
    import matplotlib.image

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    data = buf.getvalue()
    return data, matplotlib.image.imread(io.BytesIO(data), format="png")


@pytest.mark.parametrize("name,make,colorbars", FIGURES, ids=[f[0] for f in FIGURES])
def test_figure_renders_titled_and_labelled(name, make, colorbars):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    fig = make()
    assert isinstance(fig, Figure)
    data, pixels = render(fig)
    assert len(data) > 5000 and pixels.shape[0] > 200 and pixels.shape[1] > 200
    assert len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 20  # not one colour
    plots = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(bars) == colorbars
    assert all(b.get_ylabel() for b in bars)                     # colour bars say what
    title = fig._suptitle.get_text() if fig._suptitle else ""
    assert title or plots[0].get_title()                         # (a twin axis has none)
    assert any(ax.get_xlabel() for ax in plots) and any(ax.get_ylabel() for ax in plots)
    w, h = fig.get_size_inches()
    assert 3 <= w <= 18 and 3 <= h <= 18


def test_token_labels_thinned_only_when_crowded():
    pytest.importorskip("matplotlib")
    toks = [f"t{i}" for i in range(64)]
    one = viz.plot_attention_maps(causal_attention(1, 1, 64), toks)
    ax = one.axes[0]
    one.canvas.draw()
    assert [t.get_text() for t in ax.get_xticklabels()] == toks          # all 64 shown
    assert [t.get_text() for t in ax.get_yticklabels()] == toks
    many = viz.plot_attention_maps(causal_attention(1, 1, 200))
    shown = [t.get_text() for t in many.axes[0].get_xticklabels()]
    assert 20 <= len(shown) < 200 and shown[0] == "0" and int(shown[1]) > 1   # every k-th
    # whitespace tokens stay visible, "$" stays literal
    fig = viz.plot_attention_maps(np.eye(3)[None], [" ", "\n", "$x$"])
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["\u2423", "\\n", r"\$x\$"]


def test_no_pyplot_state():
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    viz.plot_attention_maps(causal_attention(1, 2, 5))
    viz.plot_training_curves(fake_log())
    assert plt.get_fignums() == before


def test_plot_loss_curve_writes_png(tmp_path, monkeypatch):
    log = tmp_path / "run" / "log.jsonl"
    log.parent.mkdir()
    log.write_text("".join(json.dumps(r) + "\n" for r in fake_log()))
    assert len(viz.read_log(log)) == 106
    if viz.have_matplotlib():
        png = tmp_path / "loss.png"
        assert viz.plot_loss_curve(str(log), str(png)) == str(png)
        assert png.stat().st_size > 5000
        fig = viz.plot_training_curves(str(log))
        assert fig.axes[0].get_title() == "run" and fig.axes[1].get_ylabel() == "learning rate"
    monkeypatch.setattr(viz, "have_matplotlib", lambda: False)
    assert viz.plot_loss_curve(str(log), str(tmp_path / "x.png")) is None


def test_bad_input_names_the_argument():
    pytest.importorskip("matplotlib")
    with pytest.raises(ValueError, match="labels"):
        viz.plot_attention_maps(np.eye(3), ["a", "b"])
    with pytest.raises(ValueError, match="heads"):
        viz.plot_attention_maps(np.ones((2, 3, 3)) / 3, heads=[2])
    with pytest.raises(ValueError, match="attention"):
        viz.plot_attention_maps(np.ones(3))
    with pytest.raises(ValueError, match="counts"):
        viz.plot_confusion_matrix(np.ones((2, 3)))
    with pytest.raises(ValueError, match="show"):
        viz.plot_confusion_matrix(np.ones((2, 2)), show="all")
    with pytest.raises(ValueError, match="gradient norms"):
        viz.plot_grad_norms([{"type": "eval", "step": 1}])


def test_missing_matplotlib_one_clear_error(monkeypatch):
    for mod in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "matplotlib", None)          # import matplotlib fails
    assert not viz.have_matplotlib()
    for name, make, _ in FIGURES:
        with pytest.raises(viz.MatplotlibMissingError, match=r'pip install "transformer_c\[plot\]"'):
            make()
    assert issubclass(viz.MatplotlibMissingError, ImportError)
    # the computations need only NumPy
    viz.attention_rollout(causal_attention(2, 2, 4))
    viz.head_specialisation(causal_attention(2, 2, 4))
    viz.qk_spectra(RNG.normal(size=(2, 4, 2)), RNG.normal(size=(2, 4, 2)))
    viz.embedding_pca(RNG.normal(size=(5, 3)))
    viz.confusion_matrix([0, 1], [1, 1])
    assert viz.plot_loss_curve("unused", "unused.png") is None
