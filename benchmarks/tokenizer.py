"""Byte-level BPE: training time and encode throughput, transformer_c vs Hugging Face
`tokenizers` (pip install tokenizers), same corpus, same vocabulary size.

python -m benchmarks.tokenizer [--data FILE] [--vocab-size 5000] [--threads 1 2]
RAYON_NUM_THREADS=1 python -m benchmarks.tokenizer --threads 1   (HF on one thread too)

Both sides: GPT-2 byte-level pre-tokenisation (HF: pre_tokenizers.ByteLevel with
add_prefix_space=False, its full 256-byte initial alphabet), the specials <PAD> <SOS>
<EOS> <UNK>, min_frequency 2, vocab_size tokens in total. One JSON line per case; the
"check" line says whether the two learned the same vocabulary and encode the corpus into
the same token strings. Without --data: Tiny Shakespeare from the shared data directory,
else the embedded default corpus (the Python standard library source).
"""
import argparse
import os
import pathlib
import time

import transformer_c as tc
from benchmarks.common import emit, median_time, set_threads
from transformer_c.data import SPECIALS, BPETokenizer, default_corpus, read_text


def default_data():
    d = pathlib.Path(os.environ.get("TC_DATA_DIR", pathlib.Path(__file__).resolve().parents[2]
                                    / "shared" / "data"))
    p = d / "tinyshakespeare.txt"
    return (str(p), read_text(p)) if p.exists() else ("python-stdlib", default_corpus(1_115_394))


def once(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def hf_trainer(vocab_size):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    def train(docs):
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2,
                                      special_tokens=list(SPECIALS), show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(docs, trainer=trainer)
        return tok
    return train


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help="UTF-8 text file (default: Tiny Shakespeare)")
    p.add_argument("--vocab-size", type=int, default=5000)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args(argv)
    name, text = (a.data, read_text(a.data)) if a.data else default_data()
    n_bytes = len(text.encode("utf-8"))
    lines = text.splitlines(keepends=True)
    # HF sizes its thread pool once, from RAYON_NUM_THREADS (default: every core): run
    # e.g. RAYON_NUM_THREADS=1 python -m benchmarks.tokenizer --threads 1 for 1 vs 1
    base = {"bench": "bpe", "data": os.path.basename(name), "bytes": n_bytes,
            "vocab_size": a.vocab_size,
            "hf_threads": os.environ.get("RAYON_NUM_THREADS", "all cores")}
    try:
        import tokenizers
        hf_train = hf_trainer(a.vocab_size)
        base["hf_version"] = tokenizers.__version__
    except ImportError:
        hf_train = None
        print("# Hugging Face tokenizers not installed: pip install tokenizers")

    tok = BPETokenizer.train(text, a.vocab_size)  # also builds the class table once
    hf = hf_train([text]) if hf_train else None
    for t in a.threads:
        set_threads(t)
        rec = dict(base, case="train", threads=t)
        rec["tc_s"] = median_time(lambda: BPETokenizer.train(text, a.vocab_size),
                                  repeats=a.repeats, warmup=1, min_time=0)
        if hf_train:
            rec["hf_s"] = median_time(lambda: hf_train([text]), repeats=a.repeats, warmup=1,
                                      min_time=0)
            rec["hf_lines_s"] = median_time(lambda: hf_train(lines), repeats=a.repeats,
                                            warmup=1, min_time=0)
            rec["tc_speedup_vs_hf"] = round(rec["hf_s"] / rec["tc_s"], 2)
            rec["tc_speedup_vs_hf_lines"] = round(rec["hf_lines_s"] / rec["tc_s"], 2)
        emit(rec)

        rec = dict(base, case="encode", threads=t)
        rec["tc_s"] = median_time(lambda: tok.encode(text), repeats=a.repeats * 2, warmup=1)
        rec["tc_MB_s"] = round(n_bytes / rec["tc_s"] / 1e6, 2)
        if hf:
            rec["hf_s"] = median_time(lambda: hf.encode(text), repeats=a.repeats, warmup=1,
                                      min_time=0)
            rec["hf_MB_s"] = round(n_bytes / rec["hf_s"] / 1e6, 2)
            rec["hf_batch_lines_s"] = median_time(lambda: hf.encode_batch(lines),
                                                  repeats=a.repeats, warmup=1, min_time=0)
            rec["hf_batch_lines_MB_s"] = round(n_bytes / rec["hf_batch_lines_s"] / 1e6, 2)
            rec["tc_speedup_vs_hf"] = round(rec["hf_s"] / rec["tc_s"], 2)
            rec["tc_speedup_vs_hf_batch"] = round(rec["hf_batch_lines_s"] / rec["tc_s"], 2)
        emit(rec)

    ids = tok.encode(text)
    check = dict(base, case="check", tc_tokens=int(ids.size),
                 tc_round_trip=tok.decode(ids) == text, tc_vocab=tok.vocab_size,
                 tc_num_threads=tc.get_num_threads())
    if hf:
        hf_ids = hf.encode(text).ids
        check["hf_tokens"] = len(hf_ids)
        check["same_vocab"] = set(tok.vocab) == set(hf.get_vocab())
        check["same_token_strings"] = ([tok.id_to_token(i) for i in ids.tolist()] ==
                                       [hf.id_to_token(i) for i in hf_ids])
    emit(check)


if __name__ == "__main__":
    main()
