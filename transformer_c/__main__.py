"""Command line: ``python -m transformer_c`` (or ``transformer-c``).

With no arguments it runs the demo: a gradient check of a small Decoder against finite
differences, then training on an embedded synthetic task (sequence reversal).
"""
import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="transformer_c", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300, help="training steps (default 300)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--threads", type=int, default=None, help="OpenMP threads")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be >= 1")
    import transformer_c
    from transformer_c.demo import run

    if args.threads:
        transformer_c.set_num_threads(args.threads)
    run(steps=args.steps, seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
