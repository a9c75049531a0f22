"""python -m transformer_c.grade: grade a student file, or export a reference snapshot."""
import argparse
import sys

from . import export_snapshot, grade
from .suites import SUITES


def main(argv=None):
    """CLI entry point; returns the exit status (0 all passed, 1 some failed, 2 usage)."""
    ap = argparse.ArgumentParser(prog="python -m transformer_c.grade",
                                 description="Grade a student's NumPy implementation against "
                                             "transformer_c (or a reference snapshot).")
    ap.add_argument("student_file", nargs="?", help="the student's .py file")
    ap.add_argument("--suite", choices=sorted(SUITES),
                    help="mytorch (CMU HW4), mlp (POSTECH), hw4lib (masks)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the visible inputs")
    ap.add_argument("--hidden-seed", type=int, default=None,
                    help="also run every test on inputs from this seed (hidden tests)")
    ap.add_argument("--snapshot", help="grade against this exported .npz instead of "
                                       "transformer_c (its suite and seeds are used)")
    ap.add_argument("--results", default=None,
                    help="write Gradescope results.json here (default: results.json when "
                         "grading)")
    ap.add_argument("--timeout", type=float, default=60.0,
                    help="seconds one test may take (default 60; 0 disables)")
    ap.add_argument("--export-snapshot", metavar="OUT_NPZ",
                    help="write the suite's cases and expected results to OUT_NPZ and exit")
    a = ap.parse_args(argv)
    if a.export_snapshot:
        if not a.suite:
            ap.error("--export-snapshot needs --suite")
        n = export_snapshot(a.export_snapshot, a.suite, seed=a.seed, hidden_seed=a.hidden_seed)
        print(f"wrote {n} cases of suite {a.suite} to {a.export_snapshot}")
        return 0
    if not a.student_file:
        ap.error("STUDENT_FILE is required (or --export-snapshot)")
    if not a.suite and not a.snapshot:
        ap.error("--suite is required (or --snapshot)")
    try:
        result = grade(a.student_file, a.suite, seed=a.seed, hidden_seed=a.hidden_seed,
                       snapshot=a.snapshot, timeout=a.timeout or None)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(result.report())
    result.write_results(a.results or "results.json")
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
