"""GPT-2 tokenizers read from their files give Hugging Face's ids exactly.

A small GPT-2-format tokenizer (vocab.json + merges.txt, and tokenizer.json) is trained in
the test with the ``tokenizers`` library's ByteLevelBPETokenizer; encodings are compared
with ``tokenizers`` itself, with transformers' GPT2TokenizerFast (from the files and from
tokenizer.json) and with OpenAI's original encoder.py algorithm (written out below, over
the ``regex`` module) on multilingual text.
"""
import json
import pickle

import numpy as np
import pytest

from transformer_c.data import GPT2Tokenizer, load_tokenizer

tokenizers = pytest.importorskip("tokenizers")
transformers = pytest.importorskip("transformers")

TEXT = (
    "Hello world! It's, we're, they'll, I've, I'm, you'd, she's IT'S DON'T don't\n"
    "Héllo wörld, naïve café, Ærøskøbing, façade, São Paulo, Zürich, El Niño.\n"
    "東京は日本の首都です。北京欢迎你！ 서울특별시 한국어 텍스트\n"
    "Привет, мир! Γειά σου Κόσμε. مرحبا بالعالم. שלום עולם. नमस्ते दुनिया\n"
    "Emoji: 😀🎉👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️ ok\n"
    "Spaces:   three,\ttab,\t\ttwo tabs,  \n\n\nthree newlines, trailing   \n"
    "Crlf\r\nnbsp\u00a0here, ideographic\u3000space, thin\u2009space, \u2028sep\n"
    "Numbers: 12345 3.14159 1,000,000 ٣٤٥ 2023-10-01 0x1F ½ ² ⅷ\n"
    "Code: def f(x):\n    return x**2  # comment\n\tif a != b: pass\n"
    "Mixed: résumé's naïveté's 'quoted' \"double\" -- — … «guillemets» <tags>\n"
)
TRAIN = [TEXT, TEXT.upper(), TEXT.lower(), "The quick brown fox jumps over the lazy dog. " * 30,
         "東京 北京 서울 Привет мир 😀 12345 " * 20]


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    """A directory with vocab.json + merges.txt; tokenizer.json in its subdirectory json/."""
    d = tmp_path_factory.mktemp("gpt2tok")
    tok = tokenizers.ByteLevelBPETokenizer()
    tok.train_from_iterator(TRAIN, vocab_size=1200, min_frequency=2,
                            special_tokens=["<|endoftext|>"])
    tok.save_model(str(d))             # vocab.json + merges.txt
    (d / "json").mkdir()
    tok.save(str(d / "json" / "tokenizer.json"))
    return d


def openai_encoder(vocab_file, merges_file):
    """GPT-2's own encoder.py (openai/gpt-2, src/encoder.py), reduced to encode."""
    import regex
    from transformer_c.data import bytes_to_unicode
    with open(vocab_file, encoding="utf-8") as f:
        encoder = json.load(f)
    with open(merges_file, encoding="utf-8") as f:
        merges = f.read().split("\n")[1:-1]
    ranks = {tuple(m.split()): i for i, m in enumerate(merges)}
    byte_encoder = bytes_to_unicode()
    pat = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+"""
                        r"""|\s+(?!\S)|\s+""")

    def bpe(token):
        word = tuple(token)
        while len(word) > 1:
            pairs = set(zip(word[:-1], word[1:]))
            bigram = min(pairs, key=lambda p: ranks.get(p, float("inf")))
            if bigram not in ranks:
                break
            first, second = bigram
            new, i = [], 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                except ValueError:
                    new.extend(word[i:])
                    break
                new.extend(word[i:j])
                i = j
                if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                    new.append(first + second)
                    i += 2
                else:
                    new.append(word[i])
                    i += 1
            word = tuple(new)
        return word

    def encode(text):
        out = []
        for token in regex.findall(pat, text):
            token = "".join(byte_encoder[b] for b in token.encode("utf-8"))
            out.extend(encoder[t] for t in bpe(token))
        return out
    return encode


@pytest.fixture(scope="module")
def references(hf_dir):
    files = (str(hf_dir / "vocab.json"), str(hf_dir / "merges.txt"))
    rust = tokenizers.ByteLevelBPETokenizer.from_file(*files)
    fast = transformers.GPT2TokenizerFast.from_pretrained(str(hf_dir))
    fast_json = transformers.GPT2TokenizerFast.from_pretrained(str(hf_dir / "json"))
    assert len(fast) == len(fast_json) == len(rust.get_vocab()) > 600
    return {"tokenizers": lambda s: rust.encode(s).ids, "GPT2TokenizerFast": fast.encode,
            "GPT2TokenizerFast(tokenizer.json)": fast_json.encode,
            "openai encoder.py": openai_encoder(*files)}


@pytest.fixture(scope="module", params=["vocab+merges", "tokenizer.json", "directory"])
def ours(request, hf_dir):
    if request.param == "vocab+merges":
        return GPT2Tokenizer.from_files(hf_dir / "vocab.json", hf_dir / "merges.txt")
    if request.param == "tokenizer.json":
        return GPT2Tokenizer.from_huggingface(hf_dir / "json" / "tokenizer.json")
    return GPT2Tokenizer.from_huggingface(hf_dir)


PIECES = TEXT.split("\n") + [TEXT, " ", "   ", "\n\n", "a  b", "'s", " 's", "x's'", "😀",
                             "é", "e\u0301", "\u00a0\u00a0a", "1 2  3   4", ""]


def test_encodings_equal_hugging_face(ours, references):
    for text in PIECES:
        ids = ours.encode(text).tolist()
        for name, ref in references.items():
            assert ids == ref(text), (name, text)
        assert ours.decode(ours.encode(text)) == text


def test_the_test_text_is_really_merged(ours, references):
    ids = ours.encode(TEXT)
    n_bytes = len(TEXT.encode("utf-8"))
    assert ids.size < 0.6 * n_bytes  # merges were applied, not just bytes
    assert ids.max() >= 257 + 100


def test_vocabulary_spellings_and_specials(ours, hf_dir):
    vocab = json.loads((hf_dir / "vocab.json").read_text(encoding="utf-8"))
    assert ours.vocab_size == len(vocab)
    assert ours.vocab == sorted(vocab, key=vocab.get)
    assert ours.specials == ("<|endoftext|>",) and ours.eos_id == vocab["<|endoftext|>"] == 0
    fast = transformers.GPT2TokenizerFast.from_pretrained(str(hf_dir))
    assert ours.tokenize(TEXT) == fast.convert_ids_to_tokens(fast.encode(TEXT))
    text = "end<|endoftext|>start"
    assert ours.encode(text, allow_specials=True).tolist() == fast.encode(text)
    assert 0 not in ours.encode(text).tolist()  # by default a special's spelling is text
    assert ours.decode(ours.encode(text, allow_specials=True)) == text
    assert ours.token_bytes(ours.eos_id) == b"<|endoftext|>"
    with pytest.raises(IndexError, match="special id 0"):
        ours.decode_bytes([0])


def test_save_load_and_pickle(ours, tmp_path):
    ours.save(tmp_path / "t.json")
    back = load_tokenizer(tmp_path / "t.json")
    assert type(back) is GPT2Tokenizer and back == ours
    assert back.encode(TEXT).tolist() == ours.encode(TEXT).tolist()
    assert pickle.loads(pickle.dumps(ours)).encode(TEXT).tolist() == ours.encode(TEXT).tolist()


def _write(d, vocab, merges):
    d.mkdir()
    (d / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (d / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n",
                                  encoding="utf-8")
    return d


def test_bad_files_are_value_errors_naming_the_problem(hf_dir, tmp_path):
    vocab = json.loads((hf_dir / "vocab.json").read_text(encoding="utf-8"))
    merges = (hf_dir / "merges.txt").read_text(encoding="utf-8").split("\n")[1:-1]
    bad = dict(vocab)
    del bad["Ġ"]
    bad = {s: i for i, s in enumerate(sorted(bad, key=bad.get))}
    with pytest.raises(ValueError, match="byte 0x20"):
        GPT2Tokenizer.from_huggingface(_write(tmp_path / "a", bad, []))
    with pytest.raises(ValueError, match="merge 0 .* neither a byte nor made by an earlier"):
        GPT2Tokenizer.from_huggingface(_write(tmp_path / "b", vocab, ["ab zz"] + merges))
    assert "QZ" not in vocab
    with pytest.raises(ValueError, match="makes 'QZ', which is not in the vocabulary"):
        GPT2Tokenizer.from_huggingface(_write(tmp_path / "c", vocab, ["Q Z"] + merges))
    twice = merges + [merges[-1]]
    with pytest.raises(ValueError, match=f"merge {len(merges)} .* a second time"):
        GPT2Tokenizer.from_huggingface(_write(tmp_path / "e", vocab, twice))
    with pytest.raises(ValueError, match="map token strings to int ids, got 'x': '7'"):
        GPT2Tokenizer({"x": "7"}, [])
    gap = dict(vocab, extra=len(vocab) + 5)
    with pytest.raises(ValueError, match="ids must be 0..V-1"):
        GPT2Tokenizer.from_huggingface(_write(tmp_path / "d", gap, merges))
    tj = json.loads((hf_dir / "json" / "tokenizer.json").read_text(encoding="utf-8"))
    tj["pre_tokenizer"]["add_prefix_space"] = True
    (tmp_path / "tokenizer.json").write_text(json.dumps(tj), encoding="utf-8")
    with pytest.raises(ValueError, match="add_prefix_space is True"):
        GPT2Tokenizer.from_huggingface(tmp_path / "tokenizer.json")
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        GPT2Tokenizer.from_huggingface("gpt2")
    with pytest.raises(TypeError, match="read from files"):
        GPT2Tokenizer.train("text")


def test_merges_txt_of_real_gpt2_shape_loads_in_c(ours):
    """The merges reach the C encoder as byte-space pairs: each uses bytes or earlier merges."""
    m = np.asarray(ours.merges)
    assert m.shape == (ours.vocab_size - 257, 2)
    assert (m < 256 + np.arange(len(m))[:, None]).all()


# ------------------------------------------------------------------ sample --hf DIR

@pytest.fixture(scope="module")
def hf_model_dir(hf_dir, tmp_path_factory):
    """A tiny randomly initialised GPT-2 saved by transformers, with the tokenizer files."""
    import shutil

    import torch
    d = tmp_path_factory.mktemp("tiny-gpt2")
    n_vocab = len(json.loads((hf_dir / "vocab.json").read_text(encoding="utf-8")))
    cfg = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=n_vocab,
                                  n_positions=64)
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(str(d))
    for f in ("vocab.json", "merges.txt"):
        shutil.copy(hf_dir / f, d / f)
    return d


def test_sample_hf_greedy_equals_transformers(hf_model_dir, capsys, torch):
    from transformer_c import cli
    prompt = "Héllo wörld, 東京"
    code = cli.main(["sample", "--hf", str(hf_model_dir), "--prompt", prompt,
                     "--max-new-tokens", "12", "--temperature", "0", "--threads", "1"])
    out, err = capsys.readouterr()
    assert code == 0 and err == "", err
    tok = transformers.GPT2TokenizerFast.from_pretrained(str(hf_model_dir))
    model = transformers.GPT2LMHeadModel.from_pretrained(str(hf_model_dir)).eval()
    ids = torch.tensor([tok.encode(prompt)])
    with torch.no_grad():
        for _ in range(12):  # greedy decoding, one token at a time
            nxt = model(ids).logits[0, -1].argmax()
            ids = torch.cat([ids, nxt.view(1, 1)], dim=1)
    assert out == prompt + tok.decode(ids[0, -12:]) + "\n"


def test_sample_hf_errors_are_one_line(hf_model_dir, capsys, tmp_path):
    from transformer_c import cli
    code = cli.main(["sample", "--hf", "gpt2"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "'gpt2' is not one. Nothing is downloaded" in err and "hf download gpt2" in err
    code = cli.main(["sample", "--hf", str(hf_model_dir), "--ckpt", "out"])
    assert code == 2 and "pass one" in capsys.readouterr().err
    (tmp_path / "config.json").write_text((hf_model_dir / "config.json").read_text())
    code = cli.main(["sample", "--hf", str(tmp_path)])
    assert code == 2 and "holds no model.safetensors" in capsys.readouterr().err


def test_from_huggingface_with_a_hub_name_says_nothing_is_downloaded():
    from transformer_c.nn import GPT
    with pytest.raises(FileNotFoundError, match=r"'gpt2' is not one\. Nothing is downloaded.*"
                                                r"hf download gpt2 --local-dir DIR"):
        GPT.from_huggingface("gpt2")


def test_train_init_from_a_hugging_face_gpt2(hf_model_dir, capsys, tmp_path, monkeypatch):
    # fine-tuning as nanoGPT's init_from: a new run from the Hugging Face weights and
    # tokenizer, fresh optimizer; the checkpoint saves the GPT-2 tokenizer
    from transformer_c import checkpoint as ckpt
    from transformer_c import cli
    from transformer_c.nn import GPT
    monkeypatch.chdir(tmp_path)
    (tmp_path / "domain.txt").write_text("def f(x):\n    return x + 1\n\n" * 200, "utf-8")
    code = cli.main(["train", "--init-from", str(hf_model_dir), "--data", "domain.txt",
                     "--max-iters", "3", "--warmup-iters", "1", "--batch-size", "2",
                     "--block-size", "64", "--eval-every", "0", "--eval-iters", "1",
                     "--out", "tuned", "--sample-tokens", "0", "--quiet", "--threads", "1"])
    out, err = capsys.readouterr()
    assert code == 0, err
    c = ckpt.load(tmp_path / "tuned" / "last")
    src = GPT.from_huggingface(str(hf_model_dir))
    assert c.tokenizer.kind == "gpt2" and c.model.config == src.config
    assert c.state["data"]["init_from"].startswith("Hugging Face GPT-2")
    diff = np.abs(c.model.flat_parameters - src.flat_parameters).max()
    assert 0 < diff < 0.1
    code = cli.main(["train", "--init-from", str(hf_model_dir), "--data", "domain.txt",
                     "--n-layer", "5", "--out", "t2", "--quiet"])
    _, err = capsys.readouterr()
    assert code == 2 and "--n-layer 5 (the model has 2)" in err, err
