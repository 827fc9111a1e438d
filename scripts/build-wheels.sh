#!/usr/bin/env bash
# Release artefacts into dist/: for each --target (default: x86_64), an abi3
# wheel for CPython >= 3.10 tagged manylinux_2_17 (manylinux2014: glibc 2.17,
# so Debian 10+, RHEL/CentOS 7+, Ubuntu 18.04+), and one sdist.
#
#   bash scripts/build-wheels.sh [--target TRIPLE ...]
#
# Tools come from PyPI into .venv-build: maturin, ziglang (maturin --zig
# links against glibc 2.17 whatever glibc this machine has) and auditwheel,
# which must agree with each wheel's tag. A --target needs its Rust standard
# library (`rustup target add aarch64-unknown-linux-gnu`); this machine has
# x86_64's only.
set -euo pipefail
cd "$(dirname "$0")/.."

targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --target) targets+=("$2"); shift 2 ;;
        *) echo "usage: $0 [--target TRIPLE ...]" >&2; exit 2 ;;
    esac
done
[ ${#targets[@]} -gt 0 ] || targets=(x86_64-unknown-linux-gnu)

python=${PYTHON:-python3}
tools=.venv-build
[ -x "$tools/bin/python" ] || "$python" -m venv "$tools"
"$tools/bin/python" -m pip install -q --upgrade pip
"$tools/bin/python" -m pip install -q 'maturin>=1.8,<2' ziglang auditwheel
export PATH="$PWD/$tools/bin:$PATH"

rm -rf dist
for target in "${targets[@]}"; do
    maturin build --release --zig --compatibility manylinux2014 --target "$target" --out dist
done
maturin sdist --out dist

for wheel in dist/*.whl; do
    # The tag auditwheel reads off the binary must be the one in the name.
    tag=$(auditwheel show "$wheel" | tr -d '\n' | sed -n 's/.*consistent with the following platform tag: *"\([^"]*\)".*/\1/p')
    case "$(basename "$wheel")" in
        *"$tag"*) echo "build-wheels: $(basename "$wheel"): auditwheel agrees ($tag)" ;;
        *) echo "build-wheels: auditwheel says $wheel is ${tag:-unreadable}, not its tag" >&2; exit 1 ;;
    esac
done
ls -l dist
