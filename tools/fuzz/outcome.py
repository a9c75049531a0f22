"""What counts as a clean failure.

CLEAN: the errors a bad argument may raise anywhere (TypeError, ValueError, IndexError,
MemoryError and the package's own error classes, which subclass them or are listed here).
An exception raised by the fuzzer's own objects (an __array__ or a model callable that
raises, message "fuzz: ...") passing through is clean too. EXPECTED: other exception types
accepted for some targets only, each with its reason. Anything else is "other": reported,
and the run fails.
"""

CLEAN = (TypeError, ValueError, IndexError, MemoryError)


def package_errors():
    from transformer_c.checkpoint import CheckpointError
    from transformer_c.cli import CLIError
    return (CheckpointError, CLIError)


# (target prefix, exception class name (or a base's), reason)
EXPECTED = [
    ("_C.", "OverflowError",
     "the raw bindings parse scalars with PyArg_ParseTuple, whose own error for an int out "
     "of the C type's range is OverflowError (the public functions raise ValueError)"),
    ("loader.", "OSError",
     "a missing file, a directory or a symlink loop where the file should be: the OS error "
     "names the path"),
    ("tokenizer.", "OSError", "as for the loaders: the path is not a readable file"),
    ("loader.GPT.load", "SafetensorError",
     "safetensors' own error for a malformed file, passed through by Module.load "
     "(checkpoint.load wraps it in CheckpointError)"),
    ("loader.EncoderDecoder.load", "SafetensorError", "as for GPT.load"),
    ("state._C.", "OverflowError", "as for the other raw bindings"),
    ("loader.GPT.load", "RecursionError",
     "A DEFECT, listed until fixed (issue 22, defect 8's family): Module.load passes json's "
     "RecursionError through for a deeply nested safetensors header; delete with the fix"),
    ("loader.EncoderDecoder.load", "RecursionError", "as for GPT.load"),
    ("tokenizer.", "OverflowError",
     "A DEFECT, listed until fixed: BPETokenizer.from_dict (load) converts merge_counts with "
     "np.asarray(dtype=int64), so a count past 2**63 in a damaged file is an OverflowError, "
     "not a ValueError naming the field; delete with the fix"),
    ("tokenizer.", "RecursionError",
     "A DEFECT, listed until fixed (issue 22, defect 8's family): Tokenizer.load passes "
     "json's RecursionError through for a deeply nested tokenizer file (checkpoint.load "
     "turns it into a CheckpointError); delete this entry with the fix"),
]


def classify(target, exc):
    """'clean', 'expected' or 'other' for an exception raised by a case of target."""
    if isinstance(exc, CLEAN + package_errors()) or str(exc).startswith("fuzz:"):
        return "clean"
    names = {c.__name__ for c in type(exc).__mro__}
    for prefix, name, _ in EXPECTED:
        if target.startswith(prefix) and name in names:
            return "expected"
    return "other"
