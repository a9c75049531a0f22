"""Kernel scratch (csrc/core/workspace.c): after warm-up, the whole-model fast paths allocate
nothing per step. _C.scratch_alloc_count() counts every allocation the per-thread scratch
workspace makes (GEMM packing, attention tiles, fused kernels' intermediates)."""
import threading

import numpy as np
import pytest

import transformer_c as tc
from transformer_c import _C
from transformer_c.generate import GPTModel
from transformer_c.nn import GPT, GPTConfig, EncoderDecoder, EncoderDecoderConfig


def steps_allocate(fn, warmup=2, n=4):
    """Scratch allocations made by n calls of fn after `warmup` calls."""
    for _ in range(warmup):
        fn()
    before = _C.scratch_alloc_count()
    for _ in range(n):
        fn()
    return _C.scratch_alloc_count() - before


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gpt_loss_and_grads_allocates_nothing_after_warmup(threads, dtype):
    cfg = GPTConfig(vocab_size=65, block_size=64, n_layer=2, n_head=4, n_embd=64)
    model = GPT.create(cfg, np.random.default_rng(0), dtype=dtype)
    r = np.random.default_rng(1)
    x, y = r.integers(0, 65, (6, 64)), r.integers(0, 65, (6, 64))
    saved = tc.get_num_threads()
    try:
        tc.set_num_threads(threads)
        assert steps_allocate(lambda: model.loss_and_grads(x, y)) == 0
    finally:
        tc.set_num_threads(saved)


def test_encoder_decoder_loss_and_grads_allocates_nothing_after_warmup():
    cfg = EncoderDecoderConfig(src_vocab_size=40, tgt_vocab_size=50, block_size=32,
                               n_encoder_layer=2, n_decoder_layer=2, n_head=4, n_embd=32,
                               dropout=0.0)
    model = EncoderDecoder.create(cfg, np.random.default_rng(0), dtype=np.float32)
    r = np.random.default_rng(2)
    src = r.integers(1, 40, (4, 29))
    tin, tout = r.integers(1, 50, (4, 32)), r.integers(1, 50, (4, 32))
    lengths = [29, 20, 3, 11]
    assert steps_allocate(lambda: model.loss_and_grads(src, tin, tout,
                                                       src_lengths=lengths)) == 0


@pytest.mark.parametrize("threads", [1, 2])
def test_kv_decode_step_allocates_nothing_after_warmup(threads):
    cfg = GPTConfig(vocab_size=65, block_size=64, n_layer=2, n_head=4, n_embd=64)
    gpt = GPT.create(cfg, np.random.default_rng(0), dtype=np.float32, training=False)
    m = GPTModel(gpt)
    saved = tc.get_num_threads()
    try:
        tc.set_num_threads(threads)
        state, _ = m.start([[1, 2, 3, 4, 5], [6, 7, 8]], max_new_tokens=30)
        tokens = iter(range(40))
        n = steps_allocate(lambda: m.step(state, np.array([next(tokens) % 65] * 2)), n=20)
    finally:
        tc.set_num_threads(saved)
    assert n == 0


def test_encoder_decoder_decode_step_allocates_nothing_after_warmup():
    from transformer_c.generate.encdec import EncoderDecoderModel

    cfg = EncoderDecoderConfig(src_vocab_size=40, tgt_vocab_size=50, block_size=32,
                               n_encoder_layer=2, n_decoder_layer=2, n_head=4, n_embd=32,
                               dropout=0.0)
    m = EncoderDecoderModel(EncoderDecoder.create(cfg, np.random.default_rng(0),
                                                  dtype=np.float32))
    state, _ = m.start([[3, 4, 5, 6, 7], [8, 9]], max_new_tokens=25)
    tokens = iter(range(40))
    assert steps_allocate(lambda: m.step(state, np.array([next(tokens) % 50 + 1] * 2)),
                          n=15) == 0


def test_gemm_workspace_grows_then_is_reused():
    """In a fresh thread (empty workspace) the first product allocates its packing
    buffers, the same product again allocates nothing, a larger one grows them once."""
    r = np.random.default_rng(3)
    a, b = r.random((200, 300), np.float32), r.random((300, 400), np.float32)
    big_a, big_b = r.random((700, 900), np.float32), r.random((900, 1100), np.float32)
    counts, outs = [], []

    def work():
        for x, y in ((a, b), (a, b), (a, b), (big_a, big_b), (big_a, big_b), (a, b)):
            before = _C.scratch_alloc_count()
            outs.append(tc.functional.matmul(x, y))
            counts.append(_C.scratch_alloc_count() - before)

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert counts[0] >= 1 and counts[1:3] == [0, 0]
    assert counts[3] >= 1 and counts[4:] == [0, 0]
    for out, (x, y) in zip(outs, [(a, b)] * 3 + [(big_a, big_b)] * 2 + [(a, b)]):
        np.testing.assert_allclose(out, x.astype(np.float64) @ y, rtol=1e-4)


def test_threads_get_their_own_workspace():
    """Python threads calling kernels at once (the GIL is released) each use their own
    buffers: results equal the single-threaded ones; a thread's buffers die with it."""
    r = np.random.default_rng(4)
    pairs = [(r.random((150 + 7 * i, 260), np.float32), r.random((260, 330), np.float32))
             for i in range(4)]
    want = [tc.functional.matmul(a, b) for a, b in pairs]
    got = [None] * len(pairs)

    def work(i):
        for _ in range(20):
            got[i] = tc.functional.matmul(*pairs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(pairs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_scratch_alloc_count_takes_no_arguments():
    assert isinstance(_C.scratch_alloc_count(), int)
    with pytest.raises(TypeError):
        _C.scratch_alloc_count(1)



def test_muon_step_makes_no_large_heap_allocation():
    """The Newton-Schulz scratch (5.9 MB per thread on the 6x384 model) came from malloc on
    every call; it is a cached workspace now. Counted by benchmarks/allocs.py's LD_PRELOAD
    shim around glibc's malloc family (allocations of 16 KiB or more per step, 1 thread:
    with 2 threads libgomp's nested teams make a few of their own)."""
    import json
    import os
    import shutil
    import subprocess
    import sys
    import sysconfig
    if os.environ.get("LD_PRELOAD"):
        pytest.skip("LD_PRELOAD is set (the sanitizer run's ASan runtime): the counting shim "
                    "cannot interpose malloc beside another interposer")
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        pytest.skip(f"no C compiler ({cc}) to build the allocation-counting shim")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-m", "benchmarks.allocs", "--threads", "1",
                          "--steps", "3", "--cases", "muon_step"], cwd=root,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rec = json.loads(out.stdout.strip().splitlines()[-1])
    assert rec["case"] == "muon_step"
    assert rec["allocs_ge_16k_per_step"] == 0, rec


@pytest.mark.parametrize("threads", [1, 2])
def test_muon_step_allocates_nothing_after_warmup(threads):
    # the Newton-Schulz matrices live in each thread's TC_WS_MUON workspace; with 2 threads
    # a model this size spreads whole matrices over the threads (each its own scratch)
    cfg = GPTConfig(vocab_size=65, block_size=64, n_layer=2, n_head=4, n_embd=128)
    model = GPT.create(cfg, np.random.default_rng(0), dtype=np.float32)
    p = model.flat_parameters
    g = np.random.default_rng(1).standard_normal(p.shape).astype(np.float32) * 1e-3
    buf = np.zeros_like(p)
    table = model.muon_matrices()
    saved = tc.get_num_threads()
    try:
        tc.set_num_threads(threads)
        assert steps_allocate(lambda: tc.functional.muon_update_(p, g, buf, table)) == 0
    finally:
        tc.set_num_threads(saved)
