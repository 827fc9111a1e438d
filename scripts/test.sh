#!/usr/bin/env bash
# The whole test suite: lints, cargo test, pytest (tests/ and tests/e2e).
# In CI (CI set) the package is installed as users get it: the wheel in dist/
# (scripts/build-wheels.sh), or a release build; elsewhere it is a quick
# development build (scripts/build-dev.sh).
# Extra arguments go to pytest. Run it from anywhere in the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -n "${CI:-}" ]; then
    python=${PYTHON:-python3}
    [ -x .venv/bin/python ] || "$python" -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
    # The wheel users get, when scripts/build-wheels.sh made one; else a
    # release build from source.
    package=$(ls dist/*.whl 2>/dev/null | head -n 1)
    .venv/bin/python -m pip install -q --force-reinstall --group test --group lint "${package:-.}"
else
    bash scripts/build-dev.sh
fi
make --no-print-directory lint
printf '\n== cargo test\n'; cargo test
printf '\n== pytest\n';     .venv/bin/python -m pytest "$@"
