"""POSTECH submission whose LayerNorm uses the unbiased variance (divides by D - 1)."""
import numpy as np

import mlp_student
from mlp_student import (Decoder, DecoderLayer, Embedding, FeedForward, Linear,  # noqa: F401
                         MultiHeadAttention, PositionalEncoding, ScaledSelfAttention)


class LayerNorm(mlp_student.LayerNorm):
    def with_parameters(self, p):
        return LayerNorm(p["weights"], p["bias"], self.eps)

    def _stats(self, x):
        mu = x.mean(axis=-1, keepdims=True)
        var = x.var(axis=-1, keepdims=True, ddof=1)  # BUG: unbiased variance
        return (x - mu) / np.sqrt(var + self.eps), var
