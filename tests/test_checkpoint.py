"""Checkpoints that cannot silently lie: the corruption matrix (truncate, flip, NaN, wrong
dtype, wrong shape, another architecture, a directory, a symlink, an empty file, damaged
checkpoint.json fields) and kills at every point of a save (a real process killed between
the steps), each with the error or the recovery it must give."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from transformer_c import checkpoint as ckpt
from transformer_c.data import CharTokenizer
from transformer_c.nn import GPT, GPTConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXT = "hello checkpoint world\n" * 5


def make(path, *, step=3, n_embd=16, seed=0, optimizer=True):
    tok = CharTokenizer.train(TEXT)
    cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=8, n_layer=1, n_head=2, n_embd=n_embd)
    model = GPT.create(cfg, np.random.default_rng(seed))
    opt = None
    if optimizer:
        r = np.random.default_rng(seed + 1)
        opt = {"exp_avg": r.standard_normal(model.num_parameters).astype(np.float32),
               "exp_avg_sq": r.random(model.num_parameters).astype(np.float32)}
    ckpt.save(path, model=model, tokenizer=tok, state={"step": step}, optimizer=opt)
    return model


def rewrite_checksums(path):
    """What a careless tool does: recompute checkpoint.json's checksums after editing."""
    meta_file = path / "checkpoint.json"
    meta = json.loads(meta_file.read_text())
    for name in meta["files"]:
        f = path / name
        meta["files"][name] = {"bytes": f.stat().st_size, "sha256": ckpt._sha256(f)}
    meta_file.write_text(json.dumps(meta))


def test_roundtrip_records_and_verifies_checksums(tmp_path):
    model = make(tmp_path / "c")
    meta = json.loads((tmp_path / "c" / "checkpoint.json").read_text())
    assert meta["format_version"] == 2
    assert sorted(meta["files"]) == ["model.safetensors", "optimizer.safetensors",
                                     "tokenizer.json"]
    c = ckpt.load(tmp_path / "c")
    assert c.notes == [] and c.state["step"] == 3
    np.testing.assert_array_equal(c.model.flat_parameters, model.flat_parameters)
    assert os.listdir(tmp_path) == ["c"]  # no leftovers


def test_same_model_saved_twice_gives_the_same_files(tmp_path):
    # in two processes: the safetensors package's header order varied between processes
    code = "import sys; sys.path[:0] = [{!r}, {!r}]; from test_checkpoint import make; make({!r})"
    for d in ("a", "b"):
        subprocess.run([sys.executable, "-c", code.format(ROOT, os.path.join(ROOT, "tests"),
                                                          str(tmp_path / d))],
                       check=True, timeout=120)
    for name in ("model.safetensors", "optimizer.safetensors", "tokenizer.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def _flip(path, name, offset=-7):
    f = path / name
    data = bytearray(f.read_bytes())
    data[offset] ^= 0x10
    f.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, message", [
    (lambda p: _flip(p, "model.safetensors"), "model.safetensors is corrupt: its SHA-256"),
    (lambda p: _flip(p, "optimizer.safetensors"), "optimizer.safetensors is corrupt: its SHA"),
    (lambda p: _flip(p, "tokenizer.json", 5), "tokenizer.json is corrupt: its SHA-256"),
    (lambda p: (p / "model.safetensors").write_bytes((p / "model.safetensors").read_bytes()[:-9]),
     "model.safetensors is corrupt: "),
    (lambda p: (p / "model.safetensors").write_bytes(b""), "model.safetensors is corrupt: 0 bytes"),
    (lambda p: os.remove(p / "optimizer.safetensors"), "has no optimizer.safetensors"),
    (lambda p: os.remove(p / "tokenizer.json"), "has no tokenizer.json"),
])
def test_damaged_files_are_refused_naming_the_file(tmp_path, damage, message):
    make(tmp_path / "c")
    damage(tmp_path / "c")
    with pytest.raises(ckpt.CheckpointError, match=message):
        ckpt.load(tmp_path / "c")


def test_a_directory_or_a_symlink_in_place_of_a_file(tmp_path):
    make(tmp_path / "c")
    make(tmp_path / "d", seed=5)
    os.remove(tmp_path / "c" / "model.safetensors")
    os.symlink(tmp_path / "d" / "model.safetensors", tmp_path / "c" / "model.safetensors")
    with pytest.raises(ckpt.CheckpointError, match="model.safetensors is corrupt: its SHA"):
        ckpt.load(tmp_path / "c")
    os.remove(tmp_path / "c" / "model.safetensors")
    os.mkdir(tmp_path / "c" / "model.safetensors")
    with pytest.raises(ckpt.CheckpointError, match="has no model.safetensors"):
        ckpt.load(tmp_path / "c")


def test_nan_weights_are_refused_even_with_matching_checksums(tmp_path):
    model = make(tmp_path / "c")
    f = tmp_path / "c" / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[-4:] = b"\xff\xff\xff\xff"  # the last float32 weight: a NaN
    f.write_bytes(bytes(data))
    rewrite_checksums(tmp_path / "c")
    with pytest.raises(ckpt.CheckpointError, match="NaN or infinite weights"):
        ckpt.load(tmp_path / "c")
    assert model.num_parameters > 0


def test_optimizer_of_another_architecture_is_refused(tmp_path):
    make(tmp_path / "c")
    make(tmp_path / "other", n_embd=8)
    for name in ("optimizer.safetensors",):
        os.replace(tmp_path / "other" / name, tmp_path / "c" / name)
    rewrite_checksums(tmp_path / "c")
    with pytest.raises(ckpt.CheckpointError, match="exp_avg is missing or does not match"):
        ckpt.load(tmp_path / "c")


@pytest.mark.parametrize("field, value, message", [
    ("step", "12", "step is '12'"),
    ("step", -1, "step is -1"),
    ("step", True, "step is True"),
    ("rng_state", [1, 2], "rng_state is"),
    ("elapsed", "x", "elapsed is"),
    ("files", {"model.safetensors": "abc"}, "files\\['model.safetensors'\\]"),
    ("files", {"../x": {"bytes": 1, "sha256": "0"}}, "files\\['../x'\\]"),
])
def test_bad_checkpoint_json_fields(tmp_path, field, value, message):
    make(tmp_path / "c")
    meta_file = tmp_path / "c" / "checkpoint.json"
    meta = json.loads(meta_file.read_text())
    meta[field] = value
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(ckpt.CheckpointError, match=message):
        ckpt.load(tmp_path / "c")


def test_deeply_nested_checkpoint_json(tmp_path):
    make(tmp_path / "c")
    (tmp_path / "c" / "checkpoint.json").write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(ckpt.CheckpointError, match="checkpoint.json is corrupt"):
        ckpt.load(tmp_path / "c")


def test_format_1_checkpoints_still_load_with_a_note(tmp_path):
    make(tmp_path / "c")
    meta_file = tmp_path / "c" / "checkpoint.json"
    meta = json.loads(meta_file.read_text())
    del meta["files"]
    meta["format_version"] = 1
    meta_file.write_text(json.dumps(meta))
    c = ckpt.load(tmp_path / "c")
    assert c.state["step"] == 3 and "no checksums" in c.notes[0]


# ------------------------------------------------------------------ kills during a save

KILLER = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {root!r})
    sys.path.insert(0, {tests!r})
    from test_checkpoint import make
    from transformer_c import checkpoint as ckpt
    point = {point!r}
    real_replace, real_dump, calls = os.replace, ckpt.json.dump, []

    def replace(a, b):
        calls.append(1)
        if point == "rename%d" % len(calls):
            os._exit(9)
        real_replace(a, b)

    def dump(*a, **k):
        if point == "meta":
            os._exit(9)
        real_dump(*a, **k)

    ckpt.os.replace = replace
    ckpt.json.dump = dump
    make({path!r}, step=7)
""")


@pytest.mark.parametrize("point, step, recovered", [
    ("meta", 3, False),      # killed while writing the new files: the old one stays
    ("rename1", 3, False),   # killed before moving the old one aside
    ("rename2", 7, True),    # killed between the two renames: PATH is missing
])
def test_a_killed_save_leaves_a_complete_checkpoint(tmp_path, point, step, recovered):
    path = str(tmp_path / "run" / "last")
    make(path, step=3)
    code = KILLER.format(root=ROOT, tests=os.path.join(ROOT, "tests"), point=point, path=path)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 9, r.stderr
    assert any(".tmp-" in d or ".old-" in d for d in os.listdir(tmp_path / "run"))
    c = ckpt.load(tmp_path / "run", prefer="last")
    assert c.state["step"] == step
    assert bool(c.notes) == recovered
    if recovered:
        assert "recovered the checkpoint of step 7" in c.notes[0]
    assert sorted(os.listdir(tmp_path / "run")) == ["last"]  # leftovers of the dead process gone


# ------------------------------------------------------------------ the model files

def _rewrite_header(file, edit):
    """Edit the JSON header of a safetensors file (keeping its length a multiple of 8)."""
    import struct
    data = file.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    edit(header)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    file.write_bytes(struct.pack("<Q", len(text)) + text + data[8 + n:])


def test_a_forged_layer_count_fails_before_any_work(tmp_path, monkeypatch):
    make(tmp_path / "c")
    f = tmp_path / "c" / "model.safetensors"

    def forge(h):
        cfg = json.loads(h["__metadata__"]["gpt_config"])
        cfg["n_layer"] = 1_000_000
        h["__metadata__"]["gpt_config"] = json.dumps(cfg)

    _rewrite_header(f, forge)
    layouts = []
    real = GPT._layout
    monkeypatch.setattr(GPT, "_layout", staticmethod(
        lambda cfg: layouts.append(cfg.n_layer) or real(cfg)))
    with pytest.raises(ValueError, match="n_layer is 1000000 but the file holds 1 such layers"):
        GPT.load(f)
    assert 1_000_000 not in layouts  # the forged config's layout was never built
    rewrite_checksums(tmp_path / "c")
    with pytest.raises(ckpt.CheckpointError, match="n_layer is 1000000"):
        ckpt.load(tmp_path / "c")


def test_a_forged_width_fails_on_the_parameter_count(tmp_path):
    make(tmp_path / "c")
    f = tmp_path / "c" / "model.safetensors"

    def forge(h):
        cfg = json.loads(h["__metadata__"]["gpt_config"])
        cfg["n_embd"] = 4096
        h["__metadata__"]["gpt_config"] = json.dumps(cfg)

    _rewrite_header(f, forge)
    with pytest.raises(ValueError, match="the config implies .* parameters but the file's "
                                         "tensors hold"):
        GPT.load(f)


def test_an_integer_dtype_in_the_header_is_refused_naming_the_tensor(tmp_path):
    make(tmp_path / "c")
    f = tmp_path / "c" / "model.safetensors"
    _rewrite_header(f, lambda h: h["wte.weight"].update(dtype="I32"))
    with pytest.raises(ValueError, match="tensor wte.weight has dtype int32"):
        GPT.load(f)
    rewrite_checksums(tmp_path / "c")
    with pytest.raises(ckpt.CheckpointError, match="wte.weight has dtype int32"):
        ckpt.load(tmp_path / "c")


def test_a_copied_model_owns_its_buffers(tmp_path):
    import copy
    model = make(tmp_path / "c")
    x = np.zeros((2, 4), dtype=np.int64)
    model.loss_and_grads(x, x)
    for dup in (copy.copy(model), copy.deepcopy(model)):
        assert not np.shares_memory(dup.flat_parameters, model.flat_parameters)
        assert not np.shares_memory(dup.flat_grads, model.flat_grads)
        np.testing.assert_array_equal(dup.flat_parameters, model.flat_parameters)
        np.testing.assert_array_equal(dup.flat_grads, model.flat_grads)
        dup.flat_parameters[0] += 1
        assert dup.flat_parameters[0] != model.flat_parameters[0]
        assert dup.parameters["wte"]["weight"].base is not None  # the tree views its buffer
        assert np.shares_memory(dup.parameters["wte"]["weight"], dup.flat_parameters)
