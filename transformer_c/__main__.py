"""``python -m transformer_c`` (or ``transformer-c``): see transformer_c.cli.

With no arguments it trains a small character-level GPT on the embedded corpus (the Python
standard library's source) for about 70 s on 2 idle cores (1000 steps; README.md states the
measurements) and prints a sample;
``python -m transformer_c demo`` runs the gradient check + sequence-reversal demo.
"""
import sys

from transformer_c.cli import main

if __name__ == "__main__":
    sys.exit(main())
