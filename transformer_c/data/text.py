"""Reading a text corpus and its deterministic train/validation split."""
import os


def read_text(path):
    """The contents of the UTF-8 text file ``path`` as a str.

    Errors say what is wrong: FileNotFoundError for a missing file, ValueError for a
    directory, an empty file, or bytes that are not UTF-8 (naming the first bad byte and
    its offset). Line endings are kept as they are.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"corpus file not found: {path}")
    if os.path.isdir(path):
        raise ValueError(f"{path} is a directory, not a text file")
    with open(path, "rb") as f:
        data = f.read()
    if not data:
        raise ValueError(f"{path} is empty (0 bytes): a corpus needs some text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        bad = data[e.start]
        line = data.count(b"\n", 0, e.start) + 1
        raise ValueError(f"{path} is not UTF-8 text: byte 0x{bad:02x} at byte offset {e.start} "
                         f"(line {line}): {e.reason}") from None


def split_text(text, val_fraction=0.1):
    """(train, val): the first int(n * (1 - val_fraction)) characters and the rest.

    With val_fraction = 0.1 this is nanoGPT's Tiny Shakespeare split (first 90% of the
    characters train, last 10% validation; no shuffling).
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if isinstance(val_fraction, bool) or not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    n_train = int(len(text) * (1 - val_fraction))
    return text[:n_train], text[n_train:]


def load_text_splits(path, val_fraction=0.1, block_size=None):
    """read_text(path) split by split_text; with ``block_size`` also checks that the corpus
    and each non-empty split hold at least one block plus its target (block_size + 1
    characters), so a character-level model can draw a window from each (the validation
    split only when val_fraction > 0)."""
    text = read_text(path)
    train, val = split_text(text, val_fraction)
    if block_size is not None:
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise ValueError(f"block_size must be an int >= 1, got {block_size!r}")
        need = block_size + 1
        if len(text) < need:
            raise ValueError(f"{path} holds {len(text)} characters, shorter than one block "
                             f"(block_size + 1 = {need}): use a longer text or a smaller "
                             f"block size")
        for name, part in (("training", train), ("validation", val)):
            if (name == "training" or val_fraction > 0) and len(part) < need:
                raise ValueError(f"the {name} split of {path} holds {len(part)} characters, "
                                 f"shorter than one block (block_size + 1 = {need}): use a "
                                 f"longer text, a smaller block size or another val_fraction")
    return train, val
