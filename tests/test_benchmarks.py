"""Smoke test of the benchmark suite: one tiny case of every benchmark function, so the
suite cannot rot. No timing is asserted (timings never go in the test suite)."""
import json
import math
import os

import numpy as np
import pytest

from benchmarks import __main__ as bench_main
from benchmarks import common, gemm, layers, peak
import transformer_c as tc
from transformer_c import functional as F

FAST = {"repeats": 1, "min_time": 0.0, "warmup": 0, "settle": 0.0}


def test_gemm_case_records_every_library():
    recs = gemm.run([1], np.float32, [(8, 5, 7, "NN"), (8, 5, 7, "TN"), (6, 9, 4, "NT")],
                    FAST, quiet=True)
    assert len(recs) == 3
    for r in recs:
        assert r["tc_s"] > 0 and r["numpy_s"] > 0 and r["ratio_vs_numpy"] > 0
    assert "| 8 x 5 x 7 | TN | 1 |" in gemm.table(recs)
    assert len(gemm.shapes()) > len(gemm.shapes(quick=True)) > 0


def test_every_layer_case_runs_on_tiny_shapes():
    recs = layers.run([1], np.float32, cfg=layers.TINY, opts=FAST, quiet=True)
    names = {r["layer"] for r in recs}
    for want in ("linear", "gelu (tanh)", "relu", "softmax", "layernorm", "embedding",
                 "cross_entropy", "attention (causal)", "dropout (p=0.1)", "adamw update",
                 "linear_gelu (fused)", "layernorm_residual (fused)"):
        assert want in names
    for r in recs:
        assert r["tc_fwd_s"] > 0
    assert "adamw update" in layers.table(recs)


def test_peak_flops_record():
    (r,) = peak.run([1], iters=1000, repeats=1, quiet=True)
    assert r["peak_gflops"] >= 0 and r["threads"] == 1
    g = tc._C.gemm_kernel_name()  # the GEMM's own choice (no NEON bench loop: portable)
    assert r["kernel"] == (g if g in ("avx512", "avx2+fma") else "generic")
    assert r["chains"] in peak.CHAINS
    assert r["peak_gflops"] == max(r["gflops_by_chains"].values())


def test_peak_flops_rows_for_every_kernel():
    # one row per loop this CPU has, each naming the loop that ran, the override put back
    before = tc._C.gemm_kernel_name()
    recs = peak.run([1], peak.kernels(), iters=2000, repeats=1, quiet=True)
    assert [r["kernel"] for r in recs] == peak.kernels()
    for r in recs:
        assert all(math.isfinite(g) and g > 0 for g in r["gflops_by_chains"].values())
    assert tc._C.gemm_kernel_name() == before
    assert f"| {recs[-1]['kernel']} | 1 |" in peak.table(recs)


def test_entry_point_writes_json_lines(tmp_path, capsys):
    out = tmp_path / "bench.jsonl"
    assert bench_main.main(["--quick", "--only", "model", "--threads", "1", "--quiet",
                            "--out", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines[0]["bench"] == "env"
    assert any(rec["bench"] == "gpt_loss_and_grads" for rec in lines)
    assert "GPT training step" in capsys.readouterr().out
    common.set_output(None)


def test_blas_thread_control_is_available():
    # numpy's OpenBLAS must follow --threads, or the GEMM comparison is 1 vs 2 threads
    if not common._openblas_libs():
        pytest.skip("numpy is not linked against OpenBLAS here")
    try:
        assert common.set_blas_threads(1)
    finally:
        common.set_blas_threads(2)


def test_entry_point_rejects_bad_threads():
    with pytest.raises(SystemExit):
        bench_main.main(["--threads", "0"])


def test_ab_compares_two_builds_of_the_step():
    # the same tree loaded twice under two names: identical gradients, both builds timed
    import pathlib

    from benchmarks import ab

    import transformer_c

    # the tree holding the package under test (the checkout, or site-packages for a wheel)
    root = str(pathlib.Path(transformer_c.__file__).resolve().parents[1])
    a, b = ab.load(root, "tc_ab_test_a"), ab.load(root, "tc_ab_test_b")
    assert a is not b and a.nn.GPT is not b.nn.GPT
    ma, mb, ba, bb, same, diff, cpu = ab.compare(a, b, "small", 1, repeats=1, min_time=0.0)
    assert same and diff == 0 and ma > 0 and mb > 0 and ba <= ma and bb <= mb
    assert cpu["A"] > 0 and cpu["B"] > 0
    # the Muon update alone (--step muon): the same build moves the parameters identically
    ma, mb, ba, bb, same, diff, cpu = ab.compare(a, b, "small", 1, repeats=1, min_time=0.0,
                                                 kind="muon")
    assert same and diff == 0 and ma > 0 and mb > 0 and cpu["A"] > 0
    # the encoder-decoder's step (--model encdec)
    ma, mb, ba, bb, same, diff, cpu = ab.compare(a, b, "small", 1, repeats=1, min_time=0.0,
                                                 kind="encdec")
    assert same and diff == 0 and ma > 0 and mb > 0 and cpu["B"] > 0
    with pytest.raises(SystemExit):
        ab.main([root, root, "--model", "encdec", "--configs", "medium"])  # a GPT config


def test_fingerprint_detects_a_changed_number(tmp_path):
    # the refactors' bitwise check: the same build gives identical fingerprints, and a
    # single changed bit is reported
    import pathlib

    from benchmarks import fingerprint

    import transformer_c

    # the tree holding the package under test (the checkout, or site-packages for a wheel)
    root = str(pathlib.Path(transformer_c.__file__).resolve().parents[1])
    tc = fingerprint.load(root, "tc_fp_test")
    out = {}
    fingerprint.fingerprint_gpt(tc, out, "k", next(fingerprint.gpt_cases())[1], np.float64, 0.1)
    np.savez(tmp_path / "a.npz", **out)
    np.savez(tmp_path / "b.npz", **out)
    assert fingerprint.compare(tmp_path / "a.npz", tmp_path / "b.npz") == ([], len(out), 0)
    g = out["k/grads"].copy()
    g.view(np.uint64)[3] ^= 1
    np.savez(tmp_path / "c.npz", **dict(out, **{"k/grads": g}))
    lines, _, _ = fingerprint.compare(tmp_path / "a.npz", tmp_path / "c.npz")
    assert lines == ["k/grads: differs (float64(%d,) vs float64(%d,))" % (g.size, g.size)]


def test_fingerprint_covers_the_block_options():
    """This build's C paths run the mixture of experts, block-sparse attention and the
    modern block options (RMS norms, the gated MLP, QK-norm, grouped kv heads), so the
    bitwise fingerprint records them (and those cases run: fast and module path, decoding)."""
    import pathlib

    from benchmarks import fingerprint

    import transformer_c

    root = str(pathlib.Path(transformer_c.__file__).resolve().parents[1])
    tc = fingerprint.load(root, "tc_fp_blocks")
    gpt, encdec = fingerprint.block_cases(tc)
    assert [n for n, _ in gpt] == ["gpt-moe-k1", "gpt-moe-k2-post", "gpt-modern-qk-rope",
                                   "gpt-modern-mqa-post"]
    assert [n for n, _ in encdec] == ["encdec-moe-sparse", "encdec-modern-qk",
                                      "encdec-modern-mqa-post"]
    out = {}
    fingerprint.fingerprint_gpt(tc, out, "g", gpt[1][1], np.float64, 0.0)
    fingerprint.fingerprint_encdec(tc, out, "e", encdec[0][1], np.float32, 0.0)
    fingerprint.fingerprint_encdec(tc, out, "m", encdec[2][1], np.float64, 0.0)
    np.testing.assert_allclose(out["m/loss"], out["m/loss_modules"], rtol=1e-12)
    assert out["m/greedy"].size and out["m/beam"].size
    np.testing.assert_allclose(out["g/loss"], out["g/loss_modules"], rtol=1e-12)
    np.testing.assert_allclose(out["g/logits"], out["g/logits_modules"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.sort(out["g/grads"]), np.sort(out["g/grads_modules"]),
                               rtol=1e-9, atol=1e-12)  # (_leaves orders the tree by name)
    assert out["g/greedy"].size and out["e/beam"].size and np.isfinite(out["e/loss"])


def test_moe_case_records_dense_and_moe():
    from benchmarks import moe

    recs = moe.run([1], np.float64, cfg=moe.TINY, experts=(2, 3), opts=FAST, quiet=True)
    assert [(r["experts"], r["top_k"]) for r in recs] == [(2, 1), (2, 2), (3, 1), (3, 2)]
    for r in recs:
        assert r["dense_s"] > 0 and r["moe_s"] > 0 and r["per_flop_ratio"] > 0
        assert r["kept"] + r["dropped"] == 16 * r["top_k"]
    assert "| 1 | 3 | 2 |" in moe.table(recs)
    g = moe.gpt_run(1, B=2, cfg=dict(vocab_size=11, block_size=8, n_layer=1, n_head=2,
                                     n_embd=8), opts=FAST, quiet=True)
    assert g["moe_fast_ms"] > 0 and g["moe_module_ms"] > 0 and g["dense_fast_ms"] > 0
    assert g["fast_speedup"] > 0 and g["ffn"] == "moe" and g["B"] == 2 and g["T"] == 8
    assert "| 1 |" in moe.gpt_table([g])


def test_sparse_attention_benchmark_runs_on_tiny_shapes():
    from benchmarks import sparse_attention as sa

    recs = sa.run((64, 256), threads=1, opts=FAST, memory=False, quiet=True)
    assert [r["T"] for r in recs] == [64, 256]
    for r in recs:
        assert r["dense_s"] > 0 and r["sparse_s"] > 0
        assert r["keys_per_query_sparse"] < r["keys_per_query_dense"] == (r["T"] + 1) / 2
    # keys_per_query agrees with the element mask it summarises
    sp, T = sa.pattern(256), 256
    m = F.sparse_mask(sp, T) & np.tri(T, dtype=bool)
    assert sa.keys_per_query(sp, T) == m.sum() / T
    assert "growth exponent" in sa.table(recs)
    assert sa.child_memory(64, True) >= 0
    g = sa.gpt_run(B=1, T=64, opts=FAST, quiet=True,
                   cfg=dict(n_layer=1, n_head=2, n_embd=16, vocab_size=11, block_size=64))
    assert g["dense_ms"] > 0 and g["sparse_ms"] > 0 and g["per_flop_ratio"] > 0
    # --before: another build (here this one, loaded a second time) timed in the same rounds
    import transformer_c

    root = os.path.dirname(os.path.dirname(os.path.abspath(transformer_c.__file__)))
    g = sa.gpt_run(B=1, T=64, opts=FAST, quiet=True, before=root,
                   cfg=dict(n_layer=1, n_head=2, n_embd=16, vocab_size=11, block_size=64))
    assert g["before_dense_ms"] > 0 and g["before_sparse_ms"] > 0
    assert g["before_per_flop_ratio"] > 0 and g["before"] == root


def test_platforms_times_every_kernel_variant_and_restores_the_switches():
    from benchmarks import platforms
    from transformer_c import _C

    import transformer_c as tc

    before = (tc.get_num_threads(), _C.cpu_portable())
    recs = platforms.run("small", threads=(1,), repeats=1, min_time=0.0, quiet=True)
    want = ["avx2+fma", "generic"] if _C.cpu_has_avx2() else ["generic"]
    want += ["avx512"] if _C.cpu_has_avx512() else []
    assert [r["kernels"] for r in recs] == want
    assert recs[0]["speed"] == 1.0 and all(r["ms"] > 0 and r["threads"] == 1 for r in recs)
    assert (tc.get_num_threads(), _C.cpu_portable()) == before
    assert "| small | 1 | generic |" in platforms.table(recs)


def test_gpt_blocks_records_every_variant(monkeypatch):
    from benchmarks import gpt, gpt_blocks

    monkeypatch.setitem(gpt.CONFIGS, "tiny", (dict(n_layer=1, n_head=2, n_embd=8,
                                                   vocab_size=11, block_size=4), 2, 4))
    recs = gpt_blocks.run(["tiny"], [1], 1)
    assert [r["variant"] for r in recs] == list(gpt_blocks.VARIANTS)
    for r in recs:
        assert r["ms"] > 0 and r["gflops"] >= 0 and r["time_per_flop_vs_layernorm"] > 0
    assert recs[0]["ratio_vs_layernorm"] == 1.0


def test_contention_rows_record_both_conditions():
    from benchmarks import contention

    recs = contention.run(names=["gemm 1x1536x384", "layer (1x64, C=128) fwd+bwd: softmax"],
                          quick=True, repeats=1, quiet=True, unguarded=True)
    assert [r["row"] for r in recs] == ["gemm 1x1536x384 (a decode product)",
                                        "layer (1x64, C=128) fwd+bwd: softmax"]
    for r in recs:
        for k in ("idle_1t_ms", "idle_2t_ms", "busy_1t_ms", "busy_2t_ms", "idle_2gt_ms"):
            assert r[k] > 0
        assert r["busy_ratio"] == round(r["busy_2t_ms"] / r["busy_1t_ms"], 3)
    assert "| busy 2t/1t unguarded |" in contention.table(recs)
    # every row builds (the model rows included) and the spinner is stopped and reaped
    assert len(contention.rows(quick=True)) < len(contention.rows())
    with contention.BusyCore() as busy:
        busy.set(True)
        assert busy.proc.poll() is None
    assert busy.proc.poll() is not None


def test_gpt_step_flops_is_the_hand_count():
    # the 6x384 step (B 4, T 256, V 65): 6 x the matrix-multiply weights (the blocks' four
    # products and the tied head, counted from the model's own arrays) x tokens, plus the
    # causal attention's 6 T C per token and layer (scores and weighted sum over T/2 keys
    # on average, forward 2 T C, backward twice that)
    from benchmarks import gpt
    from transformer_c.nn import GPT, GPTConfig

    kw, B, T = gpt.CONFIGS["medium"]
    cfg = GPTConfig(**kw)
    p = GPT.create(cfg, np.random.default_rng(0)).parameters
    weights = p["wte"]["weight"].size + sum(
        blk[a][b]["weight"].size for blk in p["h"]
        for a, b in (("attn", "c_attn"), ("attn", "c_proj"), ("mlp", "c_fc"), ("mlp", "c_proj")))
    tokens, L, C = B * T, cfg.n_layer, cfg.n_embd
    assert gpt.step_flops(cfg, B, T) == (6 * weights + 6 * L * T * C) * tokens == 69_007_048_704


def test_gpt_records_mfu_against_the_given_peak(monkeypatch):
    from benchmarks import gpt

    monkeypatch.setitem(gpt.CONFIGS, "tiny", (dict(n_layer=1, n_head=2, n_embd=8,
                                                   vocab_size=11, block_size=4), 2, 4))
    recs = []
    monkeypatch.setattr(gpt, "emit", recs.append)
    gpt.run(["tiny"], [1, 2], 1, peaks={1: {"peak_gflops": 50.0, "kernel": "k"}})
    with_peak, without = recs
    flops = gpt.step_flops(gpt.GPTConfig(**gpt.CONFIGS["tiny"][0]), 2, 4)
    assert with_peak["gflop_per_step"] == round(flops / 1e9, 3)
    assert (with_peak["peak_gflops"], with_peak["peak_kernel"]) == (50.0, "k")
    keys = ["tc"] + (["torch"] if "torch_ms" in with_peak else [])
    for k in keys:
        assert with_peak[f"{k}_mfu"] == round(flops / (with_peak[f"{k}_ms"] / 1e3) / 50e9, 4)
        assert with_peak[f"{k}_mfu_best"] == round(
            flops / (with_peak[f"{k}_best_ms"] / 1e3) / 50e9, 4)
    assert not any("mfu" in key or "peak_g" in key for key in without)
