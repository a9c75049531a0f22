"""``python -m transformer_c`` (or ``transformer-c``): see transformer_c.cli.

With no arguments it trains a small character-level GPT on the embedded corpus (the Python
standard library's source) for about 3 minutes on 2 cores and prints a sample;
``python -m transformer_c demo`` runs the gradient check + sequence-reversal demo.
"""
import sys

from transformer_c.cli import main

if __name__ == "__main__":
    sys.exit(main())
