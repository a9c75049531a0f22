"""Bitwise fingerprint of a build: every number a refactor must not change.

For a matrix of small models (GPT: pre/post-LN x learned/sinusoidal/RoPE x every
activation; Encoder; EncoderDecoder: pre/post-LN x learned/sinusoidal x every activation;
and, in builds whose C paths run them, a few block-option models: GPTs with a mixture of
experts, an EncoderDecoder with experts and block-sparse attention, GPTs and
EncoderDecoders with RMS norms, the gated MLP, QK-norm, grouped kv heads), in float32 and
float64, with and without dropout, it records the loss, the flat gradients
of the C fast path and of the module-by-module path (``fast=False``), the logits, and the
greedy, sampled and beam-search tokens (KV-cached decoding), at the thread counts asked for.
Two builds are the same when their fingerprints are bitwise equal:

    python -m benchmarks.fingerprint /tmp/old old.npz --threads 1 2   # PKG_ROOT holds transformer_c/
    python -m benchmarks.fingerprint . new.npz --threads 1 2
    python -m benchmarks.fingerprint --compare old.npz new.npz

(``python -m benchmarks.ab A B --bitwise`` runs the three steps.) Only the models' public
API is used, so the script runs against builds before and after a refactor of the layers.
"""
import argparse
import importlib
import importlib.util
import sys

import numpy as np


def load(root, name="tc_fp"):
    """The package root/transformer_c imported as module ``name`` (with nn, generate)."""
    spec = importlib.util.spec_from_file_location(
        name, f"{root}/transformer_c/__init__.py",
        submodule_search_locations=[f"{root}/transformer_c"])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    for sub in ("nn", "generate", "functional"):
        importlib.import_module(f"{name}.{sub}")
    return module


ACTIVATIONS = ("gelu_tanh", "gelu", "relu")  # builds before transformer_c.options


def activations(tc):
    """Every activation the build knows (its option table), or the original three."""
    options = getattr(tc, "options", None)
    return tuple(options.ACTIVATIONS) if options is not None else ACTIVATIONS


def gpt_cases(acts=ACTIVATIONS):
    for norm in ("pre", "post"):
        for position in ("learned", "sinusoidal", "rope"):
            for act in acts:
                yield f"gpt-{norm}-{position}-{act}", dict(
                    vocab_size=23, block_size=16, n_layer=2, n_head=2, n_embd=16, norm=norm,
                    position=position, activation=act)


def encdec_cases(acts=ACTIVATIONS):
    for norm in ("pre", "post"):
        for position in ("learned", "sinusoidal"):
            for act in acts:
                yield f"encdec-{norm}-{position}-{act}", dict(
                    src_vocab_size=19, tgt_vocab_size=21, block_size=16, n_encoder_layer=2,
                    n_decoder_layer=2, n_head=2, n_embd=16, norm=norm, position=position,
                    activation=act, pad_id=0)


def block_cases(tc):
    """(gpt cases, encdec cases) with block options (ffn="moe", attention="block_sparse";
    norm_type="rmsnorm", qk_norm, n_kv_head, gated), each only when the build's C paths run
    it (c_fields accepts it): none before they did."""
    gpt = dict(vocab_size=23, block_size=16, n_layer=2, n_head=2, n_embd=16, ffn="moe",
               moe_experts=3, moe_capacity=0.8)
    modern = dict(vocab_size=23, block_size=16, n_layer=2, n_head=2, n_embd=16,
                  norm_type="rmsnorm", gated=True, activation="silu")
    ed = dict(src_vocab_size=19, tgt_vocab_size=21, block_size=16, n_encoder_layer=2,
              n_decoder_layer=2, n_head=2, n_embd=16, pad_id=0, ffn="moe", moe_experts=3,
              moe_top_k=2, attention="block_sparse", sparse_block=4, sparse_window=1)
    ed_modern = dict(src_vocab_size=19, tgt_vocab_size=21, block_size=16, n_encoder_layer=2,
                     n_decoder_layer=2, n_head=2, n_embd=16, pad_id=0, norm_type="rmsnorm",
                     gated=True, activation="silu")
    out = []
    for cls, cases in ((tc.nn.GPTConfig, [("gpt-moe-k1", gpt),
                                          ("gpt-moe-k2-post", dict(gpt, moe_top_k=2,
                                                                   norm="post")),
                                          ("gpt-modern-qk-rope", dict(modern, qk_norm=True,
                                                                      position="rope")),
                                          ("gpt-modern-mqa-post", dict(modern, n_kv_head=1,
                                                                       qk_norm=True,
                                                                       norm="post"))]),
                       (tc.nn.EncoderDecoderConfig, [
                           ("encdec-moe-sparse", ed),
                           ("encdec-modern-qk", dict(ed_modern, qk_norm=True)),
                           ("encdec-modern-mqa-post", dict(ed_modern, n_kv_head=1,
                                                           qk_norm=True, norm="post"))])):
        runs = []
        for name, kw in cases:
            try:
                cls(**kw).c_fields()
                runs.append((name, kw))
            except (TypeError, ValueError):
                pass
        out.append(runs)
    return out


def fingerprint_gpt(tc, out, key, kw, dtype, dropout):
    r = np.random.default_rng(7)
    cfg = tc.nn.GPTConfig(**kw, dropout=dropout)
    model = tc.nn.GPT.create(cfg, np.random.default_rng(0), dtype=dtype)
    x = r.integers(0, kw["vocab_size"], (3, 11))
    y = r.integers(0, kw["vocab_size"], (3, 11))
    loss, _ = model.loss_and_grads(x, y, seed=5)
    out[f"{key}/loss"] = np.array(loss)
    out[f"{key}/grads"] = model.flat_grads.copy()
    loss_ref, grads_ref = model.loss_and_grads(x, y, seed=5, fast=False)
    out[f"{key}/loss_modules"] = np.array(loss_ref)
    out[f"{key}/grads_modules"] = np.concatenate(
        [np.ravel(g) for g in _leaves(grads_ref)])
    if dropout:
        return
    out[f"{key}/logits"] = model.forward(x)
    out[f"{key}/logits_modules"] = model.forward(x, fast=False)
    prompts = [x[0, :3], x[1, :5]]
    gen = tc.generate.generate
    out[f"{key}/greedy"] = _tokens(gen(model, prompts, max_new_tokens=6))
    out[f"{key}/sample"] = _tokens(gen(model, prompts, max_new_tokens=6, temperature=0.9,
                                       top_k=5, seed=3))
    out[f"{key}/beam"] = _tokens(gen(model, prompts, max_new_tokens=5, num_beams=3))


def fingerprint_encdec(tc, out, key, kw, dtype, dropout):
    r = np.random.default_rng(9)
    cfg = tc.nn.EncoderDecoderConfig(**kw, dropout=dropout)
    model = tc.nn.EncoderDecoder.create(cfg, np.random.default_rng(0), dtype=dtype)
    B, S, T = 3, 9, 8
    src = r.integers(3, kw["src_vocab_size"], (B, S))
    lengths = np.array([9, 6, 4])
    for b, n in enumerate(lengths):
        src[b, n:] = 0
    tgt_in = r.integers(3, kw["tgt_vocab_size"], (B, T))
    tgt_out = r.integers(3, kw["tgt_vocab_size"], (B, T))
    tgt_out[2, 5:] = 0
    loss, _ = model.loss_and_grads(src, tgt_in, tgt_out, src_lengths=lengths, seed=5)
    out[f"{key}/loss"] = np.array(loss)
    out[f"{key}/grads"] = model.flat_grads.copy()
    loss_ref, grads_ref = model.loss_and_grads(src, tgt_in, tgt_out, src_lengths=lengths,
                                               seed=5, fast=False)
    out[f"{key}/loss_modules"] = np.array(loss_ref)
    out[f"{key}/grads_modules"] = np.concatenate([np.ravel(g) for g in _leaves(grads_ref)])
    if dropout:
        return
    out[f"{key}/logits"] = model.forward(src, tgt_in, src_lengths=lengths)
    out[f"{key}/logits_modules"] = model.forward(src, tgt_in, src_lengths=lengths, fast=False)
    out[f"{key}/memory"] = model.encode(src, src_lengths=lengths)
    sources = [src[0, :9], src[1, :6], src[2, :4]]
    gen = tc.generate.generate
    out[f"{key}/greedy"] = _tokens(gen(model, sources, max_new_tokens=6))
    out[f"{key}/beam"] = _tokens(gen(model, sources, max_new_tokens=5, num_beams=3))


def fingerprint_encoder(tc, out, key, dtype):
    r = np.random.default_rng(11)
    cfg = tc.nn.EncoderConfig(vocab_size=17, block_size=12, n_layer=2, n_head=2, n_embd=16)
    model = tc.nn.Encoder.create(cfg, np.random.default_rng(0), dtype=dtype)
    src = r.integers(1, 17, (2, 7))
    lengths = np.array([7, 4])
    h = model.forward(src, src_lengths=lengths)
    out[f"{key}/hidden"] = h
    grads, _ = model.backward(np.ones_like(h), src, src_lengths=lengths)
    out[f"{key}/grads"] = np.concatenate([np.ravel(g) for g in _leaves(grads)])


def _leaves(tree):
    if isinstance(tree, dict):
        for k in sorted(tree):
            yield from _leaves(tree[k])
    elif isinstance(tree, (list, tuple)):
        for t in tree:
            yield from _leaves(t)
    else:
        yield np.asarray(tree)


def _tokens(result):
    rows = [np.asarray(t, dtype=np.int64) for t in result.tokens]
    width = max((len(t) for t in rows), default=0)
    return np.array([np.pad(t, (0, width - len(t)), constant_values=-1) for t in rows])


def fingerprint(tc, threads):
    out = {}
    acts = activations(tc)
    gpt_blocks, encdec_blocks = block_cases(tc)
    for t in threads:
        tc.set_num_threads(t)
        for dtype in (np.float32, np.float64):
            d = np.dtype(dtype).name
            for name, kw in list(gpt_cases(acts)) + gpt_blocks:
                for p in (0.0, 0.1):
                    fingerprint_gpt(tc, out, f"{t}T/{d}/{name}/p{p}", kw, dtype, p)
            for name, kw in list(encdec_cases(acts)) + encdec_blocks:
                for p in (0.0, 0.1):
                    fingerprint_encdec(tc, out, f"{t}T/{d}/{name}/p{p}", kw, dtype, p)
            fingerprint_encoder(tc, out, f"{t}T/{d}/encoder", dtype)
    return out


def compare(a, b):
    """(lines naming every entry of A that B lacks or that differs bitwise, the number of
    entries compared, the number only in B: new cases such as a new activation)."""
    fa, fb = np.load(a), np.load(b)
    lines = []
    for k in sorted(fa.files):
        if k not in fb.files:
            lines.append(f"{k}: missing in B")
            continue
        x, y = fa[k], fb[k]
        if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
            lines.append(f"{k}: differs ({x.dtype}{x.shape} vs {y.dtype}{y.shape})")
    return lines, len(fa.files), len(set(fb.files) - set(fa.files))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("paths", nargs=2, help="PKG_ROOT OUT.npz, or with --compare A.npz B.npz")
    p.add_argument("--compare", action="store_true")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = p.parse_args(argv)
    if args.compare:
        lines, n, new = compare(*args.paths)
        print("\n".join(lines) if lines else f"bitwise identical: {n} arrays"
              + (f" ({new} new arrays only in B)" if new else ""))
        return 1 if lines else 0
    tc = load(args.paths[0])
    out = fingerprint(tc, args.threads)
    np.savez(args.paths[1], **out)
    print(f"{len(out)} arrays written to {args.paths[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
