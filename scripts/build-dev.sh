#!/usr/bin/env bash
# A development build into .venv: the extension compiled in debug mode (no
# LTO: seconds, not minutes), the Python package used from the checkout (an
# edit needs no rebuild), the test and lint tools, and the Granian hook files,
# which maturin's editable install leaves out.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q --group dev
if ! out=$(VIRTUAL_ENV=$PWD/.venv .venv/bin/maturin develop 2>&1); then
    printf '%s\n' "$out" >&2
    exit 1
fi
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
rm -f "$site"/listenfd-granian.pth "$site"/listenfd-granian.start "$site"/_listenfd_granian_hook.py \
    "$site"/listenfd-servers.start "$site"/_listenfd_start.py
cp python/listenfd-servers.pth python/_listenfd_hook.py "$site/"
if ! .venv/bin/granian --help | grep -q -- --systemd-socket; then
    echo "build-dev: the Granian hook is not active: granian --help lacks --systemd-socket" >&2
    exit 1
fi
