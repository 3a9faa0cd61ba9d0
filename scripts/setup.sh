#!/usr/bin/env bash
# Set up prom_tvm on a fresh machine: a virtual environment in .venv with the package.
#   scripts/setup.sh          core + onnxruntime (what the demo needs)
#   scripts/setup.sh --dev    + torch, torchvision, test and lint tools, test data
set -euo pipefail
cd "$(dirname "$0")/.."
dev=0
[[ "${1:-}" == "--dev" ]] && dev=1

python3 -m venv .venv
pip=".venv/bin/pip"
if [[ $dev == 1 ]]; then
    "$pip" install -q -e '.[dev,torch]'
    # torchvision is only used by tests (its wheel here is a CUDA build: keep torch's CPU wheel)
    "$pip" install -q --no-deps torchvision==0.28.0 || echo "note: torchvision unavailable; its tests will skip"
    # Debian packages the tests use (needs root; their tests skip without them):
    # Fashion-MNIST for the accuracy benchmark, qemu-user to run the AVX2 / x86-64 builds on
    # emulated CPUs without AVX-512 (tests/test_emulated_cpus.py) and, with the AArch64 cross
    # toolchain (its libc and linker), the ARM kernels (tests/schedules/test_aarch64_kernels_run.py)
    missing=()
    for pkg in dataset-fashion-mnist qemu-user gcc-aarch64-linux-gnu; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [[ ${#missing[@]} -gt 0 && $(id -u) == 0 ]]; then
        (apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null) \
            || echo "note: ${missing[*]} not installed; their tests will skip"
    fi
else
    "$pip" install -q -e '.[demo]'
fi
