"""Modules with the coursework tree interface (DESIGN.md section 4).

Every class has ``parameters``, ``with_parameters``, ``forward(**inputs)``,
``backward(gradient_outputs, **inputs)`` and a ``create(..., random_generator)`` factory;
all computation runs in the C kernels.
"""
from .attention import (KVCache, MultiHeadAttention, MultiHeadCrossAttention,
                        MultiHeadSelfAttention, ScaledSelfAttention)
from .decoder import Decoder, DecoderLayer
from .feedforward import FeedForward
from .layers import GELU, Embedding, LayerNorm, Linear, PositionalEncoding, ReLU, Softmax
from .loss import CrossEntropyLoss
from .module import Module
from .blocks import MLP, Block, Dense, Norm, SelfAttention
from .gpt import GPT, GPTConfig

__all__ = ["Module", "Linear", "ReLU", "GELU", "Softmax", "Embedding", "LayerNorm",
           "PositionalEncoding", "FeedForward", "ScaledSelfAttention", "MultiHeadAttention",
           "MultiHeadSelfAttention", "MultiHeadCrossAttention", "KVCache",
           "DecoderLayer", "Decoder", "CrossEntropyLoss"]
__all__ += ["Dense", "Norm", "MLP", "SelfAttention", "Block", "GPTConfig", "GPT"]
from .blocks import CrossAttention, DecoderBlock
from .encoder import Encoder, EncoderConfig
from .encoder_decoder import EncoderDecoder, EncoderDecoderConfig

__all__ += ["CrossAttention", "DecoderBlock", "EncoderConfig", "Encoder",
            "EncoderDecoderConfig", "EncoderDecoder"]
