"""Building blocks of real transformer models, with GPT-2 / PyTorch parameter names.

These are the pieces GPT (and encoder / encoder-decoder models) are made of: ``Dense``
(a linear layer, weight (out, in) as torch.nn.Linear), ``Norm`` (LayerNorm with
``weight``/``bias``), ``MLP`` (c_fc -> activation -> c_proj), ``SelfAttention`` (one fused
c_attn projection to q, k, v, heads split by reshape, optional RoPE on q and k, an optional
key-padding mask, c_proj), ``Block`` (pre- or post-LN residual block with seeded dropout on
the branches; bidirectional with a key-padding mask it is an encoder layer),
``CrossAttention`` (q_attn from x, one fused c_attn to k, v from a memory, c_proj: Hugging
Face GPT-2's ``crossattention`` layout) and ``DecoderBlock`` (self-attention,
cross-attention to the memory, MLP: a layer of an encoder-decoder's decoder).

Each has the tree interface of :mod:`transformer_c.nn.module` (``parameters``,
``with_parameters``, ``forward(x=)``, ``backward(g, x=)``) plus two internal methods that
models chain without recomputation: ``forward_cached(x) -> (y, cache)`` and
``backward_cached(g, cache) -> (grads, dx)`` (CrossAttention and DecoderBlock take a
``memory`` too and also return its gradient). ``backward`` is ``backward_cached`` after
``forward_cached`` on the same input. Masks are True = attend / True = real key, as
transformer_c.functional (transformer_c.data's coursework masks are True = masked: invert
them). All math runs in the C kernels of
:mod:`transformer_c.functional`.
"""
import numpy as np

from .. import functional as F
from ..options import ACTIVATIONS, check_option
from .module import Module, replace_keys

__all__ = ["Dense", "Norm", "MLP", "SelfAttention", "Block", "CrossAttention", "DecoderBlock",
           "ACTIVATIONS", "site_seed"]

_GOLDEN = 0x9E3779B97F4A7C15


def site_seed(seed, site):
    """The dropout seed of dropout site ``site`` (an int >= 0) for the model seed ``seed``:
    (seed + (site + 1) * 0x9E3779B97F4A7C15) mod 2**64. Philox keys that differ give
    independent streams, so every site has its own mask. The C fast path uses the same rule.
    """
    return (int(seed) + (int(site) + 1) * _GOLDEN) % (1 << 64)


class _Cached(Module):
    """forward / backward in terms of forward_cached / backward_cached (extra keyword inputs,
    such as a key_padding_mask, pass through; their input gradients are zeros)."""

    def forward(self, x, **options):
        return self.forward_cached(x, **options)[0]

    def backward(self, gradient_outputs, x, **options):
        grads, dx = self.backward_cached(gradient_outputs, self.forward_cached(x, **options)[1])
        return grads, _with_zero_grads({"x": dx}, options)


def _with_zero_grads(grads, options):
    """Input gradients of the non-differentiable inputs that were given (masks): zeros."""
    for name, value in options.items():
        if value is not None:
            grads[name] = np.zeros(np.shape(value), dtype=np.asarray(value).dtype)
    return grads


class Dense(_Cached):
    """y = x @ weight.T + bias; weight (out, in) as torch.nn.Linear, bias (out,) or None.

    Parameter keys ``weight`` and (when present) ``bias``. forward(x=(..., in)) -> (..., out).
    """

    def __init__(self, weight, bias=None):
        self.weight = np.asarray(weight)
        self.bias = None if bias is None else np.asarray(bias)

    @property
    def parameters(self):
        p = {"weight": self.weight}
        if self.bias is not None:
            p["bias"] = self.bias
        return p

    def with_parameters(self, parameters):
        p = replace_keys(self, parameters, self.parameters)
        return Dense(p["weight"], p.get("bias"))

    def forward_cached(self, x):
        return F.linear(x, self.weight, self.bias), x

    def backward_cached(self, g, x):
        dx, dw, db = F.linear_backward(g, x, self.weight, self.bias)
        grads = {"weight": dw}
        if self.bias is not None:
            grads["bias"] = db
        return grads, dx


class Norm(_Cached):
    """LayerNorm over the last axis with keys ``weight`` and (when present) ``bias``."""

    def __init__(self, weight, bias=None, eps=1e-5):
        self.weight = np.asarray(weight)
        self.bias = None if bias is None else np.asarray(bias)
        self.eps = float(eps)

    @property
    def parameters(self):
        p = {"weight": self.weight}
        if self.bias is not None:
            p["bias"] = self.bias
        return p

    def with_parameters(self, parameters):
        p = replace_keys(self, parameters, self.parameters)
        return Norm(p["weight"], p.get("bias"), eps=self.eps)

    def forward_cached(self, x):
        y, mean, rstd = F.layer_norm(x, self.weight, self.bias, eps=self.eps, return_stats=True)
        return y, (x, mean, rstd)

    def backward_cached(self, g, cache):
        x, mean, rstd = cache
        dx, dw, db = F.layer_norm_backward(g, x, self.weight, self.bias, eps=self.eps,
                                           mean=mean, rstd=rstd)
        grads = {"weight": dw}
        if self.bias is not None:
            grads["bias"] = db
        return grads, dx


def _activation(name, h):
    if name == "relu":
        return F.relu(h)
    return F.gelu(h, approximate="tanh" if name == "gelu_tanh" else "none")


def _activation_backward(name, g, h):
    if name == "relu":
        return F.relu_backward(g, h)
    return F.gelu_backward(g, h, approximate="tanh" if name == "gelu_tanh" else "none")


class MLP(_Cached):
    """c_proj(act(c_fc(x))), act one of "gelu_tanh" (GPT-2), "gelu" (exact), "relu".

    Parameter keys ``c_fc`` and ``c_proj`` (Dense trees).
    """

    def __init__(self, c_fc, c_proj, activation="gelu_tanh"):
        check_option("activation", activation)
        self.c_fc, self.c_proj, self.activation = c_fc, c_proj, activation

    @property
    def parameters(self):
        return {"c_fc": self.c_fc.parameters, "c_proj": self.c_proj.parameters}

    def with_parameters(self, parameters):
        p = replace_keys(self, parameters, ["c_fc", "c_proj"])
        return MLP(self.c_fc.with_parameters(p["c_fc"]), self.c_proj.with_parameters(p["c_proj"]),
                   self.activation)

    def forward_cached(self, x):
        h, c1 = self.c_fc.forward_cached(x)
        a = _activation(self.activation, h)
        y, c2 = self.c_proj.forward_cached(a)
        return y, (c1, h, c2)

    def backward_cached(self, g, cache):
        c1, h, c2 = cache
        g2, da = self.c_proj.backward_cached(g, c2)
        g1, dx = self.c_fc.backward_cached(_activation_backward(self.activation, da, h), c1)
        return {"c_fc": g1, "c_proj": g2}, dx


class SelfAttention(_Cached):
    """Multi-head self-attention with one fused input projection (GPT-2's layout).

    c_attn: Dense (3C, C) giving [q | k | v] along the last axis; the heads are split by
    reshape (head h owns channels h*HS .. (h+1)*HS of each); c_proj: Dense (C, C).
    forward(x=(B, T, C), key_padding_mask=None) -> (B, T, C). causal: query t sees keys
    <= t. key_padding_mask: None or bool (B, T), True = a real token, False = padding (never
    attended to). rope: None, or a dict(base=..., interleaved=...) to rotate q and k by
    position (RoPE) before the scores.
    dropout: probability of dropping an attention probability, with masks from ``seed``
    (0 turns it off: set it to 0 in eval mode). The attention itself is
    transformer_c.functional.scaled_dot_product_attention (the tiled kernel).
    """

    def __init__(self, c_attn, c_proj, n_head, *, causal=True, rope=None, dropout=0.0, seed=0):
        self.c_attn, self.c_proj = c_attn, c_proj
        self.n_head, self.causal, self.rope = int(n_head), bool(causal), rope
        self.dropout, self.seed = float(dropout), seed
        C = self.c_proj.weight.shape[0]
        if self.n_head < 1 or C % self.n_head:
            raise ValueError(f"n_embd ({C}) must be divisible by n_head ({n_head})")

    @property
    def parameters(self):
        return {"c_attn": self.c_attn.parameters, "c_proj": self.c_proj.parameters}

    def with_parameters(self, parameters):
        p = replace_keys(self, parameters, ["c_attn", "c_proj"])
        return SelfAttention(self.c_attn.with_parameters(p["c_attn"]),
                             self.c_proj.with_parameters(p["c_proj"]), self.n_head,
                             causal=self.causal, rope=self.rope, dropout=self.dropout,
                             seed=self.seed)

    def _sdpa_options(self, key_padding_mask=None):
        opts = dict(is_causal=self.causal)
        if self.dropout > 0:
            opts.update(dropout_p=self.dropout, seed=self.seed)
        if key_padding_mask is not None:
            opts["key_padding_mask"] = key_padding_mask
        return opts

    def _heads(self, t):
        """(B, T, C) -> (B, NH, T, HS), contiguous."""
        B, T, C = t.shape
        heads = t.reshape(B, T, self.n_head, C // self.n_head)
        return np.ascontiguousarray(heads.transpose(0, 2, 1, 3))

    @staticmethod
    def _merge(t):
        """(B, NH, T, HS) -> (B, T, NH * HS)."""
        B, NH, T, HS = t.shape
        return np.ascontiguousarray(t.transpose(0, 2, 1, 3)).reshape(B, T, NH * HS)

    def forward_cached(self, x, key_padding_mask=None):
        if np.ndim(x) != 3:
            raise ValueError(f"x must have shape (B, T, C), got {np.shape(x)}")
        qkv, c1 = self.c_attn.forward_cached(x)
        C = qkv.shape[-1] // 3
        q, k, v = (self._heads(qkv[..., i * C:(i + 1) * C]) for i in range(3))
        if self.rope is not None:
            q, k = F.rope(q, **self.rope), F.rope(k, **self.rope)
        opts = self._sdpa_options(key_padding_mask)
        y, lse = F.scaled_dot_product_attention(q, k, v, return_lse=True, **opts)
        out, c2 = self.c_proj.forward_cached(self._merge(y))
        return out, (c1, q, k, v, y, lse, c2, opts)

    def backward_cached(self, g, cache):
        c1, q, k, v, y, lse, c2, opts = cache
        g2, dy = self.c_proj.backward_cached(g, c2)
        dq, dk, dv = F.scaled_dot_product_attention_backward(
            self._heads(dy), q, k, v, out=y, lse=lse, **opts)
        if self.rope is not None:
            dq, dk = F.rope_backward(dq, **self.rope), F.rope_backward(dk, **self.rope)
        dqkv = np.concatenate([self._merge(d) for d in (dq, dk, dv)], axis=-1)
        g1, dx = self.c_attn.backward_cached(dqkv, c1)
        return {"c_attn": g1, "c_proj": g2}, dx


class Block(_Cached):
    """A transformer block with GPT-2 keys ``ln_1``, ``attn``, ``ln_2``, ``mlp``.

    norm="pre" (GPT-2):  x = x + drop(attn(ln_1(x)));  x = x + drop(mlp(ln_2(x)))
    norm="post" (GPT-1, the original Transformer):
                         x = ln_1(x + drop(attn(x)));  x = ln_2(x + drop(mlp(x)))
    drop is inverted dropout with probability ``dropout`` when ``training``; its masks come
    from ``seeds`` = (attention branch seed, MLP branch seed) (see site_seed), so forward
    and backward see the same masks. forward(x=(B, T, C), key_padding_mask=None): the mask
    (bool (B, T), True = real token) goes to the attention (an encoder layer: a
    bidirectional ``attn`` with the source padding mask).
    """

    def __init__(self, ln_1, attn, ln_2, mlp, *, norm="pre", dropout=0.0, training=False,
                 seeds=(0, 0)):
        if norm not in ("pre", "post"):
            raise ValueError(f"norm must be 'pre' or 'post', got {norm!r}")
        self.ln_1, self.attn, self.ln_2, self.mlp = ln_1, attn, ln_2, mlp
        self.norm, self.dropout, self.training = norm, float(dropout), bool(training)
        self.seeds = tuple(seeds)

    @property
    def parameters(self):
        return {"ln_1": self.ln_1.parameters, "attn": self.attn.parameters,
                "ln_2": self.ln_2.parameters, "mlp": self.mlp.parameters}

    def with_parameters(self, parameters):
        p = replace_keys(self, parameters, ["ln_1", "attn", "ln_2", "mlp"])
        return Block(self.ln_1.with_parameters(p["ln_1"]), self.attn.with_parameters(p["attn"]),
                     self.ln_2.with_parameters(p["ln_2"]), self.mlp.with_parameters(p["mlp"]),
                     norm=self.norm, dropout=self.dropout, training=self.training,
                     seeds=self.seeds)

    def _drop(self, t, i):
        if not self.training or self.dropout == 0.0:
            return t
        return F.dropout(t, self.dropout, seed=self.seeds[i])

    def _drop_backward(self, g, i):
        if not self.training or self.dropout == 0.0:
            return g
        return F.dropout_backward(g, self.dropout, seed=self.seeds[i])

    def forward_cached(self, x, key_padding_mask=None):
        kpm = {} if key_padding_mask is None else {"key_padding_mask": key_padding_mask}
        if self.norm == "pre":
            n1, cn1 = self.ln_1.forward_cached(x)
            a, ca = self.attn.forward_cached(n1, **kpm)
            x1 = x + self._drop(a, 0)
            n2, cn2 = self.ln_2.forward_cached(x1)
            m, cm = self.mlp.forward_cached(n2)
            return x1 + self._drop(m, 1), (cn1, ca, cn2, cm)
        a, ca = self.attn.forward_cached(x, **kpm)
        x1, cn1 = self.ln_1.forward_cached(x + self._drop(a, 0))
        m, cm = self.mlp.forward_cached(x1)
        y, cn2 = self.ln_2.forward_cached(x1 + self._drop(m, 1))
        return y, (cn1, ca, cn2, cm)

    def backward_cached(self, g, cache):
        cn1, ca, cn2, cm = cache
        if self.norm == "pre":
            gm, dn2 = self.mlp.backward_cached(self._drop_backward(g, 1), cm)
            g2, dx1 = self.ln_2.backward_cached(dn2, cn2)
            dx1 = g + dx1
            ga, dn1 = self.attn.backward_cached(self._drop_backward(dx1, 0), ca)
            g1, dx = self.ln_1.backward_cached(dn1, cn1)
            dx = dx1 + dx
        else:
            g2, dr2 = self.ln_2.backward_cached(g, cn2)
            gm, dx1 = self.mlp.backward_cached(self._drop_backward(dr2, 1), cm)
            g1, dr1 = self.ln_1.backward_cached(dr2 + dx1, cn1)
            ga, dx = self.attn.backward_cached(self._drop_backward(dr1, 0), ca)
            dx = dr1 + dx
        return {"ln_1": g1, "attn": ga, "ln_2": g2, "mlp": gm}, dx


class CrossAttention(_Cached):
    """Multi-head attention from x to a memory (an encoder's output), Hugging Face GPT-2's
    ``crossattention`` layout: q_attn: Dense (C, C) gives the queries from x; c_attn:
    Dense (2C, C_mem) gives [k | v] from the memory; c_proj: Dense (C, C).

    forward(x=(B, T, C), memory=(B, S, C_mem), key_padding_mask=None) -> (B, T, C);
    key_padding_mask: None or bool (B, S), True = a real memory position (padding is never
    attended to: a query whose memory is all padding gets 0). dropout on the attention
    probabilities with masks from ``seed`` (0 turns it off).
    """

    def __init__(self, q_attn, c_attn, c_proj, n_head, *, dropout=0.0, seed=0):
        self.q_attn, self.c_attn, self.c_proj = q_attn, c_attn, c_proj
        self.n_head, self.dropout, self.seed = int(n_head), float(dropout), seed
        C = self.c_proj.weight.shape[0]
        if self.n_head < 1 or C % self.n_head:
            raise ValueError(f"n_embd ({C}) must be divisible by n_head ({n_head})")

    @property
    def parameters(self):
        return {"q_attn": self.q_attn.parameters, "c_attn": self.c_attn.parameters,
                "c_proj": self.c_proj.parameters}

    def with_parameters(self, parameters):
        p = replace_keys(self, parameters, ["q_attn", "c_attn", "c_proj"])
        return CrossAttention(self.q_attn.with_parameters(p["q_attn"]),
                              self.c_attn.with_parameters(p["c_attn"]),
                              self.c_proj.with_parameters(p["c_proj"]), self.n_head,
                              dropout=self.dropout, seed=self.seed)

    def forward(self, x, memory, key_padding_mask=None):
        return self.forward_cached(x, memory, key_padding_mask)[0]

    def backward(self, gradient_outputs, x, memory, key_padding_mask=None):
        grads, dx, dmem = self.backward_cached(
            gradient_outputs, self.forward_cached(x, memory, key_padding_mask)[1])
        return grads, _with_zero_grads({"x": dx, "memory": dmem},
                                       {"key_padding_mask": key_padding_mask})

    def _heads(self, t):
        B, T, C = t.shape
        heads = t.reshape(B, T, self.n_head, C // self.n_head)
        return np.ascontiguousarray(heads.transpose(0, 2, 1, 3))

    def forward_cached(self, x, memory, key_padding_mask=None):
        if np.ndim(x) != 3 or np.ndim(memory) != 3 or np.shape(memory)[0] != np.shape(x)[0]:
            raise ValueError(f"x must have shape (B, T, C) and memory (B, S, C_mem), got "
                             f"{np.shape(x)} and {np.shape(memory)}")
        qx, c0 = self.q_attn.forward_cached(x)
        kv, c1 = self.c_attn.forward_cached(memory)
        C = qx.shape[-1]
        q, k, v = self._heads(qx), self._heads(kv[..., :C]), self._heads(kv[..., C:])
        opts = {}
        if self.dropout > 0:
            opts.update(dropout_p=self.dropout, seed=self.seed)
        if key_padding_mask is not None:
            opts["key_padding_mask"] = key_padding_mask
        y, lse = F.scaled_dot_product_attention(q, k, v, return_lse=True, **opts)
        out, c2 = self.c_proj.forward_cached(SelfAttention._merge(y))
        return out, (c0, c1, q, k, v, y, lse, c2, opts)

    def backward_cached(self, g, cache):
        """(grads, dx, dmemory)."""
        c0, c1, q, k, v, y, lse, c2, opts = cache
        g2, dy = self.c_proj.backward_cached(g, c2)
        dq, dk, dv = F.scaled_dot_product_attention_backward(
            self._heads(dy), q, k, v, out=y, lse=lse, **opts)
        g0, dx = self.q_attn.backward_cached(SelfAttention._merge(dq), c0)
        dkv = np.concatenate([SelfAttention._merge(dk), SelfAttention._merge(dv)], axis=-1)
        g1, dmem = self.c_attn.backward_cached(dkv, c1)
        return {"q_attn": g0, "c_attn": g1, "c_proj": g2}, dx, dmem


class DecoderBlock(Module):
    """A decoder layer of an encoder-decoder: keys ``ln_1``, ``attn`` (causal
    SelfAttention), ``ln_cross_attn``, ``crossattention`` (CrossAttention to the memory),
    ``ln_2``, ``mlp`` (Hugging Face GPT-2's names with add_cross_attention).

    norm="pre":  x = x + drop(attn(ln_1(x)))
                 x = x + drop(crossattention(ln_cross_attn(x), memory))
                 x = x + drop(mlp(ln_2(x)))
    norm="post": x = ln_1(x + drop(attn(x)))
                 x = ln_cross_attn(x + drop(crossattention(x, memory)))
                 x = ln_2(x + drop(mlp(x)))
    drop: inverted dropout (probability ``dropout`` when ``training``) with masks from
    ``seeds`` = (self-attention, cross-attention, MLP branch seeds).

    forward(x=(B, T, C), memory=(B, S, C_mem), memory_key_padding_mask=None) -> (B, T, C);
    backward also returns the memory's gradient (the encoder's output feeds every layer).
    """

    KEYS = ("ln_1", "attn", "ln_cross_attn", "crossattention", "ln_2", "mlp")

    def __init__(self, ln_1, attn, ln_cross_attn, crossattention, ln_2, mlp, *, norm="pre",
                 dropout=0.0, training=False, seeds=(0, 0, 0)):
        if norm not in ("pre", "post"):
            raise ValueError(f"norm must be 'pre' or 'post', got {norm!r}")
        self.ln_1, self.attn, self.ln_cross_attn = ln_1, attn, ln_cross_attn
        self.crossattention, self.ln_2, self.mlp = crossattention, ln_2, mlp
        self.norm, self.dropout, self.training = norm, float(dropout), bool(training)
        self.seeds = tuple(seeds)

    @property
    def parameters(self):
        return {k: getattr(self, k).parameters for k in self.KEYS}

    def with_parameters(self, parameters):
        p = replace_keys(self, parameters, self.KEYS)
        return DecoderBlock(*(getattr(self, k).with_parameters(p[k]) for k in self.KEYS),
                            norm=self.norm, dropout=self.dropout, training=self.training,
                            seeds=self.seeds)

    def forward(self, x, memory, memory_key_padding_mask=None):
        return self.forward_cached(x, memory, memory_key_padding_mask)[0]

    def backward(self, gradient_outputs, x, memory, memory_key_padding_mask=None):
        grads, dx, dmem = self.backward_cached(
            gradient_outputs, self.forward_cached(x, memory, memory_key_padding_mask)[1])
        return grads, _with_zero_grads({"x": dx, "memory": dmem},
                                       {"memory_key_padding_mask": memory_key_padding_mask})

    def _drop(self, t, i):
        if not self.training or self.dropout == 0.0:
            return t
        return F.dropout(t, self.dropout, seed=self.seeds[i])

    def _drop_backward(self, g, i):
        if not self.training or self.dropout == 0.0:
            return g
        return F.dropout_backward(g, self.dropout, seed=self.seeds[i])

    def _sublayers(self, memory, mask):
        return ((self.ln_1, lambda h: self.attn.forward_cached(h)),
                (self.ln_cross_attn,
                 lambda h: self.crossattention.forward_cached(h, memory, mask)),
                (self.ln_2, lambda h: self.mlp.forward_cached(h)))

    def forward_cached(self, x, memory, memory_key_padding_mask=None):
        caches = []
        for i, (ln, f) in enumerate(self._sublayers(memory, memory_key_padding_mask)):
            if self.norm == "pre":
                n, cn = ln.forward_cached(x)
                y, cf = f(n)
                x = x + self._drop(y, i)
            else:
                y, cf = f(x)
                x, cn = ln.forward_cached(x + self._drop(y, i))
            caches.append((cn, cf))
        return x, caches

    def backward_cached(self, g, cache):
        """(grads, dx, dmemory)."""
        mods = (self.attn, self.crossattention, self.mlp)
        lns = (self.ln_1, self.ln_cross_attn, self.ln_2)
        grads, dmem = {}, None
        for i in reversed(range(3)):
            cn, cf = cache[i]
            if self.norm == "pre":
                out = mods[i].backward_cached(self._drop_backward(g, i), cf)
                gln, dn = lns[i].backward_cached(out[1], cn)
                g = g + dn
            else:
                gln, dr = lns[i].backward_cached(g, cn)
                out = mods[i].backward_cached(self._drop_backward(dr, i), cf)
                g = dr + out[1]
            grads[self.KEYS[2 * i]], grads[self.KEYS[2 * i + 1]] = gln, out[0]
            if i == 1:
                dmem = out[2]
        return {k: grads[k] for k in self.KEYS}, g, dmem
