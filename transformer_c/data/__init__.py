"""Data for language models: tokenizers, datasets, masks, synthetic tasks, corpora.

- :class:`CharTokenizer` and :class:`BPETokenizer` (byte-level, GPT-2 pre-tokenisation,
  trained from scratch in C), with special tokens <PAD>, <SOS>, <EOS>, <UNK>;
  ``encode``/``decode``/``tokenize``/``save``/``load``; :func:`load_tokenizer` reads either;
  :class:`GPT2Tokenizer`: a Hugging Face GPT-2 tokenizer's files (vocab.json + merges.txt or
  tokenizer.json) on the same C encoder, giving the same ids as Hugging Face.
- :class:`StreamDataset` (random windows of one token array) and :class:`SentenceDataset`
  (<SOS> + text -> text + <EOS>, padded by :func:`collate` with lengths).
- :func:`causal_attn_mask`, :func:`key_padding_mask`: boolean masks in the library's
  polarity (True = attend / real token); :func:`causal_mask`, :func:`pad_mask`: the
  coursework's (True = masked).
- :data:`BERT_SPECIALS`, :func:`encode_pair`, :func:`pad_pairs`, :func:`mlm_mask`
  (15% of tokens, 80/10/10), :class:`PairDataset`, :class:`MaskedLMDataset`,
  :func:`read_pairs`: encoder-only (BERT-style) classification and masked-LM data.
- :class:`CopyTask`, :class:`ReversalTask`, :class:`ArithmeticTask`: synthetic tasks with
  exact, disjoint train/val splits.
- :func:`read_text`, :func:`split_text`, :func:`load_text_splits`: a corpus file and its
  deterministic train/val split; :func:`default_corpus`: the embedded corpus (the Python
  standard library's own source), present on every machine.
- :func:`prepare`: download a public corpus (:data:`CORPORA`, e.g. "shakespeare") into the
  cache folder, checksummed; :func:`resolve_corpus` maps a prepared corpus name to its file.
"""
from .tokenizer import SPECIALS, Tokenizer, load_tokenizer
from .char import CharTokenizer
from .bpe import GPT2_SPLIT_PATTERN, BPETokenizer, bytes_to_unicode, pretokenize
from .gpt2 import GPT2Tokenizer
from .masks import causal_attn_mask, causal_mask, key_padding_mask, pad_mask
from .datasets import SentenceDataset, StreamDataset, collate
from .pairs import BERT_SPECIALS, MaskedLMDataset, PairDataset, encode_pair, mlm_mask, \
    pad_pairs, read_pairs
from .synthetic import ArithmeticTask, CopyTask, Example, ReversalTask, SyntheticTask, TASKS
from .text import load_text_splits, read_text, split_text
from .corpus import DEFAULT_CORPUS_MODULES, default_corpus, default_corpus_files, default_corpus_info
from .download import CORPORA, DataError, cached_path, data_dir, prepare, resolve_corpus

__all__ = [
    "SPECIALS", "Tokenizer", "load_tokenizer", "CharTokenizer", "BPETokenizer",
    "GPT2_SPLIT_PATTERN", "bytes_to_unicode", "pretokenize", "GPT2Tokenizer",
    "causal_attn_mask", "key_padding_mask", "causal_mask", "pad_mask",
    "StreamDataset", "SentenceDataset", "collate",
    "BERT_SPECIALS", "encode_pair", "pad_pairs", "mlm_mask", "PairDataset", "MaskedLMDataset",
    "read_pairs",
    "SyntheticTask", "CopyTask", "ReversalTask", "ArithmeticTask", "Example", "TASKS",
    "read_text", "split_text", "load_text_splits",
    "DEFAULT_CORPUS_MODULES", "default_corpus", "default_corpus_files", "default_corpus_info",
    "CORPORA", "DataError", "cached_path", "data_dir", "prepare", "resolve_corpus",
]
