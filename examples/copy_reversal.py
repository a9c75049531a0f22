"""Sequence copy and reversal with a small encoder-decoder, trained and decoded end to end.

The source is a random string of ``--min-len``..``--max-len`` symbols (default 5-20) over
``--symbols`` symbols (default 12: vocabulary 17 with the tasks' "=" separator, unused
here, and <PAD> <SOS> <EOS> <UNK>), followed by <EOS> (it marks the end for reversal); the
target is the same string (copy) or the string reversed (reversal), then <EOS>.
transformer_c.data.CopyTask / ReversalTask draw the strings, with an exact train/held-out
split (a held-out string is never trained on).
The decoder input is <SOS> + target; the loss is the mean cross-entropy over the target
tokens and the final <EOS> (padding ignored); AdamW with a linear warmup and a cosine
decay.

Evaluation on ``--eval`` held-out strings: exact match of greedy decoding (transformer_c.
generate over the KV-cached EncoderDecoderModel: the encoder and the cross-attention keys
and values run once per batch, one C call per decoded token) and of beam search, from
<SOS> until <EOS>.

python examples/copy_reversal.py --task copy|reversal [--steps 1000] [--batch-size 64]
                                 [--threads 1] [--seed 0] [--eval 1000] [--beams 4]
(from a checkout with the in-place build: PYTHONPATH=. python examples/copy_reversal.py)

Prints the training loss as it goes and one final JSON line with the results.
"""
import argparse
import json
import math
import time

import numpy as np

import transformer_c as tc
from transformer_c.data import CopyTask, ReversalTask
from transformer_c.functional import adamw_update_
from transformer_c.generate import EncoderDecoderModel, generate
from transformer_c.nn import EncoderDecoder, EncoderDecoderConfig

SYMBOLS = "abcdefghijklmnopqrstuvwxyz"


def make_task(name, *, symbols=12, min_len=5, max_len=20, seed=0):
    cls = {"copy": CopyTask, "reversal": ReversalTask}[name]
    task = cls(min_len=min_len, max_len=max_len, symbols=SYMBOLS[:symbols], seed=seed)
    return task, task.tokenizer()


def encode_examples(examples, tok):
    """(src, src_lengths, tgt_in, tgt_out): src = string + <EOS> (right-padded with <PAD>),
    tgt_in = <SOS> + answer, tgt_out = answer + <EOS> (both padded with <PAD>, which the
    loss ignores)."""
    srcs = [np.append(tok.encode(ex.prompt[:-1]), tok.eos_id) for ex in examples]
    answers = [tok.encode(ex.answer) for ex in examples]
    S, T = max(s.size for s in srcs), max(a.size for a in answers) + 1
    src = np.full((len(srcs), S), tok.pad_id, dtype=np.int64)
    tgt_in = np.full((len(srcs), T), tok.pad_id, dtype=np.int64)
    tgt_out = np.full((len(srcs), T), tok.pad_id, dtype=np.int64)
    for i, (s, a) in enumerate(zip(srcs, answers)):
        src[i, :s.size] = s
        tgt_in[i, 0] = tok.sos_id
        tgt_in[i, 1:a.size + 1] = a
        tgt_out[i, :a.size] = a
        tgt_out[i, a.size] = tok.eos_id
    lengths = np.array([s.size for s in srcs], dtype=np.int64)
    return src, lengths, tgt_in, tgt_out


def make_model(vocab_size, *, n_layer=2, n_head=4, n_embd=64, block_size=24, seed=0,
               norm="pre", position="learned", dtype=np.float32):
    cfg = EncoderDecoderConfig(src_vocab_size=vocab_size, block_size=block_size,
                               n_encoder_layer=n_layer, n_decoder_layer=n_layer,
                               n_head=n_head, n_embd=n_embd, dropout=0.0, norm=norm,
                               position=position, activation="relu", share_embeddings=True,
                               pad_id=0)
    return EncoderDecoder.create(cfg, np.random.default_rng(seed), dtype=dtype)


def lr_at(step, steps, lr, warmup):
    """Linear warmup, then cosine decay to lr / 10."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def train(model, task, tok, *, steps, batch_size=64, lr=3e-3, warmup=50, weight_decay=0.01,
          seed=0, log_every=0):
    """AdamW on the flat parameter buffer, fresh training strings every step. Returns the
    list of training losses (one per step)."""
    rng = np.random.default_rng(seed)
    flat, grads = model.flat_parameters, model.flat_grads
    m, v = np.zeros_like(flat), np.zeros_like(flat)
    losses = []
    t0 = time.perf_counter()
    for step in range(steps):
        src, lengths, tgt_in, tgt_out = encode_examples(task.sample(batch_size, rng), tok)
        loss, _ = model.loss_and_grads(src, tgt_in, tgt_out, src_lengths=lengths)
        adamw_update_(flat, grads, m, v, step=step + 1, lr=lr_at(step, steps, lr, warmup),
                      weight_decay=weight_decay)
        losses.append(loss)
        if log_every and (step % log_every == 0 or step == steps - 1):
            print(f"step {step:5d}  loss {loss:.4f}  ({time.perf_counter() - t0:.1f}s)",
                  flush=True)
    return losses


def exact_match(model, examples, tok, *, num_beams=1, batch_size=250):
    """Fraction of held-out strings whose decoded target, up to <EOS>, is the answer; and
    the decoded answers (None where no <EOS> came)."""
    answers = []
    adapter = EncoderDecoderModel(model, bos_id=tok.sos_id)
    for i in range(0, len(examples), batch_size):
        part = examples[i:i + batch_size]
        sources = [np.append(tok.encode(ex.prompt[:-1]), tok.eos_id) for ex in part]
        width = max(len(ex.answer) for ex in part) + 1
        out = generate(adapter, sources, max_new_tokens=width, eos_id=tok.eos_id,
                       num_beams=num_beams)
        for t in out.tokens:
            t = t.tolist()
            answers.append(tok.decode(t[:-1]) if t and t[-1] == tok.eos_id else None)
    correct = sum(a == ex.answer for a, ex in zip(answers, examples))
    return correct / max(1, len(examples)), answers


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", choices=("copy", "reversal"), default="copy")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--n-layer", type=int, default=2)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=64)
    p.add_argument("--symbols", type=int, default=12)
    p.add_argument("--min-len", type=int, default=5)
    p.add_argument("--max-len", type=int, default=20)
    p.add_argument("--eval", type=int, default=1000, help="held-out strings to decode")
    p.add_argument("--beams", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--save", default=None, help="write the trained model (safetensors)")
    a = p.parse_args(argv)
    if a.threads:
        tc.set_num_threads(a.threads)

    task, tok = make_task(a.task, symbols=a.symbols, min_len=a.min_len, max_len=a.max_len)
    model = make_model(tok.vocab_size, n_layer=a.n_layer, n_head=a.n_head, n_embd=a.n_embd,
                       block_size=a.max_len + 2, seed=a.seed)
    print(f"{a.task}: {model!r}", flush=True)
    t0 = time.perf_counter()
    losses = train(model, task, tok, steps=a.steps, batch_size=a.batch_size, lr=a.lr,
                   seed=a.seed, log_every=a.log_every)
    train_s = time.perf_counter() - t0
    model.eval()
    held_out = task.sample(a.eval, np.random.default_rng(a.seed + 1), "val")
    t0 = time.perf_counter()
    acc, _ = exact_match(model, held_out, tok)
    decode_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    acc_beam, _ = exact_match(model, held_out, tok, num_beams=a.beams)
    beam_s = time.perf_counter() - t0
    below = next((i + 1 for i, x in enumerate(losses) if x < 0.1), None)
    result = {
        "task": a.task, "lengths": [a.min_len, a.max_len], "vocab_size": tok.vocab_size,
        "steps": len(losses), "batch_size": a.batch_size, "lr": a.lr, "n_layer": a.n_layer,
        "n_head": a.n_head, "n_embd": a.n_embd, "params": model.num_parameters,
        "train_seconds": round(train_s, 1),
        "first_step_loss_below_0.1": below,
        "final_train_loss": round(float(np.mean(losses[-20:])), 4),
        "heldout_sequences": len(held_out),
        "heldout_exact_match_greedy": round(acc, 4),
        f"heldout_exact_match_beam{a.beams}": round(acc_beam, 4),
        "greedy_decode_seconds": round(decode_s, 2),
        "beam_decode_seconds": round(beam_s, 2),
    }
    print(json.dumps(result), flush=True)
    if a.save:
        model.save(a.save)
    return result


if __name__ == "__main__":
    main()
