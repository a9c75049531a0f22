#!/usr/bin/env bash
# Run the test suite against an AddressSanitizer + UndefinedBehaviorSanitizer build of the C
# core. The extension is built (TC_SANITIZE=1, see setup.py) in a temporary copy of the tree,
# so the normal in-place build is never touched. Fails on any test failure and on any
# sanitizer report, also one written by a subprocess the tests start.
#
#   tools/sanitize.sh            the whole suite (about 22 minutes on 2 cores)
#   tools/sanitize.sh --quick    every kernel family's tests and the model fast paths at small
#                                sizes (a few minutes); CI runs this
#   tools/sanitize.sh [--quick] [--keep] [-- PYTEST ARGS...]   --keep leaves the copy in place;
#                                pytest arguments replace the default file selection
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
QUICK=0 KEEP=0
PYTEST_ARGS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --keep) KEEP=1 ;;
        --) shift; PYTEST_ARGS=("$@"); break ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "sanitize.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

# The representative part: every kernel family's tests, the tokenizer, and the whole-model
# drivers (GPT and EncoderDecoder training, data-parallel, KV-cached decoding) at the tests'
# small sizes. Left to the full run: the junk-input, CLI, training, benchmark and
# long-running task tests.
QUICK_TESTS=(
    tests/test_activation.py tests/test_softmax.py tests/test_linear.py tests/test_gemm.py
    tests/test_gemm_pack.py tests/test_layernorm.py tests/test_embedding.py
    tests/test_position.py tests/test_rope.py tests/test_rope_strided.py tests/test_dropout.py
    tests/test_loss.py tests/test_optim.py tests/test_fused.py tests/test_vec_math.py
    tests/test_workspace.py tests/test_attention.py tests/test_attention_masks.py
    tests/test_attention_strided.py tests/test_attention_tiled.py tests/test_attention_decode.py
    tests/test_backward_set.py tests/test_decode.py tests/test_encdec_generate.py
    tests/test_tokenizers.py tests/test_nn.py tests/test_gpt.py tests/test_encoder_decoder.py
    tests/test_data_parallel.py
)

CC=${CC:-gcc}
LIBASAN=$("$CC" -print-file-name=libasan.so)
LIBUBSAN=$("$CC" -print-file-name=libubsan.so)
for lib in "$LIBASAN" "$LIBUBSAN"; do
    if [ ! -e "$lib" ]; then
        echo "sanitize.sh: $CC has no $(basename "$lib") (install gcc's libasan/libubsan)" >&2
        exit 2
    fi
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tc-sanitize.XXXXXX")
cleanup() { if [ "$KEEP" = 1 ]; then echo "sanitize.sh: kept $WORK"; else rm -rf "$WORK"; fi; }
trap cleanup EXIT

# A copy of the sources, without builds, caches or VCS data.
tar -C "$ROOT" --exclude=.git --exclude=build --exclude='*.so' --exclude=__pycache__ \
    --exclude='*.egg-info' --exclude=.pytest_cache --exclude=.hypothesis -cf - . \
    | tar -C "$WORK" -xf -
mkdir -p "$WORK/reports"
echo "sanitize.sh: building with ASan+UBSan in $WORK"
t0=$(date +%s)
(cd "$WORK" && TC_SANITIZE=1 python setup.py build_ext --inplace -q -j "$(nproc)" >build.log 2>&1) || {
    tail -30 "$WORK/build.log" >&2; echo "sanitize.sh: build failed" >&2; exit 1; }
echo "sanitize.sh: built in $(( $(date +%s) - t0 )) s"

if [ ${#PYTEST_ARGS[@]} -eq 0 ] && [ "$QUICK" = 1 ]; then PYTEST_ARGS=("${QUICK_TESTS[@]}"); fi

# Python itself is not instrumented, so the runtimes are preloaded; CPython's and NumPy's
# own allocations are never freed at exit (detect_leaks=0); absurd allocation requests (over
# 8 GiB) return NULL (MemoryError) instead of aborting or filling the machine. Every report is also
# written to reports/ (log_path), so one from a subprocess is not lost.
export LD_PRELOAD="$LIBASAN $LIBUBSAN${LD_PRELOAD:+ $LD_PRELOAD}"
export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:max_allocation_size_mb=8192:halt_on_error=1:abort_on_error=1:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1:log_path=$WORK/reports/asan"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$WORK/reports/ubsan"
export PYTHONPATH="$WORK${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONFAULTHANDLER=1

cd "$WORK"
python -c "import transformer_c._C as C, sys; sys.exit(0 if C.__file__.startswith('$WORK') else 1)" || {
    echo "sanitize.sh: the sanitized build is not the one imported" >&2; exit 1; }
start=$(date +%s)
status=0
python -m pytest -q -p no:cacheprovider "${PYTEST_ARGS[@]}" || status=$?
echo "sanitize.sh: pytest exit status $status after $(( $(date +%s) - start )) s"

# A report is an error (ASan "ERROR:", UBSan "runtime error:"); the log files may also hold
# ASan's warnings for the absurd allocations that return NULL (allocator_may_return_null).
mapfile -t reports < <(grep -l -E "ERROR: |runtime error:|SUMMARY: " "$WORK"/reports/* 2>/dev/null || true)
warnings=$(cat "$WORK"/reports/* 2>/dev/null | grep -c "WARNING: AddressSanitizer failed to allocate" || true)
[ "$warnings" -gt 0 ] && echo "sanitize.sh: $warnings absurd allocation request(s) refused (MemoryError), as intended"
if [ ${#reports[@]} -gt 0 ]; then
    for f in "${reports[@]}"; do echo "==== $f"; grep -v "WARNING: AddressSanitizer failed to allocate" "$f" | head -60; done >&2
    echo "sanitize.sh: FAILED: ${#reports[@]} sanitizer report(s)" >&2
    exit 1
fi
if [ "$status" -ne 0 ]; then echo "sanitize.sh: FAILED: pytest exit status $status" >&2; exit 1; fi
echo "sanitize.sh: OK (no sanitizer report)"
