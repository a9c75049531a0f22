"""Known defects the harness finds today (issue 22: defects 1 and 2 crash, defect 7 hangs),
skipped by name until they are fixed.

THE FIX OF EACH DEFECT DELETES ITS ENTRY. A case matching an entry is not run (it is
counted as "known"); any other crash or hang fails the run. Each entry also carries a
stand-alone reproducer: tests/test_fuzz_harness.py checks that it still crashes (or, for
a hang, still runs past HANG_SECONDS), so an entry cannot outlive its fix.
"""

HANG_SECONDS = 20

KNOWN = {
    "issue-22-defect-1: global_grad_norm with a list its items mutate": dict(
        match=lambda case: case.target.endswith("global_grad_norm") and "mutating-sequence" in case.tags,
        reason="use after free in csrc/py/bind_optim.c: the sequence is read after item "
               "conversions that run Python code (__array__ clearing the list)",
        reproducer="import numpy as np\n"
                   "from transformer_c import functional as F\n"
                   "class M:\n"
                   "    def __array__(self, dtype=None, copy=None):\n"
                   "        arrays.clear(); return np.ones(4, np.float32)\n"
                   "arrays = [np.ones(3, np.float32), M(), np.ones(5, np.float32)]\n"
                   "for _ in range(50):\n"
                   "    arrays[:] = [np.ones(3, np.float32), M(), np.ones(5, np.float32)]\n"
                   "    F.global_grad_norm(arrays)\n"),
    "issue-22-defect-2: set_num_threads with a huge count, then a kernel": dict(
        match=lambda case: "huge-thread-count" in case.tags,
        reason="set_num_threads accepts 2**31 - 1; the next parallel region makes libgomp "
               "end the process (exit 1, 'Out of memory allocating 481036338272 bytes')",
        reproducer="import numpy as np\n"
                   "import transformer_c as tc\n"
                   "tc.set_num_threads(2**31 - 1)\n"
                   "tc.functional.relu(np.ones(10**6, np.float32))\n"),
    "issue-22-defect-7: a huge layer count (raw constructors, model file metadata)": dict(
        match=lambda case: "huge-layer-count" in case.tags,
        reason="the layout is built before the counts are checked: _C.encdec_create with "
               "n_decoder_layer = 2**31 - 1 loops with the GIL held; GPT.load of a file whose "
               "metadata claims n_layer = 1,000,000 takes minutes. A hang, not a crash",
        hang=True,
        reproducer="from tools.fuzz import valid\n"
                   "from transformer_c import _C\n"
                   "m = valid.tiny_encdec(); d = m.config.c_fields(); d['Ld'] = 2**31 - 1\n"
                   "_C.encdec_create(m._flat, m.flat_grads, d)\n"),
}


def known_defect(case):
    """The name of the known defect this case reproduces, or None."""
    for name, entry in KNOWN.items():
        if entry["match"](case):
            return name
    return None
