"""Integer addition with a small decoder-only GPT, trained and decoded end to end.

Each example is "<SOS>37+85=122<EOS>" (transformer_c.data.ArithmeticTask, two-digit
operands, its exact train/val split: a problem and its mirror b+a are always in the same
split, so no held-out problem is ever trained on). The loss is the cross-entropy of the
answer tokens and the final <EOS> only (the operands are random: nothing to learn there).
Evaluation on every held-out problem:

- exact match: greedy decoding (transformer_c.generate with the GPT's KV cache, all
  problems in one batch of left-padded prompts) from "<SOS>37+85=" until <EOS>, compared
  with the true sum;
- perplexity of the answer tokens: exp(mean cross-entropy of the answer tokens and <EOS>)
  with teacher forcing.

python examples/addition.py [--steps 3000] [--batch-size 128] [--seed 0] [--threads 2]
                            [--save addition.safetensors]
(from a checkout with the in-place build: PYTHONPATH=. python examples/addition.py)

Prints the training loss as it goes and one final JSON line with the results.
"""
import argparse
import json
import math
import time

import numpy as np

import transformer_c as tc
from transformer_c.data import ArithmeticTask
from transformer_c.functional import adamw_update_
from transformer_c.generate import generate
from transformer_c.nn import GPT, GPTConfig

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
          weight_decay=0.01, seed=0, log_every=0, time_limit=None):
    """AdamW on the flat parameter buffer; batches drawn uniformly from (inputs, targets).
    Returns the list of training losses (one per step). Stops early after ``time_limit``
    seconds when given."""
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
        if time_limit is not None and time.perf_counter() - t0 > time_limit:
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
    """Fraction of problems whose greedy (or beam) answer, up to <EOS>, equals the sum;
    and the decoded answers."""
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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--n-layer", type=int, default=2)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--log-every", type=int, default=250)
    p.add_argument("--save", default=None, help="write the trained GPT (safetensors)")
    a = p.parse_args(argv)
    if a.threads:
        tc.set_num_threads(a.threads)

    task = ArithmeticTask(digits=2, ops="+", seed=0)
    tok = task.tokenizer()
    train_ex, val_ex = task.all_examples("train"), task.all_examples("val")
    x_tr, y_tr = encode_examples(train_ex, tok)
    x_va, y_va = encode_examples(val_ex, tok)
    model = make_model(tok.vocab_size, n_layer=a.n_layer, n_head=a.n_head, n_embd=a.n_embd,
                       seed=a.seed)
    print(f"{model!r}; {len(train_ex)} training problems, {len(val_ex)} held out", flush=True)
    t0 = time.perf_counter()
    losses = train(model, x_tr, y_tr, steps=a.steps, batch_size=a.batch_size, lr=a.lr,
                   seed=a.seed, log_every=a.log_every)
    train_s = time.perf_counter() - t0
    model.eval()
    t0 = time.perf_counter()
    acc, _ = exact_match(model, val_ex, tok)
    decode_s = time.perf_counter() - t0
    acc_beam, _ = exact_match(model, val_ex, tok, num_beams=3)
    result = {
        "task": "addition 2-digit", "steps": len(losses), "batch_size": a.batch_size,
        "n_layer": a.n_layer, "n_head": a.n_head, "n_embd": a.n_embd,
        "params": model.num_parameters, "train_seconds": round(train_s, 1),
        "final_train_loss": round(float(np.mean(losses[-50:])), 4),
        "heldout_problems": len(val_ex),
        "heldout_exact_match_greedy": round(acc, 4),
        "heldout_exact_match_beam3": round(acc_beam, 4),
        "heldout_answer_perplexity": round(answer_perplexity(model, x_va, y_va), 4),
        "train_answer_perplexity": round(answer_perplexity(model, x_tr, y_tr), 4),
        "greedy_decode_seconds": round(decode_s, 2),
    }
    print(json.dumps(result), flush=True)
    if a.save:
        model.save(a.save)
    return result


if __name__ == "__main__":
    main()
