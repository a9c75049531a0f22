"""The embedded default corpus: the Python standard library's own source text.

It exists wherever CPython is installed, so training works on a fresh machine with no
download. The text is gathered deterministically: a fixed list of pure-Python standard
library modules (:data:`DEFAULT_CORPUS_MODULES`, each a file ``name.py`` or a package
directory ``name/`` whose ``.py`` files are all taken, test directories excluded), files
sorted by their path relative to the standard library directory, read as UTF-8 with
newlines normalised to "\\n", joined by one empty line. The same CPython version gives the
same text on any machine (about 3 MB, ~2.9-3.2 million characters for 3.9-3.13); another
version gives a slightly different text, because the library itself changed:
:func:`default_corpus_info` reports the version, the files and a SHA-256 of the text.
Only installs without ``.py`` sources (the Windows "embeddable" zip) lack it; there
:func:`default_corpus` raises RuntimeError and a corpus file must be given instead.
"""
import functools
import hashlib
import os
import pathlib
import platform
import sysconfig
import tokenize

# Pure-Python modules present in every CPython 3.9+ (none of them is patched by the common
# Linux distributions, none is deprecated for removal).
DEFAULT_CORPUS_MODULES = (
    "abc", "argparse", "ast", "bisect", "calendar", "collections", "colorsys", "configparser",
    "contextlib", "copy", "csv", "dataclasses", "datetime", "difflib", "email", "enum",
    "fnmatch", "fractions", "functools", "gettext", "glob", "heapq", "hmac", "html", "http",
    "inspect", "json", "keyword", "linecache", "logging", "numbers", "operator", "optparse",
    "pathlib", "pickle", "pprint", "queue", "random", "reprlib", "sched", "secrets", "shlex",
    "shutil", "statistics", "string", "textwrap", "threading", "tokenize", "traceback",
    "typing", "unittest", "urllib", "uuid", "warnings", "weakref", "zipfile",
)
_EXCLUDED_DIRS = {"test", "tests", "__pycache__"}


def stdlib_dir():
    """The directory of the standard library's pure-Python modules."""
    for d in (os.path.dirname(getattr(os, "__file__", None) or ""),
              sysconfig.get_paths().get("stdlib", "")):
        if d and os.path.isfile(os.path.join(d, "os.py")):
            return pathlib.Path(d)
    return None


def default_corpus_files(root=None):
    """[(relative posix path, absolute Path)] of the corpus files, sorted by relative path."""
    root = stdlib_dir() if root is None else pathlib.Path(root)
    if root is None or not root.is_dir():
        return []
    files = []
    for name in DEFAULT_CORPUS_MODULES:
        single, package = root / f"{name}.py", root / name
        if single.is_file():
            files.append(single)
        elif package.is_dir():
            files.extend(p for p in package.rglob("*.py")
                         if p.is_file() and not _EXCLUDED_DIRS & set(p.relative_to(root).parts))
    out = [(p.relative_to(root).as_posix(), p) for p in files]
    return sorted(out)


def _read_source(path):
    with tokenize.open(path) as f:  # honours a coding cookie; universal newlines
        return f.read()


def _root_key(root):
    root = stdlib_dir() if root is None else root
    return "" if root is None else str(root)


@functools.lru_cache(maxsize=4)
def _full_text(root):
    files = default_corpus_files(root) if root else []
    if not files:
        raise RuntimeError(
            "the embedded default corpus is the Python standard library's source, but no "
            f".py sources were found (looked in {root or 'the stdlib directory'}); this Python "
            "install ships compiled files only. Pass a text file instead (e.g. --data FILE).")
    parts = []
    for _, p in files:
        text = _read_source(p)
        parts.append(text if text.endswith("\n") else text + "\n")
    return "\n".join(parts), tuple(rel for rel, _ in files)


def default_corpus(max_chars=None, *, root=None):
    """The default training text: the standard library sources described in the module
    docstring, as one str; ``max_chars`` keeps only that many leading characters.

    root: the standard library directory to read (default: this interpreter's).
    """
    if max_chars is not None:
        if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
            raise ValueError(f"max_chars must be an int >= 1 or None, got {max_chars!r}")
    text, _ = _full_text(_root_key(root))
    return text if max_chars is None else text[:max_chars]


def default_corpus_info(max_chars=None, *, root=None):
    """What :func:`default_corpus` returns here: Python version, files, size and SHA-256."""
    text = default_corpus(max_chars, root=root)
    _, files = _full_text(_root_key(root))
    return {
        "source": "python-stdlib",
        "python_version": platform.python_version(),
        "implementation": platform.python_implementation(),
        "n_files": len(files),
        "files": list(files),
        "n_chars": len(text),
        "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
    }
