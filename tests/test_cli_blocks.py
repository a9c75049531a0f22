"""``train``'s architecture flags (the GPT's block options, issues #16 and #17): every option has
a flag derived from its GPTConfig field, the flag reaches the checkpoint's config, the run
trains, resumes, samples and evaluates with it, presets may carry the options (flags override
them), and bad values or a flag that contradicts a checkpoint are one-line errors (exit 2)
naming the flag."""
import json
import math

import pytest

from transformer_c import checkpoint as ckpt
from transformer_c import cli
from transformer_c.nn import GPTConfig
from transformer_c.nn._config import BlockOptions
from transformer_c.presets import ARCH_DEFAULTS, ARCH_KEYS, MODEL_KEYS, PRESETS

from test_cli import SMALL, corpus, run  # noqa: F401  (model flags; fixture, helper)

# SMALL: 1 layer, 2 heads, 16 wide, block 16
TRAIN = ["train", "--data", "corpus.txt", *SMALL, "--eval-every", "0", "--out", "run",
         "--sample-tokens", "0", "--quiet", "--log-every", "1"]


def _losses(path):
    with open(path / "log.jsonl") as f:
        return [json.loads(line)["loss"] for line in f if json.loads(line)["type"] == "train"]


def test_every_block_option_has_a_train_flag_and_a_preset_key():
    """The flags come from the one declaration: each BlockOptions field (and GPTConfig's
    architecture choices) is an ARCH_KEYS / MODEL_KEYS key with a train flag, whose parsed
    value is the field's type."""
    assert set(BlockOptions.__annotations__) <= set(ARCH_KEYS) <= set(MODEL_KEYS)
    assert {"position", "norm", "activation", "tie_embeddings", "n_inner"} <= set(ARCH_KEYS)
    fields = {f.name: f.default for f in GPTConfig.__dataclass_fields__.values()}
    assert ARCH_DEFAULTS == {k: fields[k] for k in ARCH_KEYS}
    parser = cli.build_parser()
    base = parser.parse_args(["train"])
    assert all(getattr(base, k) is None for k in ARCH_KEYS)   # not given: preset / default
    values = {"position": "rope", "norm": "post", "activation": "relu2",
              "tie_embeddings": False, "n_inner": 24, "attention": "block_sparse",
              "sparse_block": 8, "sparse_window": 3, "sparse_stride": 2, "sparse_global": 1,
              "ffn": "moe", "moe_experts": 3, "moe_top_k": 2, "moe_capacity": 1.5,
              "moe_aux_weight": 0.05, "norm_type": "rmsnorm", "qk_norm": True,
              "logit_softcap": 12.5, "n_kv_head": 1, "gated": True}
    assert set(values) == set(ARCH_KEYS)  # a new option needs a line here (and a test below)
    argv = ["train"]
    for k, v in values.items():
        argv += [cli._flag_value(k, v)] if isinstance(v, bool) else [cli._flag(k), str(v)]
    args = parser.parse_args(argv)
    for k, v in values.items():
        got = getattr(args, k)
        assert got == v and type(got) is type(v), (k, got)
    args = parser.parse_args(["train", "--no-qk-norm", "--tie-embeddings", "--no-gated"])
    assert (args.qk_norm, args.tie_embeddings, args.gated) == (False, True, False)


@pytest.mark.parametrize("flags, want", [
    (["--norm-type", "rmsnorm", "--no-bias"], dict(norm_type="rmsnorm", bias=False)),
    (["--qk-norm"], dict(qk_norm=True)),
    (["--logit-softcap", "5"], dict(logit_softcap=5.0)),
    (["--activation", "relu2"], dict(activation="relu2")),
    (["--gated", "--activation", "silu", "--n-inner", "24"],
     dict(gated=True, activation="silu", n_inner=24)),
    (["--n-kv-head", "1", "--position", "rope"], dict(n_kv_head=1, position="rope")),
    (["--qk-norm", "--n-kv-head", "1"], dict(qk_norm=True, n_kv_head=1)),
    (["--no-tie-embeddings", "--norm", "post"], dict(tie_embeddings=False, norm="post")),
    (["--attention", "block_sparse", "--sparse-block", "4", "--sparse-window", "2",
      "--sparse-stride", "2", "--sparse-global", "1"],
     dict(attention="block_sparse", sparse_block=4, sparse_window=2, sparse_stride=2,
          sparse_global=1)),
    (["--ffn", "moe", "--moe-experts", "3", "--moe-top-k", "2", "--moe-capacity", "1.5",
      "--moe-aux-weight", "0.02"],
     dict(ffn="moe", moe_experts=3, moe_top_k=2, moe_capacity=1.5, moe_aux_weight=0.02)),
])
def test_a_block_flag_trains_resumes_samples_and_evaluates(corpus, capsys, flags, want):
    code, out, err = run(capsys, *TRAIN, "--max-iters", "3", *flags)
    assert code == 0, err
    c = ckpt.load(corpus / "run" / "last")
    cfg = c.model.config
    assert {k: getattr(cfg, k) for k in want} == want
    for k in ARCH_KEYS:   # the rest keep GPTConfig's defaults (the tiny preset sets none)
        if k not in want:
            assert getattr(cfg, k) == ARCH_DEFAULTS[k], k
    assert (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.block_size) == (1, 2, 16, 16)
    losses = _losses(corpus / "run")
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    # resume: the same flags agree with the checkpoint; none at all keeps its config
    code, _, err = run(capsys, "train", "--out", "run", "--resume", "--max-iters", "4",
                       "--quiet", "--sample-tokens", "0", *flags)
    assert code == 0, err
    code, _, err = run(capsys, "train", "--out", "run", "--resume", "--max-iters", "5",
                       "--quiet", "--sample-tokens", "0")
    assert code == 0, err
    c = ckpt.load(corpus / "run" / "last")
    assert c.state["step"] == 5 and c.model.config == cfg
    assert len(_losses(corpus / "run")) == 5
    code, out, err = run(capsys, "sample", "--ckpt", "run", "--prompt", "def ",
                         "--max-new-tokens", "8", "--seed", "1")
    assert code == 0 and out.startswith("def ") and len(out) == 4 + 8 + 1, err
    code, out, err = run(capsys, "eval", "--ckpt", "run", "--data", "corpus.txt")
    assert code == 0 and "perplexity" in out, err


def test_the_training_message_names_the_options_that_differ(corpus, capsys):
    code, out, err = run(capsys, *[a for a in TRAIN if a != "--quiet"], "--max-iters", "3",
                         "--norm-type", "rmsnorm", "--qk-norm", "--logit-softcap", "30")
    assert code == 0, err
    assert "\n  architecture: --norm-type rmsnorm --qk-norm --logit-softcap 30.0\n" in out
    code, out, err = run(capsys, *[a for a in TRAIN if a != "--quiet"], "--max-iters", "3",
                         "--out", "plain")
    assert code == 0 and "architecture:" not in out, err


def test_a_preset_carries_block_options_and_flags_override_it(tmp_path, monkeypatch, capsys):
    """tiny-llama on the embedded corpus: the preset's options reach the checkpoint; an
    explicit flag overrides one of them and leaves the others."""
    monkeypatch.chdir(tmp_path)
    p = PRESETS["tiny-llama"]
    assert (p["norm_type"], p["gated"], p["activation"], p["n_kv_head"]) == ("rmsnorm", True,
                                                                           "silu", 1)
    common = ["--preset", "tiny-llama", "--max-iters", "2", "--eval-every", "0",
              "--block-size", "16", "--batch-size", "2", "--sample-tokens", "0", "--quiet"]
    code, _, err = run(capsys, "train", *common, "--out", "a")
    assert code == 0, err
    cfg = ckpt.load(tmp_path / "a" / "last").model.config
    assert {k: getattr(cfg, k) for k in ARCH_KEYS} == {k: p[k] for k in ARCH_KEYS}
    assert cfg.bias is False and cfg.block_size == 16
    code, _, err = run(capsys, "train", *common, "--out", "b", "--n-kv-head", "2",
                       "--no-gated", "--activation", "gelu")
    assert code == 0, err
    cfg = ckpt.load(tmp_path / "b" / "last").model.config
    want = dict({k: p[k] for k in ARCH_KEYS}, n_kv_head=2, gated=False, activation="gelu")
    assert {k: getattr(cfg, k) for k in ARCH_KEYS} == want


@pytest.mark.parametrize("flags, message", [
    (["--sparse-block", "0"], "--sparse-block: sparse_block must be an integer >= 1, got 0"),
    (["--sparse-stride", "-1"], "--sparse-stride: sparse_stride must be an integer >= 0"),
    (["--ffn", "moe", "--moe-top-k", "3"], "--moe-top-k: moe_top_k must be 1 or 2, got 3"),
    (["--ffn", "moe", "--moe-experts", "1", "--moe-top-k", "2"],
     "--moe-experts, --moe-top-k: moe_experts (1) must be >= moe_top_k (2)"),
    (["--moe-capacity", "0"], "--moe-capacity: moe_capacity must be a finite number > 0"),
    (["--moe-aux-weight", "-0.5"], "--moe-aux-weight: moe_aux_weight must be a finite number"),
    (["--gated", "--ffn", "moe"], "--gated, --ffn: gated=True is the gated MLP: it needs "
     "ffn='mlp'"),
    (["--qk-norm", "--n-kv-head", "3"], "--n-kv-head, --n-head: n_kv_head must be None or a "
     "positive divisor of n_head (2), got 3"),
    (["--n-kv-head", "3"], "--n-kv-head, --n-head: n_kv_head must be None or a positive "
     "divisor of n_head (2), got 3"),
    (["--logit-softcap", "-1"], "--logit-softcap: logit_softcap must be a finite number >= 0"),
    (["--n-inner", "0"], "--n-inner: n_inner must be a positive integer or None, got 0"),
    (["--position", "rope", "--n-embd", "18", "--n-head", "2"],
     "--position, --n-embd, --n-head: position='rope' needs an even head size"),
    # argparse's own checks, one line too
    (["--logit-softcap", "nan"], "train: error: argument --logit-softcap: must be finite"),
    (["--norm-type", "batchnorm"], "train: error: argument --norm-type: invalid choice: "
     "'batchnorm' (choose from 'layernorm', 'rmsnorm')"),
    (["--n-kv-head", "two"], "argument --n-kv-head: expected an integer, got 'two'"),
    (["--moe-capacity", "lots"], "argument --moe-capacity: expected a number, got 'lots'"),
    (["--qk-norm=yes"], "argument --qk-norm/--no-qk-norm: ignored explicit argument 'yes'"),
    (["--n-layer", "0"], "argument --n-layer: must be > 0, got 0"),
])
def test_bad_block_flags_are_one_line_errors_naming_the_flag(corpus, capsys, flags, message):
    with pytest.raises(SystemExit) if "argument --" in message else _no_raise() as e:
        code, out, err = run(capsys, *TRAIN, "--max-iters", "3", *flags)
    if e is not None:  # argparse: SystemExit(2) after printing one line
        code = e.value.code
        out, err = capsys.readouterr()
        assert err.endswith(" (see transformer_c train --help)\n"), err
    else:
        assert err.startswith("transformer_c: error: "), err
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (corpus / "run").exists()


class _no_raise:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _train_blocks(capsys):
    code, _, err = run(capsys, *TRAIN, "--max-iters", "3", "--norm-type", "rmsnorm",
                       "--qk-norm", "--gated", "--activation", "silu")
    assert code == 0, err


@pytest.mark.parametrize("flags, message", [
    (["--no-qk-norm"], "--no-qk-norm (the checkpoint's model has True)"),
    (["--norm-type", "layernorm"], "--norm-type layernorm (the checkpoint's model has rmsnorm)"),
    (["--n-kv-head", "2"], "--n-kv-head 2 (the checkpoint's model has None)"),
    (["--ffn", "moe", "--logit-softcap", "3"],
     "--ffn moe (the checkpoint's model has mlp); --logit-softcap 3.0 (the checkpoint's "
     "model has 0.0)"),
    (["--bias"], "--bias (the checkpoint's model has False)"),
])
def test_resume_and_init_from_refuse_a_contradicting_block_flag(corpus, capsys, flags,
                                                                message):
    _train_blocks(capsys)
    code, _, err = run(capsys, "train", "--out", "run", "--resume", "--max-iters", "5", *flags)
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert "--resume continues run/last" in err
    code, _, err = run(capsys, "train", "--init-from", "run", "--data", "corpus.txt",
                       "--out", "tuned", "--max-iters", "2", "--quiet", *flags)
    assert code == 2 and message.replace("the checkpoint's model", "the model") in err, err
    assert err.count("\n") == 1 and not (corpus / "tuned").exists()
    # agreeing flags fine-tune it, keeping its options
    code, _, err = run(capsys, "train", "--init-from", "run", "--data", "corpus.txt",
                       "--out", "tuned", "--max-iters", "2", "--warmup-iters", "1", "--quiet",
                       "--sample-tokens", "0", "--qk-norm", "--norm-type", "rmsnorm")
    assert code == 0, err
    assert (ckpt.load(corpus / "tuned" / "last").model.config ==
            ckpt.load(corpus / "run" / "last").model.config)


# ---------------------------------------------------------------------------- classify

def test_classify_has_the_bert_block_options():
    from transformer_c.cli_classify import arch_keys
    from transformer_c.nn import BertConfig
    keys = arch_keys()
    assert set(BlockOptions.__annotations__) - {"logit_softcap"} <= set(keys)
    assert "logit_softcap" not in keys and "tie_embeddings" not in keys  # no LM logits
    assert set(keys) <= set(BertConfig.__dataclass_fields__)
    args = cli.build_parser().parse_args(["classify", "train", "--norm-type", "rmsnorm",
                                          "--gated", "--n-kv-head", "1"])
    assert (args.norm_type, args.gated, args.n_kv_head) == ("rmsnorm", True, 1)
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["classify", "train", "--logit-softcap", "3"])
    with pytest.raises(SystemExit):  # Bert's positions: learned, sinusoidal
        cli.build_parser().parse_args(["classify", "train", "--position", "rope"])


@pytest.fixture
def jsonl(tmp_path, monkeypatch):
    from test_train_bert import make_pairs
    monkeypatch.chdir(tmp_path)
    pairs, y = make_pairs(60, seed=2)
    with open("train.jsonl", "w") as f:
        for (a, b), label in zip(pairs, y):
            f.write(json.dumps({"text_a": a, "text_b": b, "label": ["no", "yes"][label]}) + "\n")
    return tmp_path


BERT = ["classify", "train", "--data", "train.jsonl", "--n-layer", "1", "--n-head", "2",
        "--n-embd", "16", "--vocab-size", "300", "--max-len", "24", "--batch-size", "8",
        "--threads", "1", "--eval-every", "0", "--out", "run"]


@pytest.mark.parametrize("flags, want", [
    (["--norm-type", "rmsnorm", "--qk-norm", "--gated", "--activation", "silu",
      "--n-inner", "24"],
     dict(norm_type="rmsnorm", qk_norm=True, gated=True, activation="silu", n_inner=24)),
    (["--n-kv-head", "1", "--position", "sinusoidal", "--norm", "post"],
     dict(n_kv_head=1, position="sinusoidal", norm="post")),
    (["--n-kv-head", "1", "--qk-norm"], dict(n_kv_head=1, qk_norm=True)),
    (["--attention", "block_sparse", "--sparse-block", "4", "--ffn", "moe", "--moe-experts",
      "2", "--moe-top-k", "2"],
     dict(attention="block_sparse", sparse_block=4, ffn="moe", moe_experts=2, moe_top_k=2)),
])
def test_classify_block_flags_train_resume_and_eval(jsonl, capsys, flags, want):
    from transformer_c.nn import Bert
    code, out, err = run(capsys, *BERT, "--max-iters", "2", *flags)
    assert code == 0, err
    assert "\n  architecture: --" in out
    c = ckpt.load(jsonl / "run", prefer="last")
    assert isinstance(c.model, Bert)
    assert {k: getattr(c.model.config, k) for k in want} == want
    code, _, err = run(capsys, "classify", "train", "--out", "run", "--resume", "--max-iters",
                       "3", "--quiet", *flags)
    assert code == 0, err
    c2 = ckpt.load(jsonl / "run", prefer="last")
    assert c2.state["step"] == 3 and c2.model.config == c.model.config
    code, out, err = run(capsys, "classify", "eval", "--ckpt", "run", "--data", "train.jsonl")
    assert code == 0 and json.loads(out.strip().splitlines()[-1])["n"] == 60, err
    # a flag that contradicts the checkpoint: --resume and --init-from refuse it
    key = next(iter(want))
    other = {"norm_type": "layernorm", "n_kv_head": 2, "attention": "dense"}[key]
    bad = [cli._flag(key), str(other)]
    code, _, err = run(capsys, "classify", "train", "--out", "run", "--resume", "--max-iters",
                       "5", *bad)
    assert code == 2 and err.count("\n") == 1, err
    assert f"{cli._flag(key)} {other} (the checkpoint's model has {want[key]})" in err
    code, _, err = run(capsys, *BERT[:-1], "tuned", "--init-from", "run", "--max-iters", "2",
                       *bad)
    assert code == 2 and f"{cli._flag(key)} {other} (the model has {want[key]})" in err, err


@pytest.mark.parametrize("flags, message", [
    (["--gated", "--ffn", "moe"], "--gated, --ffn: gated=True is the gated MLP"),
    (["--sparse-window", "0"], "--sparse-window: sparse_window must be an integer >= 1"),
    (["--n-kv-head", "3"], "--n-kv-head, --n-head: n_kv_head must be None or a positive"),
])
def test_classify_bad_block_flags_name_the_flag(jsonl, capsys, flags, message):
    code, _, err = run(capsys, *BERT, "--max-iters", "2", *flags)
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (jsonl / "run").exists()
