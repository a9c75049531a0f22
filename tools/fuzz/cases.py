"""The fuzz cases: case(seed, index, ctx) builds one call from its own seeded generator, so
any case can be rebuilt alone from (seed, index) (the reproducer).

Families (by index): functional (every public function of transformer_c.functional), raw
(every callable of transformer_c._C, found at run time), state (the process-wide setters
followed by a kernel), tokenizer (CharTokenizer / BPETokenizer train, encode, decode, load of
damaged files), generate (plain callables and models), loader (GPT.load,
EncoderDecoder.load, checkpoint.load of damaged files).
"""
import dataclasses
import inspect
import os
import shutil

import numpy as np

from . import damage, record, valid
from .junk import junk, mutate_array, mutate_scalar, mutating_list, pick

FAMILIES = ["functional"] * 7 + ["raw"] * 7 + ["state", "tokenizer", "tokenizer",
                                                "generate", "generate", "loader", "loader"]
STATE_SETTERS = ("set_num_threads", "set_data_parallel", "gemm_set_kernel")


@dataclasses.dataclass
class Case:
    target: str            # e.g. "functional.linear", "_C.gpt_create", "loader.GPT.load"
    run: object            # () -> None
    tags: set
    describe: str          # the arguments, short


def rng(seed, index):
    return np.random.default_rng([int(seed), int(index)])


def short(v, n=60):
    s = repr(v) if not isinstance(v, np.ndarray) else f"array({v.shape}, {v.dtype}, C={v.flags.c_contiguous})"
    return s if len(s) <= n else s[:n] + "..."


def describe(args, kwargs=None):
    parts = [short(a) for a in args] + [f"{k}={short(v)}" for k, v in (kwargs or {}).items()]
    return ", ".join(parts)


def near(r, v, tags, sequence=False):
    """A near-valid variant of one valid argument (junk if making the variant fails, e.g.
    a value that does not fit the dtype). sequence: the argument is a sequence of arrays,
    which may then be given as a list its items mutate while it is converted (elsewhere
    such a list would test NumPy: np.asarray itself crashes on it, NumPy 2.4)."""
    try:
        with np.errstate(all="ignore"):
            return _near(r, v, tags, sequence)
    except (ValueError, TypeError, OverflowError, MemoryError):
        return junk(r, tags)


def _near(r, v, tags, sequence):
    if isinstance(v, np.ndarray):
        return mutate_array(r, v, tags)
    if isinstance(v, list) and v and all(isinstance(x, np.ndarray) for x in v):
        k = r.random()
        if k < 0.4 and sequence:
            return mutating_list(r, tags, v[0])
        v = list(v)
        v[int(r.integers(len(v)))] = near(r, v[0], tags) if k < 0.8 else junk(r, tags)
        return v
    return mutate_scalar(r, v, tags)


def _mutate_call(r, args, kwargs, tags, params=()):
    """Change one or two arguments (positional or keyword) of a valid call."""
    args, kwargs = list(args), dict(kwargs)
    seq = {k for k, v in list(enumerate(args)) + list(kwargs.items()) if isinstance(v, list)}
    for _ in range(int(r.integers(1, 3))):
        keys = list(range(len(args))) + list(kwargs) + list(params)
        if not keys:
            break
        k = keys[int(r.integers(len(keys)))]
        if isinstance(k, int):
            args[k] = near(r, args[k], tags, k in seq)
        elif k in kwargs:
            kwargs[k] = near(r, kwargs[k], tags, k in seq)
        else:
            kwargs[k] = junk(r, tags)
    return args, kwargs


def functional_case(r, name):
    from transformer_c import functional as F
    fn = getattr(F, name)
    tags = set()
    sig = inspect.signature(fn)
    params = [p.name for p in sig.parameters.values() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    dt = np.float32 if r.random() < 0.5 else np.float64
    if name in valid.FUNCTIONAL and r.random() < 0.8:
        args, kwargs = valid.FUNCTIONAL[name](r, dt)
        if r.random() < 0.9:
            extra = [p for p in params[len(args):] if p not in kwargs]
            args, kwargs = _mutate_call(r, args, kwargs, tags, extra)
    else:
        args, kwargs = [], {}
        for p in sig.parameters.values():
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty:
                args.append(junk(r, tags))
            elif p.kind == p.KEYWORD_ONLY and p.default is p.empty or r.random() < 0.3:
                if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                    kwargs[p.name] = junk(r, tags)
    return Case(f"functional.{name}", lambda: fn(*args, **kwargs), tags, describe(args, kwargs))


def raw_arity(fn):
    """The number of positional arguments a raw binding takes, read from its own error."""
    import re
    try:
        fn()
    except TypeError as e:
        m = re.search(r"takes (?:exactly|at least) (\d+) argument", str(e))
        if m:
            return int(m.group(1))
    except Exception:
        pass
    return 0


# The layer-count arguments of the raw model constructors (positions), to tag huge ones.
LAYER_ARGS = {"gpt_create": (5,), "gpt_kv_create": (4,), "encdec_create": (6, 7),
              "encdec_kv_create": (5, 6)}


def raw_case(r, name, ctx):
    from transformer_c import _C
    fn = getattr(_C, name)
    tags = set()
    calls = ctx.recorded.get(name)
    if calls and r.random() < 0.85:
        args = record.fresh(calls[int(r.integers(len(calls)))])
        args, _ = _mutate_call(r, args, {}, tags)
        if r.random() < 0.05:
            args = args[:-1] if r.random() < 0.5 else args + [junk(r, tags)]
        for i in LAYER_ARGS.get(name, ()):
            if i < len(args) and isinstance(args[i], (int, np.integer)) and args[i] >= 2**16:
                tags.add("huge-layer-count")
    else:
        n = ctx.arity.setdefault(name, raw_arity(fn))
        if r.random() < 0.1:
            n += int(pick(r, [-1, 1]))
        args = [junk(r, tags) for _ in range(max(n, 0))]
    return Case(f"_C.{name}", lambda: fn(*args), tags, describe(args))


def state_case(r, ctx):
    """A process-wide setter with a junk or extreme value, then kernels that read it."""
    import transformer_c as tc
    from transformer_c import _C, functional as F
    setter = pick(r, STATE_SETTERS)
    tags = {setter}
    if setter == "set_num_threads":
        value = [0, -1, 1, 2, 3, 8, 64, True, 2**31 - 1, 2**31, 2**20, 10**6, 2**63, -2**31, 1.5,
                 "2", None, np.int64(2)][int(r.integers(18))]
        if isinstance(value, (int, np.integer)) and value > 4096:
            tags.add("huge-thread-count")
    elif setter == "set_data_parallel":
        value = junk(r, tags) if r.random() < 0.5 else bool(r.integers(2))
    else:
        value = str(pick(r, ["generic", "avx2+fma", "auto", "", "x" * 300, "avx512"])) \
            if r.random() < 0.7 else junk(r, tags)
    public = setter != "gemm_set_kernel" and r.random() < 0.5
    set_fn = getattr(tc, setter) if public else getattr(_C, setter)
    x = np.ones((64, 64, 64), np.float32)   # big enough for the kernels' parallel regions
    w = np.ones((64, 64), np.float32)

    def run():
        try:
            set_fn(value)
        finally:
            F.relu(x)
            F.linear(x, w)
            ctx.gpt.loss_and_grads(np.zeros((2, 4), np.int64), np.ones((2, 4), np.int64))
    where = "transformer_c" if public else "_C"
    return Case(f"state.{where}.{setter}", run, tags, f"{short(value)}, then relu, linear, GPT.loss_and_grads")


def junk_text(r, tags):
    k = r.random()
    if k < 0.5:
        chars = ["a", "b", " ", "\n", "\x00", "é", "\ud800", "\U0001F600", "<", ">", "<|endoftext|>", "\uffff"]
        return "".join(chars[int(i)] for i in r.integers(len(chars), size=int(r.integers(0, 80))))
    if k < 0.7:
        return valid.TEXT[: int(r.integers(0, len(valid.TEXT)))]
    return junk(r, tags)


def tokenizer_case(r, ctx):
    from transformer_c.data import BPETokenizer, CharTokenizer, load_tokenizer
    tags = set()
    which = str(pick(r, ["char", "bpe"]))
    cls = CharTokenizer if which == "char" else BPETokenizer
    tok = ctx.char if which == "char" else ctx.bpe
    op = str(pick(r, ["train", "encode", "decode", "load", "load_any"]))
    if op == "train":
        text = junk_text(r, tags)
        kw = {}
        if which == "bpe":
            kw["vocab_size"] = int(pick(r, [256, 260, 300, 0, -1, 2**31, 1000])) if r.random() < 0.7 else junk(r, tags)
            if r.random() < 0.3:
                kw["min_frequency"] = mutate_scalar(r, 2, tags)
        if r.random() < 0.2:
            kw["specials"] = junk(r, tags)
        return Case(f"tokenizer.{cls.__name__}.train", lambda: cls.train(text, **kw), tags, describe([text], kw))
    if op == "encode":
        text = junk_text(r, tags)
        kw = {k: junk(r, tags) if r.random() < 0.3 else True
              for k in ("add_sos", "add_eos", "allow_specials") if r.random() < 0.3}
        return Case(f"tokenizer.{cls.__name__}.encode", lambda: tok.encode(text, **kw), tags, describe([text], kw))
    if op == "decode":
        ids = tok.encode(valid.TEXT[:20])
        ids = near(r, np.asarray(ids, np.int64), tags) if r.random() < 0.7 else junk(r, tags)
        kw = {"skip_specials": junk(r, tags)} if r.random() < 0.2 else {}
        return Case(f"tokenizer.{cls.__name__}.decode", lambda: tok.decode(ids, **kw), tags, describe([ids], kw))
    src = ctx.files[f"{which}_tokenizer"]
    load = cls.load if op == "load" else load_tokenizer
    name = f"{cls.__name__}.load" if op == "load" else "load_tokenizer"
    path, how = damage.damaged_copy(r, src, ctx.case_dir(), tags)
    return Case(f"tokenizer.{name}", lambda: load(path), tags, f"{which} tokenizer file, {how}")


def logits_fn(r, tags):
    """A plain callable model: ids (n, T) -> logits (n, T, V), well or badly behaved."""
    kind = int(r.integers(8))
    tags.add(f"callable-{kind}")
    Vc = int(pick(r, [1, 5, 11]))

    def fn(ids):
        ids = np.asarray(ids)
        shape = ids.shape + (Vc,)
        if kind == 0:
            return np.random.default_rng(ids.size).standard_normal(shape)
        if kind == 1:
            return np.full(shape, np.nan)
        if kind == 2:
            return np.zeros(shape, np.float32)[..., :0]
        if kind == 3:
            return np.ones(shape[1:])
        if kind == 4:
            return [[0.0] * Vc]
        if kind == 5:
            raise RuntimeError("fuzz: the model raised")
        if kind == 6:
            return np.full(shape, np.inf)
        return None
    return fn


def generate_case(r, ctx):
    from transformer_c.generate import generate
    tags = set()
    kind = str(pick(r, ["callable", "gpt", "encdec"]))
    model = logits_fn(r, tags) if kind == "callable" else getattr(ctx, kind)
    prompts = [np.array([1, 2, 3]), np.array([4])] if kind != "encdec" else np.array([[1, 2, 3], [4, 5, 0]])
    if r.random() < 0.4:
        prompts = near(r, prompts, tags) if isinstance(prompts, np.ndarray) else \
            [near(r, p, tags) for p in prompts] if r.random() < 0.5 else junk(r, tags)
    kw = {"max_new_tokens": int(pick(r, [0, 1, 3, 5]))}
    options = {"temperature": [0.0, 0.7], "top_k": [0, 2], "top_p": [1.0, 0.5],
               "repetition_penalty": [1.0, 1.3], "num_beams": [1, 2, 3], "length_penalty": [1.0, 0.0],
               "num_return_sequences": [1, 2], "eos_id": [None, 2, [2, 3]], "seed": [None, 0, 7],
               "stop_strings": [None, ["a"]], "decode": [None, lambda ids: "a" * len(ids)],
               "callback": [None, lambda row, tok: None], "max_new_tokens": [0, 1, 3]}
    for k, vs in options.items():
        if r.random() < 0.25:
            kw[k] = vs[int(r.integers(len(vs)))]
    for k in list(options)[:int(r.integers(0, 3))]:
        if r.random() < 0.5:
            kw[k] = mutate_scalar(r, kw.get(k, options[k][-1]), tags) if r.random() < 0.7 else junk(r, tags)
    mnt = kw.get("max_new_tokens")
    if isinstance(mnt, (int, np.integer)) and mnt > 10**4:
        tags.add("huge-max-new-tokens")
    return Case(f"generate.{kind}", lambda: generate(model, prompts, **kw), tags, describe([prompts], kw))


def loader_case(r, ctx):
    from transformer_c import checkpoint
    from transformer_c.nn import GPT, EncoderDecoder
    tags = set()
    which = str(pick(r, ["GPT.load", "EncoderDecoder.load", "checkpoint.load"]))
    if which == "checkpoint.load":
        path, how = damage.damaged_checkpoint(r, ctx.files["checkpoint"], ctx.case_dir(), tags)
        return Case(f"loader.{which}", lambda: checkpoint.load(path), tags, how)
    src = ctx.files["gpt" if (which == "GPT.load") != (r.random() < 0.15) else "encdec"]
    path, how = damage.damaged_copy(r, src, ctx.case_dir(), tags)
    fn = GPT.load if which == "GPT.load" else EncoderDecoder.load
    kw = {"dtype": junk(r, tags)} if r.random() < 0.1 else {}
    return Case(f"loader.{which}", lambda: fn(path, **kw), tags, f"{os.path.basename(src)} {how} {describe([], kw)}")


class Context:
    """What a worker builds once: recorded raw calls, tiny models, valid files."""

    def __init__(self, tmp):
        from transformer_c import checkpoint
        from transformer_c.data import BPETokenizer, CharTokenizer
        self.tmp = tmp
        self.recorded = record.record_raw()
        self.raw = [n for n in record.raw_names() if n not in STATE_SETTERS]
        from transformer_c import functional as F
        self.functional = sorted(n for n in dir(F) if not n.startswith("_") and inspect.isfunction(getattr(F, n)))
        self.arity = {}
        self.gpt = valid.tiny_gpt()
        self.encdec = valid.tiny_encdec()
        self.char = CharTokenizer.train(valid.TEXT)
        self.bpe = BPETokenizer.train(valid.TEXT, vocab_size=300)
        d = os.path.join(tmp, "valid")
        os.makedirs(d, exist_ok=True)
        self.files = {"gpt": os.path.join(d, "gpt.safetensors"), "encdec": os.path.join(d, "encdec.safetensors"),
                      "char_tokenizer": os.path.join(d, "char.json"), "bpe_tokenizer": os.path.join(d, "bpe.json"),
                      "checkpoint": os.path.join(d, "ckpt")}
        self.gpt.save(self.files["gpt"])
        self.encdec.save(self.files["encdec"])
        self.char.save(self.files["char_tokenizer"])
        self.bpe.save(self.files["bpe_tokenizer"])
        gpt = valid.tiny_gpt(vocab_size=self.char.vocab_size)
        flat = gpt.flat_parameters
        checkpoint.save(self.files["checkpoint"], model=gpt, tokenizer=self.char, state={"step": 3},
                        optimizer={"exp_avg": np.zeros_like(flat), "exp_avg_sq": np.zeros_like(flat)})

    def case_dir(self):
        d = os.path.join(self.tmp, "case")
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        return d


def case(seed, index, ctx):
    """Case number index of the run with this seed."""
    r = rng(seed, index)
    family = FAMILIES[int(r.integers(len(FAMILIES)))]
    if family == "functional":
        return functional_case(r, ctx.functional[int(r.integers(len(ctx.functional)))])
    if family == "raw":
        return raw_case(r, ctx.raw[int(r.integers(len(ctx.raw)))], ctx)
    return globals()[f"{family}_case"](r, ctx)
