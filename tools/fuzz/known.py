"""Known defects the harness finds today (none: issue 22's defects 1, 2 and 7 are fixed),
skipped by name until they are fixed.

THE FIX OF EACH DEFECT DELETES ITS ENTRY. A case matching an entry is not run (it is
counted as "known"); any other crash or hang fails the run. Each entry also carries a
stand-alone reproducer: tests/test_fuzz_harness.py checks that it still crashes (or, for
a hang, still runs past HANG_SECONDS), so an entry cannot outlive its fix.
"""

HANG_SECONDS = 20

KNOWN = {}  # issue 22's defects 1, 2 and 7 are fixed; a new known defect gets an entry here


def known_defect(case):
    """The name of the known defect this case reproduces, or None."""
    for name, entry in KNOWN.items():
        if entry["match"](case):
            return name
    return None
