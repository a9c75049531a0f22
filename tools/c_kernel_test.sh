#!/usr/bin/env bash
# Build and run the C kernel test (tests/c/test_kernels.c: the kernels of csrc/core and
# csrc/kernels linked without Python; fast variant against portable, GEMM against scalar
# models of its summation order).
#
#   tools/c_kernel_test.sh native    # this machine's compiler (x86-64: AVX2+FMA vs portable)
#   tools/c_kernel_test.sh aarch64   # aarch64-linux-gnu-gcc, run under qemu-aarch64 (NEON vs
#                                    # portable); needs gcc-aarch64-linux-gnu and qemu-user
#
# The flags are setup.py's (-O3 -std=gnu11 -fopenmp, no fast-math), with -ffp-contract=off
# on AArch64 as setup.py adds there; the test file itself always without contraction (its
# scalar models must round each operation). Objects and the binary go to
# ${TC_CTEST_DIR:-build/ctest}/<target>/. Output: one line per check group, "digest" lines
# (hashes of the portable outputs, equal across platforms), then "all passed" (exit 0) or
# "FAILED" (exit 1). OMP_NUM_THREADS is set to 1 (the test runs its 2-thread checks itself).
set -euo pipefail
cd "$(dirname "$0")/.."

target="${1:-native}"
case "$target" in
native)
    CC="${CC:-gcc}"
    RUN=()
    EXTRA=()
    if [ "$(uname -m)" = aarch64 ]; then EXTRA=(-ffp-contract=off); fi
    ;;
aarch64)
    CC="${CC_AARCH64:-aarch64-linux-gnu-gcc}"
    QEMU="${QEMU_AARCH64:-qemu-aarch64}"
    for tool in "$CC" "$QEMU"; do
        command -v "$tool" >/dev/null 2>&1 || {
            echo "c_kernel_test: $tool not found (apt-get install gcc-aarch64-linux-gnu qemu-user)" >&2
            exit 77
        }
    done
    SYSROOT="${QEMU_LD_PREFIX:-/usr/aarch64-linux-gnu}"
    RUN=("$QEMU" -L "$SYSROOT")
    EXTRA=(-ffp-contract=off)
    ;;
*)
    echo "usage: $0 native|aarch64" >&2
    exit 2
    ;;
esac

out="${TC_CTEST_DIR:-build/ctest}/$target"
mkdir -p "$out"
CFLAGS=(-O3 -std=gnu11 -fopenmp -Wall -Wextra -Wno-unused-parameter
        -Wno-missing-field-initializers -Wno-psabi -fno-strict-aliasing -fno-math-errno
        -Icsrc -Icsrc/core -Icsrc/kernels -Itests/c)
sources=(csrc/core/*.c csrc/kernels/*.c)
objs=()
for src in "${sources[@]}"; do
    obj="$out/$(basename "$src" .c).o"
    objs+=("$obj")
    # rebuilt when the source or any header under csrc/ is newer than the object
    if [ ! -f "$obj" ] || [ -n "$(find csrc -newer "$obj" \( -name '*.h' -o -name '*.c' \) -print -quit)" ]; then
        "$CC" "${CFLAGS[@]}" ${EXTRA[@]+"${EXTRA[@]}"} -c "$src" -o "$obj"
    fi
done
"$CC" "${CFLAGS[@]}" -ffp-contract=off tests/c/test_kernels.c "${objs[@]}" -o "$out/test_kernels" -lm
OMP_NUM_THREADS=1 ${RUN[@]+"${RUN[@]}"} "$out/test_kernels" "${@:2}"
