"""Token embedding lookup and its scatter-add backward (C: csrc/kernels/embedding.c)."""
from .. import _C
from ._util import as_float, as_ids, as_int

__all__ = ["embedding", "embedding_backward"]


def _check_big_unsigned(ids, limit):
    """uint64 ids above 2**63 - 1 would wrap to negative numbers in the int64 conversion
    the C side makes: report them here with their true value."""
    if ids.dtype.kind == "u" and ids.dtype.itemsize >= 8 and ids.size:
        top = ids.max()
        if top >= limit:
            raise IndexError(f"ids holds id {top}, outside [0, {limit})")


def embedding(ids, weight):
    """Rows of ``weight`` picked by ``ids``: out[..., :] = weight[ids[...], :].

    ids: integer array of any integer dtype (int32, int64, uint8, ...) and any shape,
    every id in [0, V); weight: (V, D). Returns ids.shape + (D,) in weight's dtype.
    TypeError for non-integer ids (floats, bools), IndexError for an id outside [0, V).
    """
    ids = as_ids(ids, "ids")
    weight = as_float(weight, "weight")
    if weight.ndim != 2:
        raise ValueError(f"weight must be 2-D (num_embeddings, dim), got shape {weight.shape}")
    V, D = weight.shape
    _check_big_unsigned(ids, V)
    out = _C.embedding_forward(ids.reshape(-1), weight)
    return out.reshape(ids.shape + (D,))


def embedding_backward(grad_output, ids, num_embeddings):
    """Gradient of embedding(ids, weight) with respect to weight (a scatter-add).

    grad_output: ids.shape + (D,); ids: any integer dtype and shape, every id in
    [0, num_embeddings); num_embeddings: V, an integer >= 0. Returns dweight (V, D) in
    grad_output's dtype, where dweight[v] is the sum of grad_output over the positions
    holding id v (repeated ids accumulate; rows of unused ids are zero). Deterministic:
    each sum runs in the order of the positions, for any thread count.
    """
    grad_output = as_float(grad_output, "grad_output")
    ids = as_ids(ids, "ids")
    V = as_int(num_embeddings, "num_embeddings", 0)
    if grad_output.ndim != ids.ndim + 1 or grad_output.shape[:-1] != ids.shape:
        raise ValueError(f"grad_output must have shape ids.shape + (D,) = {ids.shape} + (D,), "
                         f"got {grad_output.shape}")
    _check_big_unsigned(ids, V)
    D = grad_output.shape[-1]
    return _C.embedding_backward(grad_output.reshape(ids.size, D), ids.reshape(-1), V)
