"""The command line end to end on a tiny corpus in a temporary directory: train, sample, eval,
resume, demo, and the user errors (exit status 2, one line naming the problem)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from transformer_c import cli, viz
from transformer_c.presets import DEFAULT_PRESET, MODEL_KEYS, PRESETS, TRAIN_KEYS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CORPUS = "".join(f"def f{i}(x):\n    return x * {i} + {i % 7}\n\n" for i in range(120))
SMALL = ["--preset", "tiny", "--n-layer", "1", "--n-embd", "16", "--block-size", "16",
         "--batch-size", "4", "--eval-iters", "2", "--warmup-iters", "2"]


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corpus.txt").write_text(CORPUS, encoding="utf-8")
    return tmp_path


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_train_sample_eval_resume(corpus, capsys):
    code, out, err = run(capsys, "train", "--data", "corpus.txt", *SMALL, "--max-iters", "6",
                         "--eval-every", "3", "--out", "run", "--sample-tokens", "20")
    assert code == 0, err
    assert "Training a GPT (1 layer, 2 heads" in out and "corpus.txt" in out
    assert "step 6: train loss" in out and "A sample (20 tokens" in out
    for sub in ("best", "last"):
        files = set(os.listdir(corpus / "run" / sub))
        assert files == {"checkpoint.json", "model.safetensors", "optimizer.safetensors",
                         "tokenizer.json"}
    meta = json.loads((corpus / "run" / "last" / "checkpoint.json").read_text())
    assert meta["format"] == "transformer_c.checkpoint" and meta["format_version"] == 2
    assert meta["step"] == 6 and meta["data"]["source"] == "file"
    with open(corpus / "run" / "log.jsonl") as f:
        recs = [json.loads(line) for line in f]
    assert [r["step"] for r in recs if r["type"] == "eval"] == [0, 3, 6]
    if viz.have_matplotlib():
        assert (corpus / "run" / "loss.png").stat().st_size > 1000
    else:
        assert "matplotlib is not installed" in out

    code, out, err = run(capsys, "sample", "--ckpt", "run", "--prompt", "def ",
                         "--max-new-tokens", "30", "--seed", "3")
    assert code == 0, err
    assert out.startswith("def ") and len(out.rstrip("\n")) >= 4 + 30 - 5
    code, out2, _ = run(capsys, "sample", "--ckpt", "run/best", "--prompt", "def ",
                        "--max-new-tokens", "30", "--seed", "3")
    assert out2 == out                                           # seeded: reproducible
    # greedy: a sample that fits the context (block 16: the KV-cached GPTModel) starts as
    # one that slides past it (the windowed FunctionModel)
    code, short, err = run(capsys, "sample", "--ckpt", "run", "--prompt", "def ",
                           "--max-new-tokens", "10", "--temperature", "0")
    assert code == 0, err
    code, long, err = run(capsys, "sample", "--ckpt", "run", "--prompt", "def ",
                          "--max-new-tokens", "30", "--temperature", "0")
    assert code == 0, err
    assert len(short) == 4 + 10 + 1 and len(long) == 4 + 30 + 1
    assert long.startswith(short[:-1])

    code, out, err = run(capsys, "eval", "--ckpt", "run", "--data", "corpus.txt")
    assert code == 0, err
    assert "perplexity" in out and "per character" in out
    loss = float(out.split("loss ")[1].split()[0])
    assert 0 < loss < np.log(40)
    code, out, err = run(capsys, "eval", "--ckpt", "run")
    assert code == 0 and "the validation split of" in out

    code, out, err = run(capsys, "train", "--out", "run", "--resume", "--max-iters", "8",
                         "--quiet")
    assert code == 0, err
    assert json.loads((corpus / "run" / "last" / "checkpoint.json").read_text())["step"] == 8


def test_default_command_is_train_and_bpe(corpus, capsys, monkeypatch):
    monkeypatch.setattr(viz, "have_matplotlib", lambda: False)
    code, out, err = run(capsys, "--data", "corpus.txt", "--tokenizer", "bpe", "--vocab-size",
                         "280", *SMALL, "--max-iters", "3", "--eval-every", "0", "--out", "b",
                         "--sample-tokens", "5")
    assert code == 0, err
    assert "bpe tokenizer of 280 tokens" in out
    assert "matplotlib is not installed: skipping" in out
    tok = json.loads((corpus / "b" / "last" / "tokenizer.json").read_text())
    assert tok["type"] == "bpe"


def test_demo_subcommand(capsys, monkeypatch):
    """`demo` runs transformer_c.demo.run (itself tested in test_nn) with the flags."""
    import transformer_c.demo
    calls = []
    monkeypatch.setattr(transformer_c.demo, "run", lambda **kw: calls.append(kw))
    code, out, err = run(capsys, "demo", "--steps", "7", "--seed", "3")
    assert code == 0, err
    assert calls == [{"steps": 7, "seed": 3}]


@pytest.mark.parametrize("name,content,argv,message", [
    ("missing", None, ["train", "--data", "nope.txt"], "corpus file not found: nope.txt"),
    ("empty", b"", ["train", "--data", "empty.txt"], "empty.txt is empty"),
    ("latin1", b"caf\xe9 au lait\n", ["train", "--data", "latin1.txt"],
     "byte 0xe9 at byte offset 3"),
    ("short", b"just a few words\n", ["train", "--data", "short.txt", "--block-size", "32"],
     "fewer than one block"),
    ("eval", b"caf\xe9", ["eval", "--ckpt", "nowhere", "--data", "eval.txt"],
     "checkpoint not found: nowhere"),
    ("sample", None, ["sample", "--ckpt", "."], "is not a transformer_c checkpoint"),
    ("warmup", None, ["train", "--max-iters", "5", "--warmup-iters", "5"],
     "--warmup-iters (5) must be smaller than --max-iters (5)"),
])
def test_user_errors_exit_2_with_one_line(corpus, capsys, name, content, argv, message):
    if content is not None:
        (corpus / f"{name}.txt").write_bytes(content)
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert message in err
    assert err.startswith("transformer_c: error: ") and err.count("\n") == 1


def test_checkpoint_errors(corpus, capsys):
    code, _, err = run(capsys, "train", "--data", "corpus.txt", *SMALL, "--max-iters", "3",
                       "--eval-every", "0", "--out", "run", "--sample-tokens", "0", "--quiet")
    assert code == 0, err
    meta_file = corpus / "run" / "last" / "checkpoint.json"
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps(dict(meta, format_version=7, transformer_c_version="9.0")))
    code, _, err = run(capsys, "sample", "--ckpt", "run/last")
    assert code == 2 and "written by transformer_c 9.0 in checkpoint format 7" in err
    meta_file.write_text(json.dumps(meta))
    (corpus / "run" / "last" / "model.safetensors").write_bytes(b"\x00" * 20)
    code, _, err = run(capsys, "eval", "--ckpt", "run/last", "--data", "corpus.txt")
    assert code == 2 and "model.safetensors is corrupt" in err and err.count("\n") == 1
    code, _, err = run(capsys, "train", "--out", "run", "--resume")
    assert code == 2 and "corrupt" in err


def test_console_entry_point_no_traceback(tmp_path):
    """A real process: exit status 2 and no traceback for a user error."""
    (tmp_path / "bad.txt").write_bytes(b"ok\xff")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "transformer_c", "train", "--data", "bad.txt"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr.strip() == ("transformer_c: error: bad.txt is not UTF-8 text: byte 0xff at "
                                "byte offset 2 (line 1): invalid start byte")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_complete_and_valid(name):
    from transformer_c.nn import GPTConfig
    from transformer_c.train import TrainConfig
    s = PRESETS[name]
    assert set(s) >= set(MODEL_KEYS + TRAIN_KEYS)
    GPTConfig(vocab_size=65, **{k: s[k] for k in MODEL_KEYS})
    cfg = TrainConfig(**{k: s[k] for k in TRAIN_KEYS})
    assert cfg.warmup_iters < cfg.max_iters
    assert DEFAULT_PRESET in PRESETS


def _train_small(capsys):
    code, _, err = run(capsys, "train", "--data", "corpus.txt", *SMALL, "--max-iters", "3",
                       "--eval-every", "0", "--out", "run", "--sample-tokens", "0", "--quiet")
    assert code == 0, err


def _edit_meta(corpus, **fields):
    meta_file = corpus / "run" / "last" / "checkpoint.json"
    meta = json.loads(meta_file.read_text())
    meta.update(fields)
    meta_file.write_text(json.dumps(meta))


@pytest.mark.parametrize("damage, argv, message", [
    (lambda c: (c / "run" / "last" / "checkpoint.json").write_text("[" * 50000 + "]" * 50000),
     ["train", "--out", "run", "--resume", "--max-iters", "5"], "checkpoint.json is corrupt"),
    (lambda c: os.remove(c / "run" / "last" / "optimizer.safetensors"),
     ["train", "--out", "run", "--resume", "--max-iters", "5"], "has no optimizer.safetensors"),
    (lambda c: _edit_meta(c, step="3"),
     ["train", "--out", "run", "--resume", "--max-iters", "5"], "step is '3'"),
    (lambda c: _edit_meta(c, rng_state={"bit_generator": "MT19937", "state": 1}),
     ["train", "--out", "run", "--resume", "--max-iters", "5"], "rng_state is not a"),
    (lambda c: _flip_last_weight(c), ["sample", "--ckpt", "run/last"], "SHA-256"),
])
def test_damaged_checkpoints_give_one_line_and_exit_2(corpus, capsys, damage, argv, message):
    _train_small(capsys)
    damage(corpus)
    code, _, err = run(capsys, *argv)
    assert code == 2 and message in err, err
    assert err.startswith("transformer_c: error: ") and err.count("\n") == 1


def _flip_last_weight(corpus):
    f = corpus / "run" / "last" / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[-4:] = b"\xff\xff\xff\xff"
    f.write_bytes(bytes(data))


def test_resume_recovers_an_interrupted_save_and_says_so(corpus, capsys):
    _train_small(capsys)
    last = corpus / "run" / "last"
    os.replace(last, corpus / "run" / "last.tmp-999999999")  # a dead process's complete save
    code, out, err = run(capsys, "train", "--out", "run", "--resume", "--max-iters", "5",
                         "--quiet")
    assert code == 0, err
    assert "note: recovered the checkpoint of step 3" in err
    held = set(os.listdir(corpus / "run")) - {"loss.png"}  # loss.png: with matplotlib
    assert held in ({"best", "last", "log.jsonl"}, {"last", "log.jsonl"})
    assert json.loads((last / "checkpoint.json").read_text())["step"] == 5


# ------------------------------------------------------------------ runs that are never lost

LONG = ["--preset", "tiny", "--n-layer", "1", "--n-embd", "16", "--block-size", "16",
        "--batch-size", "4", "--eval-iters", "2", "--warmup-iters", "2", "--threads", "1",
        "--sample-tokens", "0", "--log-every", "1", "--eval-every", "0"]


def _cli_process(cwd, *argv):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-m", "transformer_c", *argv], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_steps(log, n, proc, timeout=120):
    import time
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"training ended early: {proc.communicate()}")
        if log.exists():
            lines = [json.loads(x) for x in log.read_text().splitlines() if x.strip()]
            if sum(x.get("type") == "train" for x in lines) >= n:
                return
        time.sleep(0.02)
    raise AssertionError("no training steps logged")


def _params(path):
    from transformer_c import checkpoint as ckpt
    c = ckpt.load(path)
    return c.state["step"], c.model.flat_parameters, c.optimizer


@pytest.mark.parametrize("sig, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_signal_saves_the_current_step_and_resume_is_bitwise(corpus, capsys, sig, code):
    import signal
    max_iters = "1500"
    proc = _cli_process(corpus, "train", "--data", "corpus.txt", *LONG, "--max-iters", max_iters,
                        "--out", "cut")
    _wait_for_steps(corpus / "cut" / "log.jsonl", 3, proc)
    proc.send_signal(getattr(signal, sig))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    step, _, _ = _params(corpus / "cut" / "last")
    assert 3 <= step < int(max_iters)
    assert (f"{sig} at step {step}: saved a resumable checkpoint of step {step} to "
            f"{os.path.join('cut', 'last')}") in err
    assert "Traceback" not in err
    code2, _, err2 = run(capsys, "train", "--out", "cut", "--resume", "--quiet",
                         "--threads", "1")
    assert code2 == 0, err2
    code3, _, err3 = run(capsys, "train", "--data", "corpus.txt", *LONG, "--max-iters",
                         max_iters, "--out", "whole", "--quiet")
    assert code3 == 0, err3
    s1, p1, o1 = _params(corpus / "cut" / "last")
    s2, p2, o2 = _params(corpus / "whole" / "last")
    assert s1 == s2 == int(max_iters)
    assert p1.tobytes() == p2.tobytes()
    assert o1["exp_avg"].tobytes() == o2["exp_avg"].tobytes()


def test_reusing_a_run_directory_needs_resume_or_overwrite(corpus, capsys):
    _train_small(capsys)
    code, _, err = run(capsys, "train", "--data", "corpus.txt", *SMALL, "--max-iters", "3",
                       "--out", "run", "--quiet")
    assert code == 2 and err.count("\n") == 1
    held = "best, last, log.jsonl" + (", loss.png" if (corpus / "run" / "loss.png").exists() else "")
    assert (f"run already holds a run ({held}): pass --resume to continue it, a new "
            "--out DIR, or --overwrite to replace it") in err
    # an error in the new run's settings removes nothing
    code, _, err = run(capsys, "train", "--data", "corpus.txt", *SMALL, "--max-iters", "2",
                       "--out", "run", "--overwrite", "--quiet")
    assert code == 2 and "--warmup-iters (2) must be smaller" in err
    assert json.loads((corpus / "run" / "last" / "checkpoint.json").read_text())["step"] == 3
    code, out, err = run(capsys, "train", "--data", "corpus.txt", *SMALL, "--max-iters", "4",
                         "--eval-every", "0", "--out", "run", "--overwrite",
                         "--sample-tokens", "0")
    assert code == 0, err
    assert f"--overwrite: removed the previous run in run ({held})" in out
    assert json.loads((corpus / "run" / "last" / "checkpoint.json").read_text())["step"] == 4
    assert not (corpus / "run" / "best").exists() or json.loads(
        (corpus / "run" / "best" / "checkpoint.json").read_text())["step"] == 4


@pytest.mark.parametrize("flags, message", [
    (["--n-layer", "2"], "--n-layer 2 (the checkpoint's model has 1)"),
    (["--n-embd", "32"], "--n-embd 32 (the checkpoint's model has 16)"),
    (["--tokenizer", "bpe"], "--tokenizer bpe (the checkpoint's is char)"),
    (["--lr", "0.5"], "--lr 0.5 (the run uses"),
    (["--preset", "small"], "--preset small (a resumed run keeps its settings)"),
    (["--init-from", "run"], "pass one of them"),
])
def test_resume_flags_that_contradict_the_checkpoint(corpus, capsys, flags, message):
    _train_small(capsys)
    code, _, err = run(capsys, "train", "--out", "run", "--resume", "--max-iters", "5", *flags)
    assert code == 2 and message in err and err.count("\n") == 1, err


def test_extending_max_iters_keeps_the_learning_rate_schedule(corpus, capsys):
    code, _, err = run(capsys, "train", "--data", "corpus.txt", *SMALL, "--max-iters", "20",
                       "--warmup-iters", "2", "--eval-every", "0", "--out", "run",
                       "--sample-tokens", "0", "--quiet", "--log-every", "1")
    assert code == 0, err
    code, out, err = run(capsys, "train", "--out", "run", "--resume", "--max-iters", "30")
    assert code == 0, err
    assert ("--max-iters 30 (was 20): the cosine schedule keeps its decay over steps 2..20, so "
            "the learning rate continues where it was and stays at min_lr") in out
    lines = [json.loads(x) for x in (corpus / "run" / "log.jsonl").read_text().splitlines()]
    lr = {x["step"]: x["lr"] for x in lines if x["type"] == "train"}
    from transformer_c.schedules import cosine_lr
    meta = json.loads((corpus / "run" / "last" / "checkpoint.json").read_text())
    c = meta["train_config"]
    for step in (19, 20, 21, 25, 30):  # lr of iteration step - 1, as the trainer logs it
        want = cosine_lr(step - 1, lr=c["lr"], warmup_iters=2, decay_iters=20, min_lr=c["min_lr"])
        assert lr[step] == pytest.approx(want, rel=1e-12), step
    assert lr[30] == c["min_lr"]


def test_save_every_saves_last_between_evaluations(corpus, capsys, monkeypatch):
    from transformer_c.train import Trainer
    saved = []
    real = Trainer.save_checkpoint
    monkeypatch.setattr(Trainer, "save_checkpoint",
                        lambda self, path: saved.append((self.step, os.path.basename(path)))
                        or real(self, path))
    code, _, err = run(capsys, "train", "--data", "corpus.txt", *SMALL, "--max-iters", "8",
                       "--eval-every", "0", "--save-every", "3", "--out", "run",
                       "--sample-tokens", "0", "--quiet")
    assert code == 0, err
    assert [s for s, name in saved if name == "last"] == [3, 6, 8]


def test_init_from_fine_tunes_a_trained_model(corpus, capsys):
    _train_small(capsys)
    (corpus / "new.txt").write_text(CORPUS[::-1].replace("\n", " ") * 2, encoding="utf-8")
    code, out, err = run(capsys, "train", "--init-from", "run", "--data", "new.txt",
                         *SMALL, "--max-iters", "3", "--eval-every", "0", "--out", "tuned",
                         "--sample-tokens", "0")
    assert code == 0, err
    from transformer_c import checkpoint as ckpt
    src, tuned = ckpt.load(corpus / "run" / "last"), ckpt.load(corpus / "tuned" / "last")
    assert tuned.state["step"] == 3 and tuned.tokenizer == src.tokenizer
    assert tuned.state["data"]["init_from"].startswith("checkpoint run")
    assert tuned.model.config == src.model.config
    diff = np.abs(tuned.model.flat_parameters - src.model.flat_parameters).max()
    assert 0 < diff < 0.1  # three small steps away from the source weights
    (corpus / "alien.txt").write_text("ñandú über 日本 " * 40, encoding="utf-8")
    code, _, err = run(capsys, "train", "--init-from", "run", "--data", "alien.txt",
                       "--out", "t2", "--quiet")
    assert code == 2 and "its char tokenizer cannot encode" in err and "'ñ'" in err, err
    code, _, err = run(capsys, "train", "--init-from", "run", "--data", "new.txt",
                       "--n-embd", "32", "--out", "t3", "--quiet")
    assert code == 2 and "--n-embd 32 (the model has 16)" in err, err


def test_version_flag(capsys):
    import re

    import transformer_c
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out == f"transformer_c {transformer_c.__version__}\n"
    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as f:
        declared = re.search(r'^version = "([^"]+)"', f.read(), re.M).group(1)
    assert transformer_c.__version__ == declared


def test_sample_warns_about_prompt_characters_outside_the_vocabulary(corpus, capsys):
    _train_small(capsys)  # the corpus has no 'é', no 'λ' and no 'Z'
    code, out, err = run(capsys, "sample", "--ckpt", "run", "--prompt", "déf λ(Zé)",
                         "--max-new-tokens", "3")
    assert code == 0
    assert out.startswith("déf λ(Zé)")
    assert err == ("transformer_c: warning: --prompt holds characters the tokenizer does not "
                   "know, each encoded as <UNK>: 'é' (U+00E9), 'λ' (U+03BB), 'Z' (U+005A)\n")
    code, out, err = run(capsys, "sample", "--ckpt", "run", "--prompt", "def f",
                         "--max-new-tokens", "3")
    assert code == 0 and err == ""


def test_unknown_characters_of_each_tokenizer():
    from transformer_c.data import BPETokenizer, CharTokenizer
    tok = CharTokenizer.train("abc")
    assert tok.unknown_characters("abXcYX") == ["X", "Y"] and tok.unknown_characters("") == []
    assert CharTokenizer.train("abc", specials=()).unknown_characters("aé") == ["é"]
    assert BPETokenizer.train("abc", 262).unknown_characters("é😀") == []
    with pytest.raises(TypeError, match="text must be a str"):
        tok.unknown_characters(3)
