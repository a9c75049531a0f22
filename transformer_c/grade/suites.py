"""The grading suites: which student classes are checked, on which (seeded) inputs, and how
each is constructed from a case's parameters (the course's own constructors).

A case is data: component (the name the student file defines), config (ints), params and
inputs (arrays, float64 for floats), what the case probes (``title``) and what to look at
when it fails (``hint``). The same data builds the reference (transformer_c) and the
student's object, and is what a snapshot stores.

Suites:
- ``mytorch`` (CMU 11-785 HW4, seed 001): Linear, Softmax, ScaledDotProductAttention,
  MultiHeadAttention, stateful, masks True = do not attend.
- ``mlp`` (POSTECH "Autoregressive", seed 000): LayerNorm, PositionalEncoding,
  ScaledSelfAttention (causal or not), MultiHeadAttention built from the student's heads,
  FeedForward (on the framework's Linear: the student file's ``Linear`` if it has one,
  else transformer_c.nn.Linear), DecoderLayer and Decoder built from the student's parts
  (Decoder on the framework's Embedding and Linear, the student file's if it has them).
- ``hw4lib`` (seed 001, Task 2): the PadMask and CausalMask functions.
"""
import numpy as np

from .. import nn
from ..compat import hw4lib, mytorch

__all__ = ["Case", "SUITES", "make_cases", "reference_namespace"]


class Case:
    """One graded test. name: "Component: title"; grads: whether backward is checked."""

    def __init__(self, component, title, hint, config=None, params=None, inputs=None,
                 grads=True, max_score=1.0):
        self.component, self.title, self.hint = component, title, hint
        self.config, self.params = dict(config or {}), dict(params or {})
        self.inputs, self.grads, self.max_score = dict(inputs or {}), grads, float(max_score)
        self.hidden = False

    @property
    def name(self):
        return f"{self.component}: {self.title}" + (" [hidden]" if self.hidden else "")


def _n(rng, *shape, scale=1.0):
    return rng.standard_normal(shape) * scale


# ------------------------------------------------------------------ mytorch
def _mt_linear(rng, batch, cin, cout):
    return Case("Linear", f"A {batch + (cin,)} -> {cout} features",
                "Z = A @ W.T + b over any number of batch dims: flatten to (prod(batch), "
                "in_features), then reshape back; dLdW = dLdZ^T A and dLdb = sum of dLdZ over "
                "all batch positions", config={"in_features": cin, "out_features": cout},
                params={"W": _n(rng, cout, cin), "b": _n(rng, cout)},
                inputs={"A": _n(rng, *batch, cin)})


def _mt_softmax(rng, shape, dim, scale, what):
    return Case("Softmax", f"dim={dim} of {shape}, {what}",
                "softmax along `dim` only; subtract the max along `dim` before exp (large "
                "logits overflow exp otherwise); backward: dLdZ = A * (dLdA - sum(dLdA * A, "
                "dim))", config={"dim": dim}, inputs={"Z": _n(rng, *shape, scale=scale)})


def _mt_sdpa(rng, lead, L, S, E, Ev, masked):
    mask = None
    if masked:
        mask = rng.random(lead + (L, S)) < 0.3
        mask[..., 0] = False
    inputs = {"Q": _n(rng, *lead, L, E), "K": _n(rng, *lead, S, E), "V": _n(rng, *lead, S, Ev)}
    if masked:
        inputs["mask"] = mask
    return Case("ScaledDotProductAttention",
                f"Q {lead + (L, E)}, K {lead + (S, E)}, V {lead + (S, Ev)}"
                + (", boolean mask" if masked else ""),
                "scores = Q K^T / sqrt(E) (E = Q's last dim), minus eps where mask is True "
                "(True = do not attend), softmax over the last axis (S)",
                inputs=inputs)


def _mt_mha(rng, N, L, S, E, H, masks):
    params = {k: _n(rng, *(E, E) if k.startswith("W") else (E,), scale=0.5)
              for k in ("Wq", "bq", "Wk", "bk", "Wv", "bv", "Wo", "bo")}
    q = _n(rng, N, L, E)
    kv = q if S is None else _n(rng, N, S, E)
    S = L if S is None else S
    inputs = {"query": q, "key": kv, "value": kv.copy()}
    if masks:
        lengths = rng.integers(1, S + 1, N)
        lengths[0] = S
        inputs["key_padding_mask"] = np.arange(S)[None, :] >= lengths[:, None]
        inputs["attn_mask"] = np.triu(np.ones((L, S), bool), 1)
    return Case("MultiHeadAttention", f"N={N} L={L} S={S} E={E} H={H}"
                + (", causal + key padding" if masks else ""),
                "project, _split_heads to (N, H, L, E/H), _merge_masks(key_padding_mask "
                "(N, S), attn_mask (L, S)) -> (N, H, L, S) with True = do not attend, attend "
                "per head, _concat_heads, out_proj; backward in reverse order",
                config={"embed_dim": E, "num_heads": H}, params=params, inputs=inputs)


MYTORCH = [
    lambda r: _mt_linear(r, (4,), 3, 5),
    lambda r: _mt_linear(r, (2, 3), 7, 1),
    lambda r: _mt_linear(r, (1, 1, 1), 2, 3),
    lambda r: _mt_softmax(r, (3, 5), -1, 1.0, "moderate logits"),
    lambda r: _mt_softmax(r, (2, 3, 4), 1, 1.0, "a middle axis"),
    lambda r: _mt_softmax(r, (4, 6), -1, 800.0, "large logits (|z| ~ 1000)"),
    lambda r: _mt_softmax(r, (5, 1), -1, 1.0, "a single class"),
    lambda r: _mt_sdpa(r, (2, 3), 4, 5, 6, 7, False),
    lambda r: _mt_sdpa(r, (2, 2), 3, 3, 5, 5, True),
    lambda r: _mt_sdpa(r, (1, 1), 1, 1, 3, 2, False),
    lambda r: _mt_mha(r, 2, 5, None, 8, 2, True),
    lambda r: _mt_mha(r, 3, 4, 6, 6, 3, False),
    lambda r: _mt_mha(r, 1, 1, None, 4, 4, True),
]


def _build_mytorch(ns, case):
    cls = ns[case.component]
    c, p = case.config, case.params
    if case.component == "Linear":
        m = cls(c["in_features"], c["out_features"])
        m.init_weights(p["W"], p["b"])
    elif case.component == "Softmax":
        m = cls(c["dim"])
    elif case.component == "ScaledDotProductAttention":
        m = cls()
    else:
        m = cls(c["embed_dim"], c["num_heads"])
        m.init_weights(*(p[k] for k in ("Wq", "bq", "Wk", "bk", "Wv", "bv", "Wo", "bo")))
    return m


# ------------------------------------------------------------------ mlp (POSTECH)
def _mlp_layernorm(rng, shape, what, constant=False):
    x = _n(rng, *shape) * 3 + 1
    if constant:
        x[..., :] = x[..., :1]
    return Case("LayerNorm", f"x {shape}, {what}",
                "mean and variance over the LAST axis only (D), the biased variance "
                "(divide by D, not D - 1), eps = 1e-5 inside the square root: y = weights * "
                "(x - mean) / sqrt(var + eps) + bias",
                params={"weights": _n(rng, shape[-1]) + 1, "bias": _n(rng, shape[-1])},
                inputs={"x": x})


def _mlp_pe(rng, T, D):
    return Case("PositionalEncoding", f"x ({T}, {D})",
                "PE[n, 2k] = sin(n / 10000^(2k/D)), PE[n, 2k+1] = cos(n / 10000^(2k/D)); "
                "forward adds PE[:T]; backward passes the gradient through",
                config={"seq_len": max(T, 8), "d_model": D}, inputs={"x": _n(rng, T, D)})


def _mlp_attn(rng, T, din, dk, dv, causal):
    return Case("ScaledSelfAttention", f"T={T} d_in={din} d_k={dk} d_v={dv}"
                + (", causal" if causal else ""),
                "Q = q W_q, K = k W_k, V = v W_v; softmax(Q K^T / sqrt(d_k)) V; causal: add "
                "-1e9 strictly above the diagonal (query i sees keys j <= i) and zero those "
                "score gradients",
                config={"causal": int(causal)},
                params={"W_q": _n(rng, din, dk), "W_k": _n(rng, din, dk), "W_v": _n(rng, din, dv)},
                inputs={"q": _n(rng, T, din), "k": _n(rng, T, din), "v": _n(rng, T, din)})


def _mlp_mha(rng, T, din, H, d, causal):
    params = {}
    for h in range(H):
        params.update({f"head_{h}/W_q": _n(rng, din, d), f"head_{h}/W_k": _n(rng, din, d),
                       f"head_{h}/W_v": _n(rng, din, d)})
    params["W_out"] = _n(rng, H * d, din)
    x = _n(rng, T, din)
    return Case("MultiHeadAttention", f"T={T} d_model={din} heads={H}"
                + (", causal" if causal else ""),
                "concat(head_1(x), ..., head_h(x)) @ W_out; backward splits the gradient "
                "per head and sums the three input gradients of each head (built from your "
                "ScaledSelfAttention: fix it first if it fails)",
                config={"num_heads": H, "causal": int(causal)}, params=params,
                inputs={"q": x, "k": x, "v": x})


def _ffn_params(rng, din, dh, prefix=""):
    return {f"{prefix}layer1/weights": _n(rng, dh, din), f"{prefix}layer1/bias": _n(rng, dh),
            f"{prefix}layer2/weights": _n(rng, din, dh), f"{prefix}layer2/bias": _n(rng, din)}


def _mlp_ffn(rng, shape, dh):
    return Case("FeedForward", f"x {shape}, hidden {dh}",
                "W2 ReLU(W1 x + b1) + b2 with the framework's Linear (y = x @ weights.T + "
                "bias); ReLU's gradient is 0 where W1 x + b1 <= 0",
                params=_ffn_params(rng, shape[-1], dh), inputs={"x": _n(rng, *shape)})


def _layer_params(rng, D, H, dh, prefix=""):
    d = D // H
    p = {f"{prefix}MHA/head_{h}/{w}": _n(rng, D, d) for h in range(H)
         for w in ("W_q", "W_k", "W_v")}
    p[f"{prefix}MHA/W_out"] = _n(rng, D, D)
    for n in ("Norm1", "Norm2"):
        p.update({f"{prefix}{n}/weights": _n(rng, D) + 1, f"{prefix}{n}/bias": _n(rng, D)})
    p.update(_ffn_params(rng, D, dh, f"{prefix}FFN/"))
    return p


def _mlp_decoder_layer(rng, T, D, H, dh):
    return Case("DecoderLayer", f"T={T} D={D} heads={H} hidden={dh}, causal",
                "post-norm: x = Norm1(x + MHA(x, x, x)); x = Norm2(x + FFN(x)); backward "
                "through both residual paths (built from your MultiHeadAttention, LayerNorm "
                "and FeedForward: fix those first if they fail)", config={"num_heads": H},
                params=_layer_params(rng, D, H, dh), inputs={"x": _n(rng, T, D)})


def _mlp_decoder(rng, T, V, D, H, dh, layers):
    p = {"token/weight": _n(rng, V, D)}
    for i in range(layers):
        p.update(_layer_params(rng, D, H, dh, f"layer_{i}/"))
    p.update({"lm_head/weights": _n(rng, V, D), "lm_head/bias": _n(rng, V)})
    return Case("Decoder", f"T={T} V={V} D={D} heads={H} layers={layers}",
                "token embedding -> + positional encoding -> the DecoderLayers -> lm_head "
                "logits (T, V), no final norm; the embedding gradient scatter-adds (repeated "
                "tokens accumulate) (built from your DecoderLayer and PositionalEncoding: fix "
                "those first if they fail)",
                config={"num_heads": H, "num_layers": layers, "seq_len": 16}, params=p,
                inputs={"x": rng.integers(0, V, T)})


MLP = [
    lambda r: _mlp_layernorm(r, (4, 7), "D=7"),
    lambda r: _mlp_layernorm(r, (2, 3, 5), "batched"),
    lambda r: _mlp_layernorm(r, (3, 4), "constant rows (var = 0)", constant=True),
    lambda r: _mlp_pe(r, 5, 6),
    lambda r: _mlp_pe(r, 1, 4),
    lambda r: _mlp_pe(r, 3, 5),
    lambda r: _mlp_attn(r, 5, 4, 3, 2, True),
    lambda r: _mlp_attn(r, 4, 3, 5, 3, False),
    lambda r: _mlp_attn(r, 1, 2, 2, 3, True),
    lambda r: _mlp_mha(r, 5, 6, 2, 3, True),
    lambda r: _mlp_mha(r, 3, 4, 1, 4, False),
    lambda r: _mlp_ffn(r, (5, 4), 7),
    lambda r: _mlp_ffn(r, (1, 3), 2),
    lambda r: _mlp_decoder_layer(r, 4, 6, 2, 8),
    lambda r: _mlp_decoder_layer(r, 1, 4, 1, 3),
    lambda r: _mlp_decoder(r, 6, 7, 4, 2, 5, 2),
    lambda r: _mlp_decoder(r, 1, 3, 2, 1, 3, 1),
]


def _sub(params, prefix):
    return {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}


def _mlp_heads(ns, p, H, causal):
    return [ns["ScaledSelfAttention"](p[f"head_{h}/W_q"], p[f"head_{h}/W_k"], p[f"head_{h}/W_v"],
                                      causal=causal) for h in range(H)]


def _mlp_ffn_module(ns, p):
    """FeedForward from the framework's Linear: the student file's own ``Linear`` when it
    defines or imports one, transformer_c.nn.Linear otherwise."""
    lin = ns.get("Linear", nn.Linear)
    return ns["FeedForward"](lin(p["layer1/weights"], p["layer1/bias"]),
                             lin(p["layer2/weights"], p["layer2/bias"]))


def _mlp_layer(ns, p, H):
    """A DecoderLayer (causal) of ``ns``'s classes from the parameters under one prefix."""
    mha = ns["MultiHeadAttention"](_mlp_heads(ns, _sub(p, "MHA/"), H, True), p["MHA/W_out"])
    norms = [ns["LayerNorm"](p[f"{n}/weights"], p[f"{n}/bias"]) for n in ("Norm1", "Norm2")]
    return ns["DecoderLayer"](mha, norms[0], _mlp_ffn_module(ns, _sub(p, "FFN/")), norms[1])


def _build_mlp(ns, case):
    cls = ns[case.component]
    c, p = case.config, case.params
    if case.component == "LayerNorm":
        return cls(p["weights"], p["bias"])
    if case.component == "PositionalEncoding":
        return cls(c["seq_len"], c["d_model"])
    if case.component == "ScaledSelfAttention":
        return cls(p["W_q"], p["W_k"], p["W_v"], causal=bool(c["causal"]))
    if case.component == "FeedForward":
        return _mlp_ffn_module(ns, p)
    if case.component == "MultiHeadAttention":
        return cls(_mlp_heads(ns, p, c["num_heads"], bool(c["causal"])), p["W_out"])
    if case.component == "DecoderLayer":
        return _mlp_layer(ns, p, c["num_heads"])
    # Decoder: the framework's Embedding and Linear (the student file's, else transformer_c's)
    emb, lin = ns.get("Embedding", nn.Embedding), ns.get("Linear", nn.Linear)
    D = p["token/weight"].shape[1]
    layers = [_mlp_layer(ns, _sub(p, f"layer_{i}/"), c["num_heads"])
              for i in range(c["num_layers"])]
    return cls(emb(p["token/weight"]), ns["PositionalEncoding"](c["seq_len"], D), layers,
               lin(p["lm_head/weights"], p["lm_head/bias"]))


# ------------------------------------------------------------------ hw4lib masks
class _Fn:
    """A mask function seen as a module with no backward."""

    def __init__(self, fn):
        self.fn = fn

    def forward(self, *args):
        return np.asarray(self.fn(*args))

    def backward(self, g):
        return ()


def _hw_causal(rng, shape):
    return Case("CausalMask", f"padded_input {shape}",
                "(T, T) with T = padded_input.shape[1]; True strictly above the diagonal "
                "(the future), False on and below it: a token attends to itself",
                inputs={"padded_input": rng.integers(0, 9, shape)}, grads=False)


def _hw_pad(rng, N, T, extra=()):
    lengths = rng.integers(0, T + 1, N)
    lengths[0] = T
    return Case("PadMask", f"padded_input {(N, T) + extra}, lengths {lengths.tolist()}",
                "(N, T), True where t >= input_lengths[n] (padding), False on the real "
                "tokens", inputs={"padded_input": rng.integers(0, 9, (N, T) + extra),
                                  "input_lengths": lengths}, grads=False)


HW4LIB = [
    lambda r: _hw_causal(r, (2, 5)),
    lambda r: _hw_causal(r, (3, 1)),
    lambda r: _hw_causal(r, (2, 4, 3)),
    lambda r: _hw_pad(r, 2, 5),
    lambda r: _hw_pad(r, 3, 1),
    lambda r: _hw_pad(r, 4, 6, (2,)),
]

SUITES = {
    "mytorch": (MYTORCH, _build_mytorch),
    "mlp": (MLP, _build_mlp),
    "hw4lib": (HW4LIB, lambda ns, case: _Fn(ns[case.component])),
}


def reference_namespace(suite):
    """The reference implementations of a suite, by the names student files define."""
    if suite == "mytorch":
        return {n: getattr(mytorch, n) for n in mytorch.__all__}
    if suite == "mlp":
        return {n: getattr(nn, n) for n in ("LayerNorm", "PositionalEncoding",
                                            "ScaledSelfAttention", "MultiHeadAttention",
                                            "FeedForward", "DecoderLayer", "Decoder", "Linear",
                                            "Embedding")}
    return {"PadMask": hw4lib.PadMask, "CausalMask": hw4lib.CausalMask}


def make_cases(suite, seed=0, hidden_seed=None):
    """The suite's fixed cases (inputs from ``seed``) followed, when hidden_seed is given,
    by the same families on inputs drawn from ``hidden_seed`` (marked hidden)."""
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; choose from {sorted(SUITES)}")
    factories = SUITES[suite][0]
    cases = [f(np.random.default_rng([seed, i])) for i, f in enumerate(factories)]
    if hidden_seed is not None:
        for i, f in enumerate(factories):
            c = f(np.random.default_rng([hidden_seed, 1000 + i]))
            c.hidden = True
            cases.append(c)
    return cases


def build(suite, namespace, case):
    """The object (module or mask function) of ``namespace`` that ``case`` grades."""
    return SUITES[suite][1](namespace, case)


# ------------------------------------------------------------------ diagnoses
# Known mistakes, recognised from the student's (wrong) output: each returns a sentence
# naming the mistake, or None. They model the mistake in NumPy only to recognise it; the
# expected results always come from transformer_c (or its snapshot).
def _diag_softmax(case, out):
    z, dim = case.inputs["Z"], case.config["dim"]
    if not np.all(np.isfinite(out)) and np.abs(z).max() > 80:
        return ("NaN/inf on large logits: exp overflows; subtract the maximum along `dim` "
                "before exp (softmax(z) = softmax(z - max(z)))")
    for ax in range(z.ndim):
        if ax != dim % z.ndim and np.allclose(np.sum(out, axis=ax), 1.0):
            return f"your output sums to 1 along axis {ax}, not along dim={dim}"
    return None


def _diag_layernorm(case, out):
    x, w, b = case.inputs["x"], case.params["weights"], case.params["bias"]
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    D = x.shape[-1]

    def matches(mean, variance, outside=False):
        den = np.sqrt(variance) + 1e-5 if outside else np.sqrt(variance + 1e-5)
        return np.allclose(out, w * (x - mean) / den + b, rtol=1e-6, atol=1e-8)
    if D > 1 and matches(mu, var * D / (D - 1)):
        return ("your variance divides by D - 1 (unbiased, ddof=1); layer norm uses the "
                "biased variance (divide by D)")
    if matches(x.mean(), x.var()):
        return ("your mean/variance are taken over all axes; layer norm normalises each row "
                "over the last axis only")
    if matches(mu, var, outside=True):
        return "eps is added outside the square root; use sqrt(var + eps)"
    return None


def _diag_causal(case, out):
    T = case.inputs["padded_input"].shape[1]
    out = np.asarray(out)
    if out.shape != (T, T):
        return f"the mask must be (T, T) = ({T}, {T}) with T = padded_input.shape[1]"
    for k, msg in ((0, "the diagonal is masked (True): a token must be able to attend to "
                       "itself; mask only j > i (np.triu(..., k=1))"),
                   (2, "the first superdiagonal is not masked: position i sees i + 1; mask "
                       "every j > i (np.triu(..., k=1))")):
        if np.array_equal(out, np.triu(np.ones((T, T), bool), k)):
            return msg
    if np.array_equal(out, np.tril(np.ones((T, T), bool), -1)):
        return "the mask is transposed: True must be ABOVE the diagonal (the future)"
    if np.array_equal(out, ~np.triu(np.ones((T, T), bool), 1)):
        return "the polarity is inverted: True means 'do not attend' (the future)"
    return None


DIAGNOSES = {"Softmax": _diag_softmax, "LayerNorm": _diag_layernorm,
             "CausalMask": _diag_causal}


def diagnose(case, student_output):
    """A sentence naming a known mistake that explains ``student_output``, or None."""
    fn = DIAGNOSES.get(case.component)
    if fn is None:
        return None
    try:
        with np.errstate(all="ignore"):
            return fn(case, np.asarray(student_output))
    except (ValueError, TypeError, KeyError):
        return None
