#!/usr/bin/env bash
# The whole test suite: lints, cargo test, pytest. Builds the package into
# .venv (created if missing); run it from anywhere in the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q '.[test,lint]'

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check";   cargo fmt --check
step "cargo clippy";        cargo clippy --all-targets --all-features -- -D warnings
step "cargo test";          cargo test
step "ruff";                .venv/bin/ruff check python tests bench examples
                            .venv/bin/ruff format --check python tests bench examples
step "mypy --strict";       .venv/bin/mypy --strict python examples
step "stubtest";            .venv/bin/python -m mypy.stubtest listenfd._listenfd
step "pytest";              .venv/bin/python -m pytest "$@"
