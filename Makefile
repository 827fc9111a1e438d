# The inner loop: `make build-dev` once (and after changing Rust code), then
# `make test`. `bash scripts/test.sh` runs everything CI runs.
.PHONY: build-dev lint test test-e2e fuzz all

PY := .venv/bin/python

build-dev:
	bash scripts/build-dev.sh

lint:
	@printf '\n== cargo fmt --check\n' && cargo fmt --check
	@printf '\n== cargo clippy\n' && cargo clippy --all-targets --all-features -- -D warnings
	@printf '\n== ruff\n' && .venv/bin/ruff check python tests bench examples \
		&& .venv/bin/ruff format --check python tests bench examples
	@printf '\n== mypy --strict\n' && .venv/bin/mypy --strict python examples
	@printf '\n== stubtest\n' && $(PY) -m mypy.stubtest listenfd._listenfd

test:
	cargo test
	$(PY) -m pytest -m "not e2e"

# A real systemd in systemd-nspawn: needs root
test-e2e:
	$(PY) -m pytest -m e2e

# Every fuzz target for 60 s (bench/fuzz.sh --help for more)
fuzz:
	bash bench/fuzz.sh

all:
	bash scripts/test.sh
