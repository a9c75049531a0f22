"""A deterministic safetensors writer: the same tensors and metadata give the same bytes.

The safetensors package writes its JSON header from a hash map, so the order of the header's
keys (and so the file's bytes) varies from process to process. This writer produces the
format the package reads (an 8-byte little-endian header size, a JSON header padded with
spaces to a multiple of 8 bytes, then the tensors' bytes) with the metadata first, then the
tensors sorted by name, their data in that order.
"""
import json
import os
import struct

import numpy as np

__all__ = ["save_file"]

_DTYPES = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64",
           np.dtype(np.float16): "F16", np.dtype(np.int64): "I64",
           np.dtype(np.int32): "I32", np.dtype(np.int16): "I16", np.dtype(np.int8): "I8",
           np.dtype(np.uint8): "U8", np.dtype(np.bool_): "BOOL"}


def save_file(tensors, path, metadata=None):
    """Write {name: ndarray} to ``path`` in the safetensors format (little-endian data),
    with ``metadata`` ({str: str}) in the header; byte-for-byte reproducible."""
    header, arrays, offset = {}, [], 0
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise TypeError("metadata must map str to str")
        header["__metadata__"] = dict(sorted(metadata.items()))
    for name in sorted(tensors):
        a = np.asarray(tensors[name])
        dt = a.dtype.newbyteorder("=") if a.dtype.byteorder == ">" else a.dtype
        if dt not in _DTYPES:
            raise TypeError(f"tensor {name!r}: dtype {a.dtype} cannot be stored")
        a = np.ascontiguousarray(a, dtype=dt.newbyteorder("<"))
        header[name] = {"dtype": _DTYPES[dt], "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        arrays.append(a)
        offset += a.nbytes
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(os.fspath(path), "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for a in arrays:
            f.write(a.tobytes())
