#!/usr/bin/env bash
# CI step (called from .ci/run): the C kernels on AArch64 under emulation.
# Installs the AArch64 cross compiler and qemu-user when missing (Debian bookworm packages
# gcc-aarch64-linux-gnu, which pulls libc6-dev-arm64-cross, and qemu-user), then runs
# tests/test_c_kernels.py with TC_REQUIRE_AARCH64=1, so that a missing tool fails the step
# instead of skipping it: tests/c/test_kernels.c built natively and for AArch64, NEON
# against portable under qemu-aarch64, and the x86-64 and AArch64 outputs compared bitwise.
# Measured: 4 min 7 s with the packages already installed and both builds from scratch
# (`time tools/ci_aarch64.sh`, 2 cores shared, load average 11); the install adds the
# download of about 60 MB.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || ! command -v qemu-aarch64 >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo -n"
    $SUDO apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
        gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user >/dev/null
fi
aarch64-linux-gnu-gcc --version | head -1
qemu-aarch64 --version | head -1
TC_REQUIRE_AARCH64=1 python -m pytest -q -p no:cacheprovider tests/test_c_kernels.py
