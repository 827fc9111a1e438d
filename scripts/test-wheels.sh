#!/usr/bin/env bash
# The built wheel and sdist (dist/, from build-wheels.sh) where only pip is:
# each CPython found installs the wheel into a fresh virtual environment with
# no Rust toolchain on PATH and runs the tests that need no source build; the
# sdist is built and tested the same way from a clean directory.
#
#   bash scripts/test-wheels.sh [PYTHON ...]    (default: every pyenv 3.10-3.13)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

pythons=("$@")
if [ ${#pythons[@]} -eq 0 ]; then
    for minor in 10 11 12 13; do
        for found in "$HOME"/.pyenv/versions/3."$minor".*/bin/python3; do
            [ -x "$found" ] && pythons+=("$found")
        done
    done
fi
wheel=$(ls dist/*.whl)
sdist=$(ls dist/*.tar.gz)
# The tests that run against an installed package (scripts/wheel-tests.txt).
mapfile -t tests < <(grep -v -e '^#' -e '^$' scripts/wheel-tests.txt)
# No cargo, rustc or maturin where the packages are installed and tested.
no_rust_path=$(printf '%s' "$PATH" | tr ':' '\n' | grep -v -e '\.cargo/bin' -e '^$' | paste -sd:)

check() {  # check LABEL PYTHON PACKAGE
    local label=$1 python=$2 package=$3 venv
    venv=$(mktemp -d /tmp/listenfd-wheel-XXXXXX)
    printf '\n== %s: %s\n' "$label" "$("$python" --version)"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
    (cd /tmp && PATH="$venv/bin:$no_rust_path" \
        "$venv/bin/python" -m pip install -q "$package[granian,uvicorn,hypercorn]" --group "$root/pyproject.toml:test")
    for server in granian uvicorn hypercorn; do
        "$venv/bin/$server" --help | grep -q -- --systemd-socket
    done
    "$venv/bin/listenfd" --version
    PATH="$venv/bin:$no_rust_path" "$venv/bin/python" -m pytest -q -p no:cacheprovider "${tests[@]}"
    rm -rf "$venv"
}

for python in "${pythons[@]}"; do
    check "wheel" "$python" "$root/$wheel"
done

# The sdist, built from a clean directory (this one needs the Rust toolchain).
clean=$(mktemp -d /tmp/listenfd-sdist-XXXXXX)
cp "$sdist" "$clean/"
(cd "$clean" && tar xzf "$(basename "$sdist")")
unpacked=$(ls -d "$clean"/listenfd-*/)
test ! -e "$unpacked/target" && test ! -e "$unpacked/dist" || { echo "sdist holds build output" >&2; exit 1; }
venv=$(mktemp -d /tmp/listenfd-sdist-venv-XXXXXX)
printf '\n== sdist: built from %s\n' "$unpacked"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
(cd "$clean" && "$venv/bin/python" -m pip install -q "$clean/$(basename "$sdist")[granian,uvicorn,hypercorn]" --group "$root/pyproject.toml:test")
for server in granian uvicorn hypercorn; do
    "$venv/bin/$server" --help | grep -q -- --systemd-socket
done
"$venv/bin/python" -m pytest -q -p no:cacheprovider "${tests[@]}"
rm -rf "$venv" "$clean"
