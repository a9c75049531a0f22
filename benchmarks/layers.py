"""(b) Every layer, forward and forward+backward: transformer_c vs the PyTorch op.

python -m benchmarks.layers [--threads 1 2] [--quick]

Shapes are those of the larger benchmark GPT (6 layers, 6 heads, C = 384, B = 4, T = 256,
V = 65): N = B*T = 1024 token rows. Forward is timed without autograd on the torch side
(torch.no_grad); forward+backward runs the forward with autograd (transformer_c: with the
caches its backward takes) and the backward into fresh gradients, as one training step
does. speedup = torch time / transformer_c time (> 1: transformer_c is faster).
"""
import argparse

import numpy as np

import transformer_c as tc
from benchmarks.common import emit, paired_times, set_threads, try_torch

F = tc.functional
GPT = dict(B=4, T=256, C=384, NH=6, V=65)
TINY = dict(B=2, T=8, C=16, NH=2, V=11)


def _cases(cfg, dtype, torch):
    """name -> (shape text, tc_fwd, tc_fwdbwd, torch_fwd, torch_fwdbwd); torch ones may be None."""
    B, T, C, NH, V = cfg["B"], cfg["T"], cfg["C"], cfg["NH"], cfg["V"]
    N, HS = B * T, C // NH
    r = np.random.default_rng(0)

    def arr(*shape, scale=1.0):
        return (r.standard_normal(shape) * scale).astype(dtype)

    x, x4 = arr(N, C), arr(N, 4 * C)
    W, b = arr(4 * C, C, scale=C ** -0.5), arr(4 * C)
    g4, gC = arr(N, 4 * C), arr(N, C)
    lnw, lnb = arr(C) + 1, arr(C)
    att = arr(B, NH, T, T)
    q, k, v, go = (arr(B, NH, T, HS) for _ in range(4))
    ids = r.integers(0, V, size=(B, T))
    emb = arr(V, C)
    gemb = arr(B, T, C)
    logits, targets = arr(N, V), r.integers(0, V, size=N)
    nparam = 12 * 6 * C * C + 2 * V * C  # about the GPT's parameter count
    p, grad, m1, m2 = arr(nparam), arr(nparam), np.zeros(nparam, dtype), np.zeros(nparam, dtype)
    step = [0]

    def adamw():
        step[0] += 1
        F.adamw_update_(p, grad, m1, m2, step=step[0], lr=1e-4)

    cases = {
        "linear": (f"({N},{C})->({N},{4 * C})",
                   lambda: F.linear(x, W, b),
                   lambda: (F.linear(x, W, b), F.linear_backward(g4, x, W, b))),
        "linear_gelu (fused)": (f"({N},{C})->({N},{4 * C})",
                                lambda: F.linear_gelu(x, W, b, approximate="tanh"),
                                lambda: F.linear_gelu_backward(
                                    g4, x, W, b, approximate="tanh",
                                    pre=F.linear_gelu(x, W, b, approximate="tanh",
                                                      return_pre=True)[1])),
        "gelu (tanh)": (f"({N},{4 * C})", lambda: F.gelu(x4, approximate="tanh"),
                        lambda: (F.gelu(x4, approximate="tanh"),
                                 F.gelu_backward(g4, x4, approximate="tanh"))),
        "relu": (f"({N},{4 * C})", lambda: F.relu(x4),
                 lambda: (F.relu(x4), F.relu_backward(g4, x4))),
        "softmax": (f"({B},{NH},{T},{T})", lambda: F.softmax(att),
                    lambda: F.softmax_backward(att, F.softmax(att))),
        "layernorm": (f"({N},{C})", lambda: F.layer_norm(x, lnw, lnb),
                      lambda: _ln_fb(F, gC, x, lnw, lnb)),
        "rmsnorm": (f"({N},{C})", lambda: F.rms_norm(x, lnw),
                    lambda: _rms_fb(F, gC, x, lnw)),
        "softcap (logits)": (f"({N},{V})", lambda: F.softcap(logits, 30.0),
                             lambda: F.softcap_backward(logits, F.softcap(logits, 30.0), 30.0)),
        "layernorm_residual (fused)": (f"({N},{C})",
                                       lambda: F.layer_norm_residual(x, gC, lnw, lnb),
                                       lambda: _lnr_fb(F, gC, x, lnw, lnb)),
        "embedding": (f"ids ({B},{T}), ({V},{C})", lambda: F.embedding(ids, emb),
                      lambda: (F.embedding(ids, emb), F.embedding_backward(gemb, ids, V))),
        "cross_entropy": (f"({N},{V})", lambda: F.cross_entropy(logits, targets),
                          lambda: (F.cross_entropy(logits, targets),
                                   F.cross_entropy_backward(logits, targets))),
        "attention (causal)": (f"({B},{NH},{T},{HS})",
                               lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True),
                               lambda: _att_fb(F, go, q, k, v)),
        "dropout (p=0.1)": (f"({N},{4 * C})", lambda: F.dropout(x4, 0.1, seed=1),
                            lambda: (F.dropout(x4, 0.1, seed=1),
                                     F.dropout_backward(g4, 0.1, seed=1))),
        "adamw update": (f"({nparam},)", adamw, None),
    }
    if torch is None:
        return {k: v + (None, None) for k, v in cases.items()}
    nn = torch.nn.functional

    def t(a, grad=False):
        return torch.from_numpy(a).requires_grad_(grad)

    tx, tx4, tW, tb = t(x, True), t(x4, True), t(W, True), t(b, True)
    tg4, tgC = t(g4), t(gC)
    tlnw, tlnb = t(lnw, True), t(lnb, True)
    tatt = t(att, True)
    tq, tk, tv, tgo = t(q, True), t(k, True), t(v, True), t(go)
    tids, temb, tgemb = torch.from_numpy(ids), t(emb, True), t(gemb)
    tlogits, ttargets = t(logits, True), torch.from_numpy(targets)
    tres = t(gC, True)
    tp = torch.nn.Parameter(torch.from_numpy(p.copy()))
    tp.grad = torch.from_numpy(grad)
    opt = torch.optim.AdamW([tp], lr=1e-4)

    def fb(fn, leaves, g=None):
        def run():
            for leaf in leaves:
                leaf.grad = None
            out = fn()
            out.backward(g) if g is not None else out.backward()
        return run

    def nograd(fn):
        def run():
            with torch.no_grad():
                fn()
        return run

    tcases = {
        "linear": (lambda: nn.linear(tx, tW, tb), fb(lambda: nn.linear(tx, tW, tb), [tx, tW, tb], tg4)),
        "linear_gelu (fused)": (lambda: nn.gelu(nn.linear(tx, tW, tb), approximate="tanh"),
                                fb(lambda: nn.gelu(nn.linear(tx, tW, tb), approximate="tanh"),
                                   [tx, tW, tb], tg4)),
        "gelu (tanh)": (lambda: nn.gelu(tx4, approximate="tanh"),
                        fb(lambda: nn.gelu(tx4, approximate="tanh"), [tx4], tg4)),
        "relu": (lambda: nn.relu(tx4), fb(lambda: nn.relu(tx4), [tx4], tg4)),
        "softmax": (lambda: torch.softmax(tatt, -1),
                    fb(lambda: torch.softmax(tatt, -1), [tatt], torch.from_numpy(att))),
        "layernorm": (lambda: nn.layer_norm(tx, (C,), tlnw, tlnb),
                      fb(lambda: nn.layer_norm(tx, (C,), tlnw, tlnb), [tx, tlnw, tlnb], tgC)),
        "rmsnorm": (lambda: nn.rms_norm(tx, (C,), tlnw),
                    fb(lambda: nn.rms_norm(tx, (C,), tlnw), [tx, tlnw], tgC)),
        "softcap (logits)": (lambda: 30.0 * torch.tanh(tlogits / 30.0),
                             fb(lambda: 30.0 * torch.tanh(tlogits / 30.0), [tlogits],
                                tlogits.detach())),
        "layernorm_residual (fused)": (
            lambda: nn.layer_norm(tx + tres, (C,), tlnw, tlnb),
            fb(lambda: nn.layer_norm(tx + tres, (C,), tlnw, tlnb), [tx, tres, tlnw, tlnb], tgC)),
        "embedding": (lambda: nn.embedding(tids, temb),
                      fb(lambda: nn.embedding(tids, temb), [temb], tgemb)),
        "cross_entropy": (lambda: nn.cross_entropy(tlogits, ttargets),
                          fb(lambda: nn.cross_entropy(tlogits, ttargets), [tlogits])),
        "attention (causal)": (
            lambda: nn.scaled_dot_product_attention(tq, tk, tv, is_causal=True),
            fb(lambda: nn.scaled_dot_product_attention(tq, tk, tv, is_causal=True),
               [tq, tk, tv], tgo)),
        "dropout (p=0.1)": (lambda: nn.dropout(tx4, 0.1, training=True),
                            fb(lambda: nn.dropout(tx4, 0.1, training=True), [tx4], tg4)),
        "adamw update": (opt.step, None),
    }
    return {k: v + (nograd(tcases[k][0]), tcases[k][1]) for k, v in cases.items()}


def _rms_fb(F, g, x, w):
    _, rstd = F.rms_norm(x, w, return_stats=True)
    return F.rms_norm_backward(g, x, w, rstd=rstd)


def _ln_fb(F, g, x, w, b):
    _, mean, rstd = F.layer_norm(x, w, b, return_stats=True)
    return F.layer_norm_backward(g, x, w, b, mean=mean, rstd=rstd)


def _lnr_fb(F, g, x, w, b):
    _, s, mean, rstd = F.layer_norm_residual(x, g, w, b, return_stats=True)
    return F.layer_norm_residual_backward(g, s, w, b, mean=mean, rstd=rstd)


def _att_fb(F, g, q, k, v):
    out, lse = F.scaled_dot_product_attention(q, k, v, is_causal=True, return_lse=True)
    return F.scaled_dot_product_attention_backward(g, q, k, v, is_causal=True, out=out, lse=lse)


def run(threads=(1, 2), dtype=np.float32, cfg=None, names=None, opts=None, quiet=False):
    """Time every layer case at each thread count; returns the records."""
    opts = opts or {}
    torch = try_torch()
    out = []
    for t in threads:
        set_threads(t)
        cases = _cases(cfg or GPT, dtype, torch)
        for name, (shape, tcf, tcfb, tf, tfb) in cases.items():
            if names and name not in names:
                continue
            rec = {"bench": "layer", "layer": name, "shape": shape, "threads": t,
                   "dtype": np.dtype(dtype).name}
            for mode, a, b in (("fwd", tcf, tf), ("fwdbwd", tcfb, tfb)):
                if a is None:
                    continue
                fns = {"tc": a} if b is None else {"tc": a, "torch": b}
                for k, (med, best) in paired_times(fns, opts).items():
                    rec[f"{k}_{mode}_s"], rec[f"{k}_{mode}_best_s"] = med, best
                if b is not None:
                    rec[f"speedup_{mode}"] = round(rec[f"torch_{mode}_s"] / rec[f"tc_{mode}_s"], 3)
                    rec[f"speedup_{mode}_best"] = round(
                        rec[f"torch_{mode}_best_s"] / rec[f"tc_{mode}_best_s"], 3)
            out.append(emit(rec, quiet=quiet))
    return out


def table(records):
    """Markdown table of layer records (times in ms)."""
    def ms(r, k):
        return f"{r[k] * 1e3:.3f}" if k in r else "-"

    def sp(r, k):
        return f"{r[k]:.2f} ({r[k + '_best']:.2f})" if k in r else "-"

    lines = ["| layer | shape | threads | fwd ms (tc / torch) | fwd speedup (best) "
             "| fwd+bwd ms (tc / torch) | fwd+bwd speedup (best) |", "|---|---|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| {r['layer']} | {r['shape']} | {r['threads']} "
                     f"| {ms(r, 'tc_fwd_s')} / {ms(r, 'torch_fwd_s')} | {sp(r, 'speedup_fwd')} "
                     f"| {ms(r, 'tc_fwdbwd_s')} / {ms(r, 'torch_fwdbwd_s')} "
                     f"| {sp(r, 'speedup_fwdbwd')} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--quick", action="store_true", help="fewer repeats")
    a = p.parse_args(argv)
    opts = {"repeats": 3, "min_time": 0.02} if a.quick else {}
    print(table(run(a.threads, opts=opts)))


if __name__ == "__main__":
    main()
