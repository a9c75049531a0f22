"""``prepare``: corpora downloaded into a cache with a checksum, as a new user meets it.

The machine has no internet: downloads come from local file:// URLs, and "no network" is a
urlopen that fails (every test here also forbids any other network access).
"""
import dataclasses
import hashlib
import os
import pathlib
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from transformer_c import cli
from transformer_c.data import download
from transformer_c.data.download import CORPORA, Corpus, DataError, prepare

from conftest import DATA_DIR

ROOT = pathlib.Path(__file__).resolve().parents[1]
TEXT = "".join(f"line {i}: to be, or not to be\n" for i in range(400))


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    """A registered test corpus 'tiny' whose source is a local file; the cache in tmp."""
    src = tmp_path / "src" / "tiny.txt"
    src.parent.mkdir()
    src.write_text(TEXT, encoding="utf-8")
    data = TEXT.encode()
    monkeypatch.setitem(CORPORA, "tiny", Corpus("tiny.txt", src.as_uri(), len(data),
                                                hashlib.sha256(data).hexdigest(), "a test"))
    monkeypatch.setenv("TRANSFORMER_C_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("TRANSFORMER_C_DATA_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _no_network(monkeypatch):
    calls = []

    def urlopen(url, *a, **k):
        calls.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return calls


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_first_download_then_offline_cache_hit(corpus, capsys, monkeypatch):
    code, out, err = run(capsys, "prepare", "tiny")
    assert code == 0, err
    path = corpus / "cache" / "tiny.txt"
    assert out == f"{path}\n"  # stdout is the path alone: $(python -m ... prepare tiny)
    assert "downloading tiny" in err and "downloaded" in err
    assert path.read_text(encoding="utf-8") == TEXT
    assert sorted(os.listdir(corpus / "cache")) == ["tiny.txt"]  # no temporary file left
    calls = _no_network(monkeypatch)
    code, out, err = run(capsys, "prepare", "tiny")
    assert code == 0 and out == f"{path}\n" and err == "" and calls == []


def test_checksum_mismatch_keeps_nothing(corpus, capsys):
    bad = corpus / "bad.txt"
    bad.write_text(TEXT.replace("be", "go"), encoding="utf-8")
    code, out, err = run(capsys, "prepare", "tiny", "--url", bad.as_uri())
    assert code == 2 and out == ""
    progress, error = err.strip().splitlines()
    assert progress.startswith("downloading tiny") and error.startswith("transformer_c: error:")
    assert "SHA-256" in error and "expected" in error and "nothing was kept" in error
    assert not (corpus / "cache").exists() or os.listdir(corpus / "cache") == []


def test_missing_without_network_is_one_line_exit_2(corpus, capsys, monkeypatch):
    calls = _no_network(monkeypatch)
    code, out, err = run(capsys, "prepare", "tiny")
    assert code == 2 and out == "" and len(calls) == 1
    lines = err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("downloading")  # progress, then the error
    assert lines[1].startswith("transformer_c: error: cannot download")
    assert "no network" in lines[1] and "tiny.txt" in lines[1]
    assert os.listdir(corpus / "cache") == []  # the partial file was removed


def test_connection_lost_mid_download_keeps_nothing(corpus, capsys, monkeypatch):
    class Response:
        def __init__(self):
            self.sent = False

        def read(self, n):
            if self.sent:
                raise ConnectionResetError(104, "Connection reset by peer")
            self.sent = True
            return TEXT.encode()[:1000]

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: Response())
    code, out, err = run(capsys, "prepare", "tiny")
    assert code == 2 and "Connection reset by peer" in err.splitlines()[-1]
    assert os.listdir(corpus / "cache") == []


def test_damaged_cache_file_is_downloaded_again(corpus, capsys):
    (corpus / "cache").mkdir()
    (corpus / "cache" / "tiny.txt").write_text("truncated", encoding="utf-8")
    assert download.cached_path("tiny") is None
    code, out, err = run(capsys, "prepare", "tiny")
    assert code == 0 and "not the expected file" in err
    assert (corpus / "cache" / "tiny.txt").read_text(encoding="utf-8") == TEXT


def test_cache_folder_and_mirror_settings(corpus, monkeypatch, tmp_path):
    monkeypatch.delenv("TRANSFORMER_C_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert download.data_dir() == str(tmp_path / "xdg" / "transformer_c" / "data")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert download.data_dir() == str(tmp_path / "home" / ".cache" / "transformer_c" / "data")
    assert download.data_dir("here") == str(tmp_path / "here")
    # a mirror folder holding the files under their names
    monkeypatch.setitem(CORPORA, "tiny", dataclasses.replace(
        CORPORA["tiny"], url="https://unreachable.invalid/tiny.txt"))
    monkeypatch.setenv("TRANSFORMER_C_DATA_URL", (corpus / "src").as_uri())
    path = prepare("tiny", cache_dir=tmp_path / "mirror-cache")
    assert pathlib.Path(path).read_text(encoding="utf-8") == TEXT


def test_python_api_errors(corpus):
    with pytest.raises(DataError, match="unknown corpus 'nope'.*shakespeare"):
        prepare("nope")
    with pytest.raises(TypeError, match="name must be a str"):
        prepare(3)


def test_train_by_name_needs_prepare_and_never_downloads(corpus, capsys, monkeypatch):
    real_urlopen = urllib.request.urlopen
    calls = _no_network(monkeypatch)
    argv = ["train", "--data", "tiny", "--preset", "tiny", "--n-layer", "1", "--n-embd", "16",
            "--block-size", "16", "--batch-size", "4", "--eval-iters", "2", "--warmup-iters",
            "1", "--max-iters", "2", "--out", "run", "--sample-tokens", "0", "--quiet"]
    code, out, err = run(capsys, *argv)
    assert code == 2 and calls == []
    assert err.strip() == (f"transformer_c: error: the corpus 'tiny' is not in "
                           f"{corpus / 'cache'} (or is damaged there): download it first "
                           "with: python -m transformer_c prepare tiny")
    monkeypatch.setattr(urllib.request, "urlopen", real_urlopen)  # for prepare only
    assert prepare("tiny") == str(corpus / "cache" / "tiny.txt")
    calls = _no_network(monkeypatch)
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert calls == []
    code, out, err = run(capsys, "eval", "--ckpt", "run", "--data", "tiny")
    assert code == 0, err
    assert str(corpus / "cache" / "tiny.txt") in out and "perplexity" in out and calls == []


def test_nothing_else_in_the_package_opens_urls():
    import transformer_c

    # the package under test: the checkout's, or an installed wheel's (tools/ci_wheel.sh)
    pkg = pathlib.Path(transformer_c.__file__).resolve().parent
    users = sorted(str(p.relative_to(pkg.parent)) for p in pkg.rglob("*.py")
                   if "urlopen" in p.read_text(encoding="utf-8")
                   or "import requests" in p.read_text(encoding="utf-8"))
    assert users == [os.path.join("transformer_c", "data", "download.py")]


@pytest.mark.parametrize("name,shared", [("shakespeare", "tinyshakespeare.txt"),
                                         ("wikitext-2-valid", "wikitext-2/valid.txt"),
                                         ("wikitext-2-test", "wikitext-2/test.txt")])
def test_recorded_checksums_match_the_real_files(name, shared, tmp_path, monkeypatch):
    """The registry's size and SHA-256 are those of the copies in ../shared/data (the same
    git blobs as at the pinned commits of the download addresses)."""
    src = DATA_DIR / shared
    if not src.is_file():
        pytest.skip(f"{src} not available")
    path = prepare(name, cache_dir=tmp_path, url=src.as_uri())
    assert pathlib.Path(path).read_bytes() == src.read_bytes()


def test_console_prepare_prints_the_path_only(tmp_path):
    src = DATA_DIR / "tinyshakespeare.txt"
    if not src.is_file():
        pytest.skip(f"{src} not available")
    env = dict(os.environ, TRANSFORMER_C_DATA_DIR=str(tmp_path / "c"),
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "transformer_c", "prepare", "shakespeare"]
    r = subprocess.run(cmd + ["--url", src.as_uri()], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout == str(tmp_path / "c" / "tinyshakespeare.txt") + "\n"
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)  # cached: no download
    assert r.returncode == 0 and r.stderr == "" and r.stdout.endswith("tinyshakespeare.txt\n")
