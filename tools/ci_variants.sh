#!/usr/bin/env bash
# CI (issue 21): the build variants, each built from this checkout's sources in a scratch
# copy and tested there with a representative subset of the suite (the kernels, dispatch,
# threads, both models' fast paths and decoding; the whole suite runs on the default
# build, see .ci/run):
#   serial    a C compiler without OpenMP (a wrapper that rejects -fopenmp, as Apple clang
#             without libomp does): setup.py's probe must fall back to a serial build with
#             exactly one warning, set_num_threads(n > 1) warns, results hold on one thread
#   portable  TC_PORTABLE_ONLY=1: the portable kernels only, no AVX2 variants and no CPU
#             probe (what aarch64 and other non-x86 machines compile), with OpenMP
# Each build must be free of compiler warnings, and build_info() must report the variant
# (TC_EXPECT_BUILD, checked by tests/test_build.py). Usage: tools/ci_variants.sh [serial|portable]...
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export TC_DATA_DIR="${TC_DATA_DIR:-$(cd "$ROOT/.." && pwd)/shared/data}"

SUBSET="tests/test_build.py tests/test_gemm.py tests/test_gemm_pack.py tests/test_linear.py
 tests/test_activation.py tests/test_softmax.py tests/test_layernorm.py tests/test_attention.py
 tests/test_attention_tiled.py tests/test_loss.py tests/test_fused.py tests/test_cpu_dispatch.py
 tests/test_vec_math.py tests/test_gpt.py tests/test_encoder_decoder.py tests/test_decode.py
 tests/test_data_parallel.py tests/test_hardening.py"

# a C compiler without OpenMP: the system's, refusing -fopenmp
mkdir -p "$WORK/bin"
cat > "$WORK/bin/cc-no-openmp" <<'CC'
#!/bin/sh
for a in "$@"; do
    case "$a" in -fopenmp) echo "cc-no-openmp: error: unsupported option '-fopenmp'" >&2; exit 1;; esac
done
exec "${TC_REAL_CC:-gcc}" "$@"
CC
chmod +x "$WORK/bin/cc-no-openmp"

variant() {  # name, TC_EXPECT_BUILD value, expected setup.py warnings, env assignments...
    local name=$1 expect=$2 nwarn=$3 dst="$WORK/$1"
    shift 3
    local t0=$SECONDS
    mkdir -p "$dst"
    tar -C "$ROOT" --exclude=build --exclude='*.so' --exclude=__pycache__ -cf - \
        setup.py pyproject.toml README.md csrc transformer_c tests benchmarks | tar -C "$dst" -xf -
    echo "== variant $name: building ($*)"
    if ! (cd "$dst" && env "$@" python setup.py build_ext --inplace -j 2 >build.log 2>&1); then
        tail -40 "$dst/build.log"; echo "ci_variants: $name: build failed" >&2; return 1
    fi
    if grep -E "(warning|error):" "$dst/build.log" | grep -v "^cc-no-openmp" >&2; then
        echo "ci_variants: $name: the build has compiler warnings" >&2; return 1
    fi
    local got; got=$(grep -c "^WARNING: transformer_c:" "$dst/build.log" || true)
    if [ "$got" != "$nwarn" ]; then
        grep "transformer_c:" "$dst/build.log" >&2 || true
        echo "ci_variants: $name: $got setup.py warnings, expected $nwarn" >&2; return 1
    fi
    grep "transformer_c:" "$dst/build.log" || true
    # the tests below must import this variant's build, nothing else
    (cd "$dst" && python -c "import sys, transformer_c as t; f = t.__file__
assert f.startswith('$dst/'), f; print('variant $name:', f, t.build_info())")
    echo "== variant $name: built in $((SECONDS - t0)) s; testing"
    (cd "$dst" && TC_EXPECT_BUILD="$expect" python -m pytest -q -p no:cacheprovider $SUBSET)
    echo "== variant $name: built and tested in $((SECONDS - t0)) s"
}

for v in "${@:-serial portable}"; do
    for name in $v; do
        case "$name" in
        serial) variant serial "openmp=0,portable_only=0" 1 CC="$WORK/bin/cc-no-openmp" ;;
        portable) variant portable "openmp=1,portable_only=1" 0 TC_PORTABLE_ONLY=1 ;;
        *) echo "ci_variants: unknown variant '$name' (serial, portable)" >&2; exit 2 ;;
        esac
    done
done
