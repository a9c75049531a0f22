"""Valid calls, the starting points of the near-valid fuzz cases.

FUNCTIONAL[name](r, dt) -> (args, kwargs): a correct call of transformer_c.functional.<name>
at a small size, float dtype dt. A public function missing here is still fuzzed, with junk
only (tools.fuzz reports which ones lack a valid call). workload(): runs every valid
functional call and the model paths (GPT and EncoderDecoder training and KV-cached decoding,
the BPE tokenizer), so that recording it yields valid argument tuples for the raw _C
functions (see cases.record_raw).
"""
import numpy as np

B, T, C, NH, HS, V = 2, 3, 8, 2, 4, 11


def _a(r, dt, *shape):
    return r.standard_normal(shape).astype(dt)


def _ids(r, *shape, high=V):
    return r.integers(0, high, size=shape).astype(np.int64)


def _opt(r, dt):
    return [_a(r, dt, 6), _a(r, dt, 6), np.zeros(6, dt), np.zeros(6, dt)]


FUNCTIONAL = {
    "adam_update_": lambda r, dt: (_opt(r, dt), {"step": 1}),
    "adamw_update_": lambda r, dt: (_opt(r, dt), {"step": 2, "lr": 0.01}),
    "sgd_update_": lambda r, dt: ([_a(r, dt, 6), _a(r, dt, 6), np.zeros(6, dt)],
                                  {"lr": 0.1, "momentum": 0.9, "first_step": True}),
    "add_positions": lambda r, dt: ([_a(r, dt, B, T, C)], {"offset": 1}),
    "add_positions_backward": lambda r, dt: ([_a(r, dt, B, T, C)], {}),
    "attention_decode": lambda r, dt: ([_a(r, dt, B, NH, 1, HS), _a(r, dt, B, NH, 1, HS),
                                        _a(r, dt, B, NH, 1, HS), np.zeros((B, NH, 5, HS), dt),
                                        np.zeros((B, NH, 5, HS), dt), 2], {}),
    "cross_entropy": lambda r, dt: ([_a(r, dt, B * T, V), _ids(r, B * T)], {"label_smoothing": 0.1}),
    "cross_entropy_backward": lambda r, dt: ([_a(r, dt, B * T, V), _ids(r, B * T)], {"ignore_index": 3}),
    "dropout": lambda r, dt: ([_a(r, dt, B, T, C), 0.3], {"seed": 5}),
    "dropout_backward": lambda r, dt: ([_a(r, dt, B, T, C), 0.3], {"seed": 5}),
    "dropout_mask": lambda r, dt: ([(B, T), 0.5], {"seed": 1, "dtype": dt}),
    "embedding": lambda r, dt: ([_ids(r, B, T), _a(r, dt, V, C)], {}),
    "embedding_backward": lambda r, dt: ([_a(r, dt, B, T, C), _ids(r, B, T), V], {}),
    "gelu": lambda r, dt: ([_a(r, dt, B, T, C)], {"approximate": "tanh"}),
    "gelu_backward": lambda r, dt: ([_a(r, dt, B, T, C), _a(r, dt, B, T, C)], {}),
    "gemm": lambda r, dt: ([_a(r, dt, 5, 4), _a(r, dt, 3, 4)], {"trans_b": True}),
    "global_grad_norm": lambda r, dt: ([[_a(r, dt, 3), _a(r, dt, 2, 2)]], {}),
    "layer_norm": lambda r, dt: ([_a(r, dt, B, T, C), _a(r, dt, C), _a(r, dt, C)], {"return_stats": True}),
    "layer_norm_backward": lambda r, dt: ([_a(r, dt, B, T, C), _a(r, dt, B, T, C), _a(r, dt, C), _a(r, dt, C)], {}),
    "layer_norm_residual": lambda r, dt: ([_a(r, dt, B, T, C), _a(r, dt, B, T, C), _a(r, dt, C), _a(r, dt, C)], {}),
    "layer_norm_residual_backward": lambda r, dt: ([_a(r, dt, B, T, C), _a(r, dt, B, T, C), _a(r, dt, C), _a(r, dt, C)], {}),
    "linear": lambda r, dt: ([_a(r, dt, B, T, C), _a(r, dt, 5, C), _a(r, dt, 5)], {}),
    "linear_backward": lambda r, dt: ([_a(r, dt, B, T, 5), _a(r, dt, B, T, C), _a(r, dt, 5, C), _a(r, dt, 5)], {}),
    "linear_gelu": lambda r, dt: ([_a(r, dt, B, T, C), _a(r, dt, 5, C), _a(r, dt, 5)], {"return_pre": True}),
    "linear_gelu_backward": lambda r, dt: ([_a(r, dt, B, T, 5), _a(r, dt, B, T, C), _a(r, dt, 5, C), _a(r, dt, 5)], {}),
    "log_softmax": lambda r, dt: ([_a(r, dt, B, T, C)], {"axis": 1}),
    "log_softmax_backward": lambda r, dt: ([_a(r, dt, B, T, C), _a(r, dt, B, T, C)], {}),
    "matmul": lambda r, dt: ([_a(r, dt, B, T, C), _a(r, dt, C, 4)], {}),
    "matmul_backward": lambda r, dt: ([_a(r, dt, B, T, 4), _a(r, dt, B, T, C), _a(r, dt, C, 4)], {}),
    "relu": lambda r, dt: ([_a(r, dt, B, T, C)], {}),
    "relu_backward": lambda r, dt: ([_a(r, dt, B, T, C), _a(r, dt, B, T, C)], {}),
    "rope": lambda r, dt: ([_a(r, dt, B, NH, T, HS)], {"offset": 2}),
    "rope_backward": lambda r, dt: ([_a(r, dt, B, NH, T, HS)], {"interleaved": True}),
    "rope_table": lambda r, dt: ([T, HS], {"dtype": dt}),
    "scale_": lambda r, dt: ([_a(r, dt, B, T), 0.5], {}),
    "scaled_dot_product_attention": lambda r, dt: (
        [_a(r, dt, B, NH, T, HS), _a(r, dt, B, NH, 4, HS), _a(r, dt, B, NH, 4, HS)],
        {"key_padding_mask": np.ones((B, 4), bool), "return_lse": True}),
    "scaled_dot_product_attention_backward": lambda r, dt: (
        [_a(r, dt, B, NH, T, HS), _a(r, dt, B, NH, T, HS), _a(r, dt, B, NH, T, HS), _a(r, dt, B, NH, T, HS)],
        {"is_causal": True}),
    "sinusoidal_positions": lambda r, dt: ([T, C], {"dtype": dt}),
    "softmax": lambda r, dt: ([_a(r, dt, B, T, C)], {}),
    "softmax_backward": lambda r, dt: ([_a(r, dt, B, T, C), _a(r, dt, B, T, C)], {}),
}


def tiny_gpt(dtype=np.float32, **over):
    """A GPT small enough for thousands of calls: 2 layers, width 8, vocabulary 11."""
    from transformer_c.nn import GPT, GPTConfig
    cfg = dict(vocab_size=V, block_size=8, n_layer=2, n_head=2, n_embd=C)
    cfg.update(over)
    return GPT.create(GPTConfig(**cfg), np.random.default_rng(0), dtype=dtype)


def tiny_encdec(dtype=np.float32):
    """An EncoderDecoder of the same tiny size (1 + 1 layers)."""
    from transformer_c.nn import EncoderDecoder, EncoderDecoderConfig
    cfg = EncoderDecoderConfig(src_vocab_size=V, tgt_vocab_size=V + 2, block_size=8,
                               n_encoder_layer=1, n_decoder_layer=1, n_head=2, n_embd=C,
                               dropout=0.0)
    return EncoderDecoder.create(cfg, np.random.default_rng(0), dtype=dtype)


TEXT = "the quick brown fox jumps over the lazy dog; the dog sleeps. " * 3


def workload():
    """Every valid call above in both dtypes, then the model and tokenizer paths."""
    from transformer_c import functional as F
    from transformer_c.data import BPETokenizer
    from transformer_c.generate import generate
    r = np.random.default_rng(0)
    for dt in (np.float32, np.float64):
        for name, make in FUNCTIONAL.items():
            args, kwargs = make(r, dt)
            getattr(F, name)(*args, **kwargs)
        for over in ({}, {"position": "rope", "activation": "relu"}):
            gpt = tiny_gpt(dt, **over)
            idx = _ids(r, B, T)
            gpt.forward(idx)
            gpt.loss_and_grads(idx, _ids(r, B, T))
            generate(gpt, [idx[0], idx[1, :2]], max_new_tokens=3)
            generate(gpt, idx, max_new_tokens=2, num_beams=2)
        ed = tiny_encdec(dt)
        src, tgt = _ids(r, B, 4), _ids(r, B, T, high=V + 2)
        ed.forward(src, tgt)
        ed.loss_and_grads(src, tgt, tgt, src_lengths=np.array([4, 2]))
        generate(ed, src, max_new_tokens=2)
        generate(ed, src, max_new_tokens=2, num_beams=2)
    tok = BPETokenizer.train(TEXT, vocab_size=300)
    tok.decode(tok.encode(TEXT[:40]))
