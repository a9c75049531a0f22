"""Studies: experiments that run end to end and write a result table (JSON + Markdown) and
figures. Each is a function ``study(ctx) -> Report`` in one module of this package,
registered by name with :func:`register`; :func:`run` runs one by name, and the command line
is ``python -m transformer_c study NAME [--quick] [--out DIR] [--threads N] [--seed S]
[--data-dir D]`` (``study --list`` lists them).

Every study has full settings (at most 30 minutes on 2 cores) and a ``--quick`` mode of a
minute or two that the test suite runs; it uses ../shared/data when present and the
embedded corpus otherwise (``Context.shakespeare``), and records which in the report.
"""
import dataclasses
import datetime
import os
import time

from ._context import Budget, Context, Corpus, TrainLog
from ._report import Report, format_value

__all__ = ["STUDIES", "Study", "register", "run", "command_line", "Report", "Context",
           "Budget", "Corpus", "TrainLog", "format_value"]


@dataclasses.dataclass(frozen=True)
class Study:
    """A registered study: ``name`` (its command-line name), ``summary`` (one line) and
    ``run`` (a function Context -> Report)."""
    name: str
    summary: str
    run: object


STUDIES = {}


def register(name, summary):
    """Decorator registering ``fn(ctx) -> Report`` as the study ``name`` (a duplicate name
    is a ValueError)."""
    def deco(fn):
        if name in STUDIES:
            raise ValueError(f"a study named {name!r} is already registered")
        STUDIES[name] = Study(name, summary, fn)
        return fn
    return deco


def command_line(name, *, quick=False, seed=0, threads=None, data_dir=None, out=None):
    """The shell command that runs study ``name`` with these settings (str)."""
    cmd = ["python", "-m", "transformer_c", "study", name]
    if quick:
        cmd.append("--quick")
    if threads is not None:
        cmd += ["--threads", str(threads)]
    if seed:
        cmd += ["--seed", str(seed)]
    if data_dir is not None:
        cmd += ["--data-dir", str(data_dir)]
    if out is not None:
        cmd += ["--out", str(out)]
    return " ".join(cmd)


def run(name, out, *, quick=False, seed=0, threads=None, data_dir=None):
    """Run study ``name`` (a key of :data:`STUDIES`; unknown: ValueError listing them) and
    write its report to the folder ``out`` (None: write nothing). threads: OpenMP threads for
    the run (None: the current setting; restored afterwards). Returns the :class:`Report`,
    its meta filled with threads, seed, wall time, quick flag, data source, load average and
    date."""
    import transformer_c as tc
    if name not in STUDIES:
        raise ValueError(f"unknown study {name!r}; studies: {sorted(STUDIES)}")
    ctx = Context(quick=quick, seed=seed, threads=threads, out=out, data_dir=data_dir)
    before = tc.get_num_threads()
    if threads is not None:
        tc.set_num_threads(threads)
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    try:
        report = STUDIES[name].run(ctx)
    finally:
        if threads is not None:
            tc.set_num_threads(before)
    wall = time.perf_counter() - t0
    if not isinstance(report, Report):
        raise TypeError(f"study {name!r} returned {type(report).__name__}, not a Report")
    if report.command is None:
        report.command = command_line(name, quick=quick, seed=seed, threads=threads,
                                      data_dir=data_dir)
    report.meta.update(ctx.meta)
    report.meta.update({
        "study": name, "quick": ctx.quick, "seed": ctx.seed,
        "threads": threads if threads is not None else before,
        "wall_time_s": round(wall, 1),
        "loadavg_start": [round(x, 2) for x in load0],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "cpu_count": os.cpu_count(),
    })
    if out is not None:
        report.write(out)
    return report


# The studies, one module each, registered on import (one line per study module).
# st1's studies:
from . import positional  # noqa: E402,F401
from . import gradient_flow  # noqa: E402,F401
from . import arithmetic  # noqa: E402,F401

# st2's studies:
from . import heads  # noqa: E402,F401
from . import linear_algebra  # noqa: E402,F401
from . import scaling  # noqa: E402,F401

# later studies:
