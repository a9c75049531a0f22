"""Integer addition with a small decoder-only GPT, trained and decoded end to end: a thin
command-line caller of the arithmetic study's pipeline (transformer_c/studies/arithmetic.py:
the encoding, model, training loop and evaluation live there; ``python -m transformer_c
study arithmetic`` runs sums and differences).

Each example is "<SOS>37+85=122<EOS>" (transformer_c.data.ArithmeticTask, two-digit
operands, its exact train/val split: a problem and its mirror b+a are always in the same
split, so no held-out problem is ever trained on). The loss is the cross-entropy of the
answer tokens and the final <EOS> only. Evaluation on every held-out problem: exact match
of the KV-cached greedy (and 3-beam) answer, and the answer tokens' perplexity.

python examples/addition.py [--steps 3000] [--batch-size 128] [--seed 0] [--threads 2]
                            [--save addition.safetensors]
(from a checkout with the in-place build: PYTHONPATH=. python examples/addition.py)

Prints the training loss as it goes and one final JSON line with the results.
"""
import argparse
import json
import time

import numpy as np

import transformer_c as tc
from transformer_c.data import ArithmeticTask
from transformer_c.studies.arithmetic import (IGNORE, answer_perplexity,  # noqa: F401
                                              encode_examples, exact_match, make_model, train)


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
