"""Study 6, arithmetic: sums and differences of two-digit numbers ("37+85=122",
"3-41=-38"; :class:`transformer_c.data.ArithmeticTask`, its exact train/val split: a problem
and its mirror b+a are always in the same split, so no held-out problem is ever trained on)
with a small decoder-only GPT, to an answer perplexity below 1.5 (the seed's target), with
exact-match accuracy.

Each example is "<SOS>37+85=122<EOS>". The loss is the cross-entropy of the answer tokens
and the final <EOS> only (the operands are random: nothing to learn there). Evaluation on
every held-out problem:

- exact match: greedy decoding (transformer_c.generate with the GPT's KV cache, all problems
  in one batch of left-padded prompts) from "<SOS>37+85=" until <EOS>, compared with the
  true answer (and with 3-beam search);
- perplexity of the answer tokens: exp(mean cross-entropy of the answer tokens and <EOS>)
  with teacher forcing.

This module holds the whole pipeline (encoding, model, training loop, evaluation);
examples/addition.py is a thin command-line caller of it for addition alone.
"""
import math
import time

import numpy as np

from . import register
from ._report import Report

NAME = "arithmetic"
IGNORE = -100


def encode_examples(examples, tok):
    """(inputs, targets) int64 (N, L): inputs = <SOS> prompt answer (right-padded with
    <PAD>), targets = the next token at the answer positions and the final <EOS>, IGNORE
    elsewhere (the loss is on the answer only)."""
    rows = []
    for ex in examples:
        p, a = tok.encode(ex.prompt), tok.encode(ex.answer)
        rows.append((np.concatenate([[tok.sos_id], p, a]), len(p), len(a)))
    L = max(r[0].size for r in rows)
    inputs = np.full((len(rows), L), tok.pad_id, dtype=np.int64)
    targets = np.full((len(rows), L), IGNORE, dtype=np.int64)
    for i, (ids, np_, na) in enumerate(rows):
        inputs[i, :ids.size] = ids
        # input position j predicts ids[j + 1]; the answer starts after <SOS> + prompt
        targets[i, np_:np_ + na] = ids[np_ + 1:]
        targets[i, np_ + na] = tok.eos_id
    return inputs, targets


def make_model(vocab_size, *, n_layer=2, n_head=4, n_embd=128, block_size=16, seed=0,
               activation="relu", dtype=np.float32):
    """A GPT (vocab_size, block_size 16: the longest example is 13 tokens) with no dropout,
    initialised from ``seed``."""
    from ..nn import GPT, GPTConfig
    cfg = GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer,
                    n_head=n_head, n_embd=n_embd, dropout=0.0, activation=activation)
    return GPT.create(cfg, np.random.default_rng(seed), dtype=dtype)


def lr_at(step, steps, lr, warmup):
    """Linear warmup, then cosine decay to lr / 10."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def train(model, inputs, targets, *, steps, batch_size=128, lr=3e-3, warmup=100,
          weight_decay=0.01, seed=0, log_every=0, time_limit=None, callback=None,
          callback_every=0):
    """AdamW on the flat parameter buffer; batches (inputs, targets) (N, L) drawn uniformly.
    Returns the list of training losses (one per step). Stops early after ``time_limit``
    seconds when given. callback(step) every ``callback_every`` steps (and after the last)."""
    from ..functional import adamw_update_
    r = np.random.default_rng(seed)
    flat, grads = model.flat_parameters, model.flat_grads
    m, v = np.zeros_like(flat), np.zeros_like(flat)
    losses = []
    t0 = time.perf_counter()
    for step in range(steps):
        rows = r.integers(0, inputs.shape[0], batch_size)
        x, y = inputs[rows], targets[rows]
        loss, _ = model.loss_and_grads(x, y, ignore_index=IGNORE)
        adamw_update_(flat, grads, m, v, step=step + 1, lr=lr_at(step, steps, lr, warmup),
                      weight_decay=weight_decay)
        losses.append(loss)
        if log_every and (step % log_every == 0 or step == steps - 1):
            print(f"step {step:5d}  loss {loss:.4f}  ({time.perf_counter() - t0:.1f}s)",
                  flush=True)
        stop = time_limit is not None and time.perf_counter() - t0 > time_limit
        if callback is not None and callback_every and (
                (step + 1) % callback_every == 0 or step == steps - 1 or stop):
            callback(step + 1)
        if stop:
            break
    return losses


def answer_perplexity(model, inputs, targets, batch_size=1024):
    """exp(mean cross-entropy of the answer tokens and <EOS>), teacher forcing."""
    total, count = 0.0, 0
    for i in range(0, inputs.shape[0], batch_size):
        x, y = inputs[i:i + batch_size], targets[i:i + batch_size]
        n = int((y != IGNORE).sum())
        total += model.loss(x, y, ignore_index=IGNORE) * n
        count += n
    return math.exp(total / count)


def exact_match(model, examples, tok, *, num_beams=1):
    """(fraction of problems whose greedy (or beam) answer, up to <EOS>, is right; the
    decoded answers, None where no <EOS> came)."""
    from ..generate import generate
    prompts = [np.concatenate([[tok.sos_id], tok.encode(ex.prompt)]) for ex in examples]
    width = max(len(ex.answer) for ex in examples) + 1
    out = generate(model, prompts, max_new_tokens=width, eos_id=tok.eos_id,
                   num_beams=num_beams)
    answers = []
    for t in out.tokens:
        t = t.tolist()
        answers.append(tok.decode(t[:-1]) if t and t[-1] == tok.eos_id else None)
    correct = sum(a == ex.answer for a, ex in zip(answers, examples))
    return correct / len(examples), answers


def _settings(ctx):
    full = dict(ops="+-", digits=2, n_layer=2, n_head=4, n_embd=128, steps=3000,
                batch_size=128, lr=3e-3, warmup=100, evals=8, curve_problems=400)
    quick = dict(ops="+-", digits=2, n_layer=2, n_head=4, n_embd=64, steps=300,
                 batch_size=64, lr=3e-3, warmup=30, evals=3, curve_problems=100)
    return ctx.pick(full, quick)


@register(NAME, "arithmetic: two-digit sums and differences, answer ppl < 1.5, exact match")
def study(ctx):
    """Train a small GPT on two-digit sums and differences; per operation the held-out
    answer perplexity and exact match (greedy and 3-beam); returns the Report."""
    from ..data import ArithmeticTask
    s = _settings(ctx)
    task = ArithmeticTask(digits=s["digits"], ops=s["ops"], seed=0)
    tok = task.tokenizer()
    train_ex, val_ex = task.all_examples("train"), task.all_examples("val")
    ctx.meta["data"] = {"source": f"synthetic ArithmeticTask(digits={s['digits']}, "
                        f"ops={s['ops']!r})", "train_problems": len(train_ex),
                        "heldout_problems": len(val_ex)}
    x_tr, y_tr = encode_examples(train_ex, tok)
    x_va, y_va = encode_examples(val_ex, tok)
    model = make_model(tok.vocab_size, n_layer=s["n_layer"], n_head=s["n_head"],
                       n_embd=s["n_embd"], seed=ctx.seed)
    # the learning curve: held-out perplexity and exact match on a fixed subset
    sub = ctx.rng(7).choice(len(val_ex), min(s["curve_problems"], len(val_ex)), replace=False)
    sub_ex = [val_ex[i] for i in sub]
    curve, eval_s = [], [0.0]

    def evaluate(step):
        t = time.perf_counter()
        model.eval()
        curve.append((step, answer_perplexity(model, x_va[sub], y_va[sub]),
                      exact_match(model, sub_ex, tok)[0]))
        model.train()
        eval_s[0] += time.perf_counter() - t

    evaluate(0)
    t0 = time.perf_counter()
    losses = train(model, x_tr, y_tr, steps=s["steps"], batch_size=s["batch_size"],
                   lr=s["lr"], warmup=s["warmup"], seed=ctx.seed, callback=evaluate,
                   callback_every=max(1, s["steps"] // s["evals"]))
    train_s = time.perf_counter() - t0 - eval_s[0]      # training alone
    model.eval()
    _, greedy = exact_match(model, val_ex, tok)
    _, beam = exact_match(model, val_ex, tok, num_beams=3)
    rows = []
    for op in list(s["ops"]) + ["all"]:
        idx = [i for i, ex in enumerate(val_ex) if op == "all" or op in ex.prompt]
        tri = [i for i, ex in enumerate(train_ex) if op == "all" or op in ex.prompt]
        rows.append({
            "operation": {"+": "a+b", "-": "a-b", "*": "a*b"}.get(op, "all"),
            "held-out problems": len(idx),
            "answer ppl (held-out)": answer_perplexity(model, x_va[idx], y_va[idx]),
            "exact match greedy %": 100 * float(np.mean([greedy[i] == val_ex[i].answer
                                                         for i in idx])),
            "exact match beam-3 %": 100 * float(np.mean([beam[i] == val_ex[i].answer
                                                         for i in idx])),
            "answer ppl (train)": answer_perplexity(model, x_tr[tri], y_tr[tri]),
        })
    allrow = rows[-1]
    report = Report(NAME, f"Arithmetic: {s['digits']}-digit sums and differences with a "
                    f"{s['n_layer']}-layer GPT", columns=list(rows[0]), rows=rows)
    report.notes += [
        f"Setup: GPT {s['n_layer']} layers, {s['n_head']} heads, width {s['n_embd']}, ReLU, "
        f"{model.num_parameters} parameters; {len(train_ex)} training problems, "
        f"{len(val_ex)} held out (never trained on, mirrors included); {len(losses)} AdamW "
        f"steps of {s['batch_size']} problems (lr {s['lr']}, warmup {s['warmup']}, cosine to "
        f"lr/10) in {train_s:.0f} s; loss on the answer tokens and <EOS>. Exact match: the "
        "KV-cached greedy (or 3-beam) answer up to <EOS> equals the true one.",
        f"The seed's target, answer perplexity < 1.5 on held-out problems: "
        f"{'met' if allrow['answer ppl (held-out)'] < 1.5 else 'NOT met'} "
        f"({allrow['answer ppl (held-out)']:.3f}).",
    ]
    report.meta["settings"] = s
    report.meta["train_seconds"] = round(train_s, 1)
    report.meta["curve"] = [dict(step=a, ppl=b, exact_match=c) for a, b, c in curve]
    report.meta["losses_every_10"] = [float(x) for x in losses[::10]]
    wrong = [(ex.prompt, ex.answer, g) for ex, g in zip(val_ex, greedy) if g != ex.answer]
    report.meta["greedy_errors_sample"] = wrong[:20]
    _figures(ctx, report, losses, curve)
    return report


def _figures(ctx, report, losses, curve):
    fig = ctx.figure(11, 4)
    a, b = fig.subplots(1, 2)
    k = 20
    sm = np.convolve(losses, np.ones(k) / k, mode="valid") if len(losses) > k else losses
    a.plot(np.arange(len(sm)) + (len(losses) - len(sm)), sm)
    a.set_xlabel("step")
    a.set_ylabel(f"training loss (answer tokens; mean of {k} steps)")
    a.set_title("Training loss")
    steps = [c[0] for c in curve]
    b.plot(steps, [c[1] for c in curve], marker="o", color="C0", label="answer perplexity")
    b.axhline(1.5, color="C0", ls=":", lw=1)
    b.set_yscale("log")
    b.set_xlabel("step")
    b.set_ylabel("held-out answer perplexity (log)", color="C0")
    b2 = b.twinx()
    b2.plot(steps, [100 * c[2] for c in curve], marker="s", color="C1", label="exact match")
    b2.set_ylabel("held-out exact match, greedy (%)", color="C1")
    b2.set_ylim(0, 100)
    b.set_title("Held-out subset during training (dotted: ppl 1.5)")
    report.add_figure(fig, "arithmetic.png")
