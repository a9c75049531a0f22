"""Heap allocations per step of the whole-model fast paths, counted by an LD_PRELOAD shim
(benchmarks/malloc_count.c) around glibc's malloc family, next to transformer_c's own
scratch counter (scratch()).

python -m benchmarks.allocs [--threads 1 2] [--steps 10] [--cases muon_step ...]

Builds the shim with the C compiler (cc), reruns itself with LD_PRELOAD set, and prints one
JSON line per (case, threads): calls per step of malloc/calloc/realloc/aligned_alloc/
posix_memalign/memalign in total (Python's own small objects included: the bindings build
a tuple of arrays per step) and of at least 16 KiB, and the scratch workspace's count.
"""
import argparse
import ctypes
import json
import os
import subprocess
import sys
import sysconfig
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def build_shim(out_dir):
    so = os.path.join(out_dir, "malloc_count.so")
    cc = sysconfig.get_config_var("CC") or "cc"
    subprocess.run(cc.split() + ["-O2", "-shared", "-fPIC", os.path.join(HERE, "malloc_count.c"),
                                 "-o", so, "-ldl"], check=True)
    return so


def cases():
    import numpy as np

    from transformer_c.generate import GPTModel
    from transformer_c.nn import GPT, EncoderDecoder, EncoderDecoderConfig, GPTConfig

    cfg = GPTConfig(n_layer=4, n_head=4, n_embd=128, vocab_size=65, block_size=64)
    gpt = GPT.create(cfg, np.random.default_rng(0))
    r = np.random.default_rng(1)
    x, y = r.integers(0, 65, (12, 64)), r.integers(0, 65, (12, 64))
    yield "gpt_small_loss_and_grads", lambda: gpt.loss_and_grads(x, y)

    ecfg = EncoderDecoderConfig(src_vocab_size=65, tgt_vocab_size=65, block_size=64,
                                n_encoder_layer=2, n_decoder_layer=2, n_head=4, n_embd=128,
                                dropout=0.0)
    ed = EncoderDecoder.create(ecfg, np.random.default_rng(0))
    src, tin, tout = (r.integers(1, 65, (8, 64)) for _ in range(3))
    yield "encdec_loss_and_grads", lambda: ed.loss_and_grads(src, tin, tout)

    dec = GPTModel(GPT.create(cfg, np.random.default_rng(0), training=False))
    state, _ = dec.start([[1, 2, 3]] * 4, max_new_tokens=60)
    tok = np.array([5, 6, 7, 8])
    yield "gpt_kv_decode_step", lambda: dec.step(state, tok)

    from transformer_c.functional import muon_update_

    p = gpt.flat_parameters.copy()
    g = r.standard_normal(p.shape).astype(p.dtype) * 1e-3
    buf, table = np.zeros_like(p), gpt.muon_matrices()
    yield "muon_step", lambda: muon_update_(p, g, buf, table)


def child(threads, steps, only=None):
    import transformer_c as tc
    from transformer_c import _C

    scratch = getattr(_C, "scratch_alloc_count", lambda: 0)  # (older builds: no counter)
    lib = ctypes.CDLL(None)
    lib.malloc_count_enable.argtypes = [ctypes.c_int]
    buf = (ctypes.c_ulonglong * 2)()
    for t in threads:
        tc.set_num_threads(t)
        for name, fn in cases():
            if only and name not in only:
                continue
            fn()
            fn()
            s0 = scratch()
            lib.malloc_count_get(buf)
            a0, b0 = buf[0], buf[1]
            lib.malloc_count_enable(1)
            for _ in range(steps):
                fn()
            lib.malloc_count_enable(0)
            lib.malloc_count_get(buf)
            print(json.dumps({"bench": "allocs", "case": name, "threads": t, "steps": steps,
                              "allocs_per_step": round((buf[0] - a0) / steps, 1),
                              "allocs_ge_16k_per_step": round((buf[1] - b0) / steps, 1),
                              "scratch_allocs_per_step": (scratch() - s0) / steps}),
                  flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--cases", nargs="+", default=None,
                   help="only these cases (gpt_small_loss_and_grads encdec_loss_and_grads "
                        "gpt_kv_decode_step muon_step)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        child(a.threads, a.steps, a.cases)
        return
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, LD_PRELOAD=build_shim(d))
        subprocess.run([sys.executable, "-m", "benchmarks.allocs", "--child", "--steps",
                        str(a.steps), "--threads", *map(str, a.threads),
                        *(["--cases", *a.cases] if a.cases else [])], env=env, check=True)


if __name__ == "__main__":
    main()
