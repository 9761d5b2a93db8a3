#!/usr/bin/env bash
# Runs the AVX-512 (and AVX-512 VNNI) kernels of Sources/CKernels against the portable ones on an
# x86-64 machine with AVX2, through SIMDe's emulated intrinsics: a check for machines without
# AVX-512, where the tests cannot reach those kernels. Needs Debian's libsimde-dev
# (apt-get install libsimde-dev) and clang (Swift's toolchain has one). Exits 1 on a difference.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if [ ! -f /usr/include/simde/x86/avx512.h ]; then
    echo "SIMDe's headers are missing: apt-get install libsimde-dev" >&2
    exit 2
fi
cc="$(command -v clang || echo /opt/swift/usr/bin/clang)"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
"$cc" -O2 -mavx2 -mfma -mf16c -Wno-psabi -I"$root/Sources/CKernels/include" -I"$root/Sources/CKernels" \
    "$root/scripts/check_avx512_kernels.c" "$root/Sources/CKernels/pool.c" -lm -lpthread -o "$out/check"
"$out/check"
