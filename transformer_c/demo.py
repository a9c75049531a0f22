"""The main job for now: gradient-check a small Decoder, then train it on sequence reversal.

Run with ``python -m transformer_c`` (see ``--help``). Everything runs in the C kernels
through the coursework module interface; the task is generated on the fly, so no data
is needed.
"""
import time

import numpy as np

from . import nn, optim
from .tree import flatten, unflatten

SEP = 0  # token 0 separates the prompt from the answer; digits are tokens 1..V-1


def reversal_batch(rng, batch, length, vocab):
    """ids (B, 2L+1): L random tokens, SEP, the same tokens reversed; targets (B, 2L+1)
    are the next tokens, with -100 (ignored) everywhere except the answer positions."""
    seq = rng.integers(1, vocab, size=(batch, length))
    ids = np.concatenate([seq, np.full((batch, 1), SEP), seq[:, ::-1]], axis=1)
    targets = np.full_like(ids, -100)
    targets[:, length:-1] = ids[:, length + 1:]
    return ids[:, :-1], targets[:, :-1]


def gradient_check(model, ids, rng, eps=1e-6, samples=4):
    """Max relative error between backward() and central differences of sum(logits * G),
    per parameter group, over a few sampled entries of every leaf."""
    logits = model.forward(x=ids)
    G = rng.standard_normal(logits.shape)
    grads = flatten(model.backward(G, x=ids)[0])
    params = {k: v.copy() for k, v in flatten(model.parameters).items()}
    errors = {}
    for name, leaf in params.items():
        for j in rng.choice(leaf.size, size=min(samples, leaf.size), replace=False):
            idx = np.unravel_index(j, leaf.shape)
            old = leaf[idx]
            values = []
            for delta in (eps, -eps):
                leaf[idx] = old + delta
                values.append(np.sum(model.with_parameters(unflatten(params, like=model.parameters)).forward(x=ids) * G))
            leaf[idx] = old
            numeric = (values[0] - values[1]) / (2 * eps)
            err = abs(numeric - grads[name][idx]) / max(1e-8, abs(numeric) + abs(grads[name][idx]))
            group = name.split("/")[0]
            errors[group] = max(errors.get(group, 0.0), err)
    return errors


def run(steps=300, seed=0, length=6, vocab=10, width=32, heads=2, batch=32, lr=3e-3,
        log_every=25, out=print):
    """Gradient-check then train; returns the list of (step, loss)."""
    rng = np.random.default_rng(seed)
    small = nn.Decoder.create(input_size=vocab, hidden_size=16, output_size=8,
                              random_generator=rng, num_heads=2, seq_len=16)
    ids, _ = reversal_batch(rng, 2, 3, vocab)
    out("Gradient check (float64, central differences, max relative error per group):")
    for group, err in gradient_check(small, ids, rng).items():
        out(f"  {group:10s} {err:.2e}")

    model = nn.Decoder.create(input_size=vocab, hidden_size=4 * width, output_size=width,
                              random_generator=rng, num_heads=heads, seq_len=2 * length + 1,
                              norm="pre")
    loss_fn = nn.CrossEntropyLoss()
    opt = optim.Adam(learning_rate=lr)
    params = model.parameters
    out(f"\nTraining a {len(model.layers)}-layer decoder (width {width}, {heads} heads) to "
        f"reverse {length} tokens, batch {batch}, {steps} steps:")
    history, t0 = [], time.perf_counter()
    for step in range(1, steps + 1):
        ids, targets = reversal_batch(rng, batch, length, vocab)
        model = model.with_parameters(params)
        logits = model.forward(x=ids)
        flat_logits, flat_targets = logits.reshape(-1, vocab), targets.reshape(-1)
        loss = loss_fn.forward(flat_logits, flat_targets)
        dlogits = loss_fn.backward(flat_logits, flat_targets).reshape(logits.shape)
        grads, _ = model.backward(dlogits, x=ids)
        params, opt = opt.step(params, grads)
        history.append((step, loss))
        if step == 1 or step % log_every == 0 or step == steps:
            out(f"  step {step:4d}  loss {loss:.4f}  ({time.perf_counter() - t0:.1f}s)")
    model = model.with_parameters(params)
    ids, targets = reversal_batch(rng, 256, length, vocab)
    pred = model.forward(x=ids).argmax(-1)
    answer = targets != -100
    acc = float(np.mean(np.all((pred == targets) | ~answer, axis=1)))
    out(f"Exact-match accuracy on 256 new sequences (teacher forcing): {acc:.1%}")
    return history
