"""Layers and models with the coursework tree interface (DESIGN.md section 4).

One class per concept, each with ``parameters``, ``with_parameters``,
``forward(**inputs)``, ``backward(gradient_outputs, **inputs)`` and the
``forward_cached`` / ``backward_cached`` pair the models chain:

- layers (nn.layers): Dense (linear), Norm (layer norm), Activation, Softmax, Embedding,
  PositionalEncoding; MLP, MoE (nn.feedforward); SelfAttention, CrossAttention, KVCache
  (nn.attention); Block (GPT / encoder block), DecoderBlock (nn.blocks);
- coursework adapters over them (same names, keys and behaviour as the assignment):
  Linear, LayerNorm, ReLU, GELU, FeedForward, ScaledSelfAttention, MultiHeadAttention,
  DecoderLayer, Decoder, CrossEntropyLoss;
- models: GPT, Encoder, EncoderDecoder, Bert (encoder-only classifier + MLM) and their
  configs.

All computation runs in the C kernels. Deprecated names (MultiHeadSelfAttention,
MultiHeadCrossAttention) still resolve, with a DeprecationWarning.
"""
from ._deprecated import deprecated_attribute
from .attention import (CrossAttention, KVCache, MultiHeadAttention, ScaledSelfAttention,
                        SelfAttention)
from .blocks import Block, DecoderBlock
from .decoder import Decoder, DecoderLayer
from .feedforward import MLP, FeedForward, GatedMLP, MoE
from .layers import (GELU, Activation, Dense, Embedding, LayerNorm, Linear, Norm,
                     PositionalEncoding, ReLU, Softmax)
from .loss import CrossEntropyLoss
from .module import Module
from .gpt import GPT, GPTConfig
from .encoder import Encoder, EncoderConfig
from .encoder_decoder import EncoderDecoder, EncoderDecoderConfig
from .bert import Bert, BertConfig

__all__ = ["Module", "Linear", "ReLU", "GELU", "Softmax", "Embedding", "LayerNorm",
           "PositionalEncoding", "FeedForward", "ScaledSelfAttention", "MultiHeadAttention",
           "DecoderLayer", "Decoder", "CrossEntropyLoss",
           "Dense", "Norm", "Activation", "MLP", "GatedMLP", "MoE", "SelfAttention", "CrossAttention", "KVCache",
           "Block", "DecoderBlock",
           "GPTConfig", "GPT", "EncoderConfig", "Encoder", "EncoderDecoderConfig",
           "EncoderDecoder", "BertConfig", "Bert"]


def __getattr__(name):
    """Deprecated names (see nn._deprecated), with a DeprecationWarning."""
    return deprecated_attribute(__name__, name)
