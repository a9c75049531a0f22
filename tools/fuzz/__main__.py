"""Fuzz every entry point of transformer_c, each case in a worker subprocess.

    python -m tools.fuzz --short                  the CI run: seed 0, SHORT_CALLS calls
    python -m tools.fuzz --calls 100000 --seed 7  a long local run
    python -m tools.fuzz --seed 7 --case 1234     rerun one case here (the reproducer)
    python -m tools.fuzz --known                  check the known defects still reproduce
    python -m tools.fuzz --run-known ...          run the known defects' cases too

Prints a table per family (calls, ok, clean exceptions, expected exceptions, other
exceptions, crashes, hangs, known defects skipped) and every crash, hang and other exception
with a one-line reproducer. Exit status 1 if there was any crash, hang or other exception.
"""
import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time

SHORT_CALLS = 80000
COLUMNS = ["ok", "clean", "expected", "other", "crash", "hang", "known"]


def summarize(results, seed, seconds):
    fam = collections.defaultdict(collections.Counter)
    for r in results:
        family = r.get("target", "?").split(".")[0]
        fam[family][r["result"]] += 1
        fam[family]["calls"] += 1
    lines = [f"{'family':<11}{'calls':>7}" + "".join(f"{c:>9}" for c in COLUMNS)]
    total = collections.Counter()
    for family in sorted(fam):
        total.update(fam[family])
        lines.append(f"{family:<11}{fam[family]['calls']:>7}" + "".join(f"{fam[family][c]:>9}" for c in COLUMNS))
    lines.append(f"{'total':<11}{total['calls']:>7}" + "".join(f"{total[c]:>9}" for c in COLUMNS))
    targets = {r.get("target") for r in results}
    lines.append(f"{len(targets)} distinct targets, seed {seed}, {seconds:.0f} s, "
                 f"{total['calls'] / max(seconds, 1e-9):.0f} calls/s")
    return "\n".join(lines), total


def report(results, seed, per_group=3):
    """Every crash, hang and other exception with its reproducer; at most per_group of the
    same kind (target, outcome, first words of the error), then a count."""
    out = []
    groups = collections.Counter()
    for r in sorted(results, key=lambda r: r["index"]):
        if r["result"] in ("crash", "hang", "other"):
            key = (r.get("target"), r["result"], r["error"][:40])
            groups[key] += 1
            if groups[key] > per_group:
                continue
            out.append(f"{r['result'].upper()} case {r['index']} {r.get('target', '?')}({r.get('describe', '')})"
                       f"{' [' + ', '.join(r['tags']) + ']' if r.get('tags') else ''}"
                       f"\n  {r['error']}\n  reproduce: python -m tools.fuzz --seed {seed} --case {r['index']}")
            if r.get("history"):
                out.append(f"  or with the worker's previous cases: python -m tools.fuzz --seed {seed} "
                           f"--case {' '.join(map(str, r['history'] + [r['index']]))}")
            for key in ("stderr", "traceback"):
                if r.get(key):
                    out.append("  | " + r[key].strip().replace("\n", "\n  | "))
    for (target, result, error), n in sorted(groups.items(), key=str):
        if n > per_group:
            out.append(f"... {n - per_group} more {result} of {target} ({error})")
    known = collections.Counter(r["error"] for r in results if r["result"] == "known")
    for name, n in sorted(known.items()):
        out.append(f"known (skipped, not run): {n} case(s) of {name}")
    return "\n".join(out)


def coverage(results):
    """Public functions and raw _C callables never called in this run."""
    import inspect
    from transformer_c import functional as F
    from . import record
    hit = {r.get("target") for r in results}
    fn = {f"functional.{n}" for n in dir(F) if not n.startswith("_") and inspect.isfunction(getattr(F, n))}
    raw = {f"_C.{n}" for n in record.raw_names()} - {"_C.set_num_threads", "_C.set_data_parallel", "_C.gemm_set_kernel"}
    return sorted((fn | raw) - hit), len(fn), len(raw)


def check_known():
    """Run each known defect's reproducer in a subprocess: 0 if all still crash."""
    from .known import HANG_SECONDS, KNOWN
    from .pool import ROOT
    # Under tools/sanitize.sh the reports of these expected crashes go to stderr, not to the
    # report files that fail the sanitizer run.
    env = dict(os.environ)
    for var in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
        if var in env:
            env[var] = ":".join(o for o in env[var].split(":") if not o.startswith("log_path="))
    bad = 0
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    for name, entry in KNOWN.items():
        try:
            p = subprocess.run([sys.executable, "-c", entry["reproducer"]], capture_output=True,
                               timeout=HANG_SECONDS if entry.get("hang") else 300, env=env, cwd=ROOT)
        except subprocess.TimeoutExpired:
            ok = entry.get("hang", False)
            print(f"{'still hangs' if ok else 'HANGS, not a crash'} (over {HANG_SECONDS} s): {name}")
            bad += not ok
            continue
        # died by a signal, or exited non-zero without a Python traceback (libgomp's exit)
        crashed = p.returncode < 0 or (p.returncode != 0 and b"Traceback" not in p.stderr)
        crashed = crashed and not entry.get("hang")
        print(f"{'still crashes' if crashed else 'FIXED? does not crash or hang'} (exit {p.returncode}): {name}")
        if not crashed:
            print("  delete its entry in tools/fuzz/known.py")
            bad += 1
    return 1 if bad else 0


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tools.fuzz", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--short", action="store_true", help=f"the CI run: seed 0, {SHORT_CALLS} calls")
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--first", type=int, default=0, help="index of the first case")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds before a case is a hang")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--case", type=int, nargs="+", help="run these cases in this process")
    ap.add_argument("--known", action="store_true", help="check the known defects still crash")
    ap.add_argument("--run-known", action="store_true",
                    help="run the cases of known defects too (they are skipped by default)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        from . import worker
        return worker.main(a.seed, a.tmp)
    if a.known:
        return check_known()
    if a.case is not None:
        from . import cases, worker
        bad = 0
        with tempfile.TemporaryDirectory() as tmp:
            ctx = cases.Context(tmp)
            restore = worker.Restore()
            for index in a.case:
                res = worker.run_case(a.seed, index, ctx, lambda h: print(
                    f"case {h['index']}: {h['target']}({h['describe']})", flush=True))
                restore()
                print(json.dumps(res, indent=1))
                bad += res["result"] not in ("ok", "clean", "expected", "known")
        return 1 if bad else 0
    if a.short:   # seed 0; SHORT_CALLS calls unless --calls is given
        a.seed = 0
        a.calls = SHORT_CALLS if "--calls" not in (argv if argv is not None else sys.argv) else a.calls
    if a.run_known:
        os.environ["TC_FUZZ_RUN_KNOWN"] = "1"
    from . import pool
    t0 = time.monotonic()
    results = pool.run(a.seed, range(a.first, a.first + a.calls), workers=a.workers, timeout=a.timeout)
    seconds = time.monotonic() - t0
    table, total = summarize(results, a.seed, seconds)
    missed, n_fn, n_raw = coverage(results)
    print(table)
    print(f"covered: {n_fn} public functions and {n_raw} raw _C callables (+ 3 setters in 'state'); "
          f"never called in this run: {', '.join(missed) or 'none'}")
    text = report(results, a.seed)
    if text:
        print(text)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"seed": a.seed, "seconds": seconds, "total": dict(total), "missed": missed,
                       "results": [r for r in results if r["result"] not in ("ok", "clean")]}, f, indent=1)
    failed = total["crash"] + total["hang"] + total["other"]
    print("FAILED" if failed else "OK", f"({total['crash']} crashes, {total['hang']} hangs, "
          f"{total['other']} other exceptions)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
