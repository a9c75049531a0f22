"""Damaged copies of valid files for the loader and tokenizer cases: truncated, bytes
flipped, a 0xFF run (NaN weights), the safetensors header or a JSON field edited (dtype,
shape, offsets, config counts, deep nesting), empty, a directory, a symlink loop, missing."""
import json
import os
import shutil
import struct

import numpy as np

from .junk import junk

DEEP = "\x00deep"             # replaced by 50,000 nested brackets when serialised
DEEP_JSON = "[" * 50000 + "]" * 50000
LAYER_KEYS = ("n_layer", "n_encoder_layer", "n_decoder_layer")
DTYPES = ["F32", "F64", "I32", "I64", "F16", "BF16", "U8", "BOOL", "XX", ""]


def dumps(obj):
    """JSON text of obj, DEEP markers spelled as deeply nested arrays."""
    return json.dumps(obj).replace(json.dumps(DEEP), DEEP_JSON)


def _edit_json_value(r, obj, tags, depth=0):
    """Replace one value somewhere in a JSON object with junk JSON."""
    if not isinstance(obj, dict) or not obj:
        return junk_json(r, tags)
    keys = sorted(obj)
    k = keys[int(r.integers(len(keys)))]
    v = obj[k]
    if isinstance(v, dict) and depth < 3 and r.random() < 0.7:
        obj[k] = _edit_json_value(r, v, tags, depth + 1)
    elif isinstance(v, str) and v.startswith("{") and r.random() < 0.8:   # nested config JSON
        try:
            obj[k] = dumps(_edit_json_value(r, json.loads(v), tags, depth + 1))
        except ValueError:
            obj[k] = junk_json(r, tags)
    elif r.random() < 0.15:
        del obj[k]
    else:
        obj[k] = junk_json(r, tags, v)
        if k in LAYER_KEYS and isinstance(obj[k], (int, float)) and obj[k] >= 2**16:
            tags.add("huge-layer-count")
    return obj


def junk_json(r, tags, like=None):
    k = r.random()
    if k < 0.3 and isinstance(like, (int, float)) and not isinstance(like, bool):
        v = [0, -1, 1, 3, 2**31, 10**6, 10**12, 1.5, -0.0][int(r.integers(9))]
        if isinstance(v, int) and v >= 10**4:
            tags.add("huge-count")
        return v
    if k < 0.45 and isinstance(like, list):
        return [junk_json(r, tags, x) for x in like][: int(r.integers(len(like) + 2))] + [10**6] * int(r.integers(2))
    if k < 0.55 and isinstance(like, str):
        return DTYPES[int(r.integers(len(DTYPES)))] if len(like) <= 4 else like[::-1]
    if k < 0.6:
        tags.add("deep-nesting")
        return DEEP
    return [None, True, "", "x", [], {}, -1, 0, 1e308, "NaN", [1, 2], {"a": 1}][int(r.integers(12))]


def _safetensors_edit(r, data, tags):
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header = _edit_json_value(r, header, tags)
    h = dumps(header).encode()
    if r.random() < 0.5:
        h += b" " * (-len(h) % 8)
    n2 = len(h) if r.random() < 0.9 else [0, 7, len(h) + 8, 2**40, 2**64 - 1][int(r.integers(5))]
    return struct.pack("<Q", n2) + h + data[8 + n:], "header edited"


def damage_bytes(r, data, tags, safetensors):
    """The damaged bytes of a file and a few words saying how."""
    k = int(r.integers(6 if not safetensors else 8))
    if k == 0:
        cut = int(r.integers(len(data) + 1))
        return data[:cut], f"truncated at {cut}"
    if k == 1:
        b = bytearray(data)
        for i in r.integers(len(b), size=int(r.integers(1, 9))):
            b[int(i)] ^= int(r.integers(1, 256))
        return bytes(b), "bytes flipped"
    if k == 2:
        b = bytearray(data)
        i = int(r.integers(len(b)))
        b[i:i + 64] = b"\xff" * len(b[i:i + 64])
        return bytes(b), f"0xFF run at {i}"
    if k == 3:
        return b"", "empty"
    if k == 4:
        return bytes(r.integers(0, 256, size=int(r.integers(1, 200)), dtype=np.uint8)), "random bytes"
    if k == 5 and not safetensors:
        return dumps(_edit_json_value(r, json.loads(data), tags)).encode(), "JSON field edited"
    return _safetensors_edit(r, data, tags)


def place(r, dst, data, tags):
    """Write data at dst, or put something that is not a readable file there."""
    k = r.random()
    if k < 0.04:
        os.makedirs(dst)
        return "a directory"
    if k < 0.07:
        os.symlink(dst, dst)
        return "a symlink loop"
    if k < 0.1:
        return "missing"
    with open(dst, "wb") as f:
        f.write(data)
    return None


def damaged_copy(r, src, workdir, tags):
    """A damaged copy of file src in workdir: (path, how)."""
    dst = os.path.join(workdir, os.path.basename(src))
    with open(src, "rb") as f:
        data = f.read()
    data, how = damage_bytes(r, data, tags, src.endswith(".safetensors"))
    return dst, place(r, dst, data, tags) or how


def damaged_checkpoint(r, src, workdir, tags):
    """A copy of checkpoint directory src with one file damaged (or removed): (path, how)."""
    dst = os.path.join(workdir, "ckpt")
    shutil.copytree(src, dst)
    names = sorted(os.listdir(dst))
    name = names[int(r.integers(len(names)))]
    file = os.path.join(dst, name)
    with open(file, "rb") as f:
        data = f.read()
    os.remove(file)
    data, how = damage_bytes(r, data, tags, name.endswith(".safetensors"))
    how = place(r, file, data, tags) or how
    return dst, f"{name} {how}"
