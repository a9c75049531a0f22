"""Public text corpora, one command away: ``python -m transformer_c prepare NAME``.

:data:`CORPORA` names each corpus's file, its download address (a raw file of a public git
repository at a fixed commit, so the bytes never change) and its size and SHA-256.
:func:`prepare` downloads a corpus into the cache folder (:func:`data_dir`:
``$TRANSFORMER_C_DATA_DIR``, else ``$XDG_CACHE_HOME/transformer_c/data``, else
``~/.cache/transformer_c/data``) through a temporary file that is checked, then renamed
into place, so the cache never holds a partial or wrong file. A corpus already there is
used as it is, with no network access. Nothing else in the package downloads anything:
training on a corpus name (``--data shakespeare``) reads the cached file or says to run
``prepare`` first.

Each recorded checksum was taken from a copy of the file known to be the same git blob as
the one at the pinned commit. WikiText-2's train split (10.8 MB) is not listed: no such
copy was at hand to take its checksum from.

The download address can be replaced: ``prepare(name, url=...)`` (``--url``) for one
corpus, or ``$TRANSFORMER_C_DATA_URL`` as a mirror folder that holds the files under their
names; the checksum is checked whatever the source.
"""
import dataclasses
import hashlib
import os
import tempfile
import urllib.error
import urllib.request

__all__ = ["CORPORA", "Corpus", "DataError", "data_dir", "cached_path", "prepare",
           "resolve_corpus"]

_CHUNK = 1 << 16


class DataError(Exception):
    """A corpus that cannot be prepared: unknown name, no network, wrong checksum."""


@dataclasses.dataclass(frozen=True)
class Corpus:
    """One downloadable text file: ``filename`` in the cache, its ``url``, ``size`` in
    bytes and ``sha256`` (hex), and a one-line ``description``."""
    filename: str
    url: str
    size: int
    sha256: str
    description: str


_CHAR_RNN = ("https://raw.githubusercontent.com/karpathy/char-rnn/"
             "6f9487a6fe5b420b7ca9afb0d7c078e37c1d1b4e/data/tinyshakespeare/input.txt")
_WIKITEXT = ("https://raw.githubusercontent.com/pytorch/examples/"
             "77f55b912142e11fcfdf5b530231fb9c52f181e8/word_language_model/data/wikitext-2/")

CORPORA = {
    "shakespeare": Corpus(
        "tinyshakespeare.txt", _CHAR_RNN, 1115394,
        "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        "Tiny Shakespeare (karpathy/char-rnn, public domain text): 1.1 MB, 65 characters"),
    "wikitext-2-valid": Corpus(
        "wikitext-2-valid.txt", _WIKITEXT + "valid.txt", 1121681,
        "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
        "WikiText-2 (tokenized v1) validation split, CC BY-SA 3.0: 1.1 MB"),
    "wikitext-2-test": Corpus(
        "wikitext-2-test.txt", _WIKITEXT + "test.txt", 1256449,
        "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0",
        "WikiText-2 (tokenized v1) test split, CC BY-SA 3.0: 1.3 MB"),
}


def data_dir(cache_dir=None):
    """The folder corpora are cached in: ``cache_dir`` if given, else
    ``$TRANSFORMER_C_DATA_DIR``, else ``$XDG_CACHE_HOME/transformer_c/data``, else
    ``~/.cache/transformer_c/data`` (not created here)."""
    if cache_dir is None:
        cache_dir = os.environ.get("TRANSFORMER_C_DATA_DIR")
    if not cache_dir:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"),
                                                                 ".cache")
        cache_dir = os.path.join(base, "transformer_c", "data")
    return os.path.abspath(os.fspath(cache_dir))


def _corpus(name):
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if name not in CORPORA:
        raise DataError(f"unknown corpus {name!r} (known: {', '.join(CORPORA)})")
    return CORPORA[name]


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _intact(path, corpus):
    return (os.path.isfile(path) and os.path.getsize(path) == corpus.size
            and _sha256(path) == corpus.sha256)


def cached_path(name, cache_dir=None):
    """The path of corpus ``name`` in the cache if it is there with the recorded size and
    SHA-256, else None. Never touches the network."""
    path = os.path.join(data_dir(cache_dir), _corpus(name).filename)
    return path if _intact(path, CORPORA[name]) else None


def _source_url(name, url):
    if url is not None:
        return url
    mirror = os.environ.get("TRANSFORMER_C_DATA_URL")
    if mirror:
        return mirror.rstrip("/") + "/" + CORPORA[name].filename
    return CORPORA[name].url


def _download(url, path, corpus, timeout, progress):
    """Fetch ``url`` into a temporary file next to ``path``, check size and SHA-256, rename
    it into place; the temporary file is removed on any failure."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=corpus.filename + ".", suffix=".part")
    try:
        h, n = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    for block in iter(lambda: response.read(_CHUNK), b""):
                        h.update(block)
                        out.write(block)
                        n += len(block)
            except (urllib.error.URLError, OSError, ValueError) as e:
                reason = getattr(e, "reason", None) or e
                raise DataError(f"cannot download {url}: {reason} (no network? copy the file "
                                f"to {path}, or pass --url / set TRANSFORMER_C_DATA_URL to a "
                                "reachable copy)") from None
            out.flush()
            os.fsync(out.fileno())
        if n != corpus.size or h.hexdigest() != corpus.sha256:
            raise DataError(f"{url} gave {n} bytes with SHA-256 {h.hexdigest()}, expected "
                            f"{corpus.size} bytes with SHA-256 {corpus.sha256}: not the "
                            "expected file (nothing was kept)")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    if progress:
        progress(f"downloaded {n:,} bytes from {url}")


def prepare(name, *, cache_dir=None, url=None, timeout=60.0, progress=None):
    """The local path of corpus ``name`` (a key of :data:`CORPORA`), downloading it first
    if it is not in the cache (:func:`data_dir`).

    A cached file whose SHA-256 matches is returned without any network access; a cached
    file that does not match is replaced. url: where to download from (default: the
    corpus's address, or ``$TRANSFORMER_C_DATA_URL/FILENAME``); any URL urllib opens,
    file:// included. progress: called with one-line messages (e.g. ``print``).
    Raises DataError (unknown name, download failure, checksum mismatch: the partial file
    is removed).
    """
    corpus = _corpus(name)
    path = os.path.join(data_dir(cache_dir), corpus.filename)
    if os.path.isfile(path):
        if _intact(path, corpus):
            return path
        if progress:
            progress(f"{path} is not the expected file (size or SHA-256 differ): "
                     "downloading it again")
    source = _source_url(name, url)
    if progress:
        progress(f"downloading {name} ({corpus.size:,} bytes) from {source}")
    _download(source, path, corpus, timeout, progress)
    return path


def resolve_corpus(path_or_name, cache_dir=None):
    """``path_or_name`` itself if it is an existing path or not a corpus name; the cached
    file of a corpus name (DataError saying to run ``prepare`` when it is not cached).
    Never downloads."""
    if path_or_name is None or os.path.exists(path_or_name) or path_or_name not in CORPORA:
        return path_or_name
    path = cached_path(path_or_name, cache_dir)
    if path is None:
        raise DataError(f"the corpus {path_or_name!r} is not in {data_dir(cache_dir)} (or "
                        "is damaged there): download it first with: python -m transformer_c "
                        f"prepare {path_or_name}")
    return path
