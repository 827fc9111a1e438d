#!/usr/bin/env bash
# The whole test suite: lints, cargo test, pytest (tests/ and tests/e2e).
# In CI (CI set) the package is built and installed as users get it (a
# release wheel); elsewhere as a quick development build (scripts/build-dev.sh).
# Extra arguments go to pytest. Run it from anywhere in the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -n "${CI:-}" ]; then
    python=${PYTHON:-python3}
    [ -x .venv/bin/python ] || "$python" -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q --group test --group lint .
else
    bash scripts/build-dev.sh
fi
make --no-print-directory lint
printf '\n== cargo test\n'; cargo test
printf '\n== pytest\n';     .venv/bin/python -m pytest "$@"
