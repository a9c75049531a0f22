"""A fuzz worker: builds the context once, then runs the cases whose indices arrive on
stdin, one per line. For each it writes "start {index, target, describe, tags}" before the
case runs and a JSON result line when it returns, on the protocol pipe (the original stdout; the case's own prints go to
stderr). Process-wide settings are restored after every case."""
import json
import os
import sys
import time
import traceback
import warnings

import numpy as np

from . import cases, known, outcome


def run_case(seed, index, ctx, on_start=None):
    """Run one case in this process: a dict with target, result, error, describe, seconds.
    on_start(header) is called with the index, target and describe before the case runs."""
    try:
        case = cases.case(seed, index, ctx)
    except Exception as e:  # a bug of the harness: reported as "other", never hidden
        if on_start:
            on_start({"index": index, "target": "harness.build", "describe": ""})
        return {"index": index, "target": "harness.build", "describe": "", "result": "other",
                "error": f"building the case raised {type(e).__name__}: {e}", "seconds": 0.0,
                "traceback": "".join(traceback.format_exception(type(e), e, e.__traceback__)[-4:])}
    res = {"index": index, "target": case.target, "describe": case.describe}
    if case.tags:
        res["tags"] = sorted(case.tags)
    if on_start:
        on_start(dict(res))
    name = known.known_defect(case)
    if name and not os.environ.get("TC_FUZZ_RUN_KNOWN"):
        return dict(res, result="known", error=name, seconds=0.0)
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            case.run()
        res.update(result="ok", error="")
    except BaseException as e:  # noqa: BLE001 - everything is counted
        if isinstance(e, KeyboardInterrupt):
            raise
        kind = outcome.classify(case.target, e)
        msg = str(e).splitlines()[0][:200] if str(e) else ""
        res.update(result=kind, error=f"{type(e).__name__}: {msg}")
        if kind == "other":
            res["traceback"] = "".join(traceback.format_exception(type(e), e, e.__traceback__)[-4:])
    res["seconds"] = time.perf_counter() - t0
    return res


class Restore:
    """Puts the process-wide settings back after a case changed them."""

    def __init__(self):
        import transformer_c as tc
        self.tc = tc
        self.threads = tc.get_num_threads()
        self.dp = tc.get_data_parallel()

    def __call__(self):
        self.tc.set_num_threads(self.threads)
        self.tc.set_data_parallel(self.dp)
        self.tc._C.gemm_set_kernel("auto")


def inject(index):
    """Test hook (TC_FUZZ_INJECT="crash:I,hang:J"): make case I abort, case J hang."""
    spec = os.environ.get("TC_FUZZ_INJECT", "")
    for item in filter(None, spec.split(",")):
        what, i = item.split(":")
        if int(i) == index:
            if what == "crash":
                os.abort()
            time.sleep(3600)


ADDRESS_SPACE = 8 << 30


def limit_memory():
    """Cap the worker's address space so a junk size fails fast (MemoryError) instead of
    filling the machine; not under AddressSanitizer, which reserves terabytes up front."""
    import resource
    if "asan" not in os.environ.get("LD_PRELOAD", ""):
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def die_with_parent():
    """Linux: the worker is killed when the harness process dies (even by SIGKILL, e.g. a
    test's timeout), so no worker outlives its run."""
    try:
        import ctypes
        import signal
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main(seed, tmp):
    die_with_parent()
    limit_memory()
    warnings.simplefilter("ignore")   # the generators' own casts (ComplexWarning, ...)
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    ctx = cases.Context(tmp)
    restore = Restore()
    proto.write("ready\n")
    for line in sys.stdin:
        index = int(line)

        def started(header):
            proto.write("start " + json.dumps(header) + "\n")
            inject(index)
        res = run_case(seed, index, ctx, started)
        restore()
        proto.write(json.dumps(res) + "\n")
