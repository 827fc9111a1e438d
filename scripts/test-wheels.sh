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
# Tests that run against an installed package, quickly: the protocol, the API,
# notify, the helpers, the CLI, the launcher, the production mode, the hook
# of Granian, uvicorn and Hypercorn (help, the options, serving, READY=1, a
# broken reload), the coordinator, the one-owner checks, listenfd dev's parser, the
# standby of listenfd run --watch (uvicorn 0.54 on 3.10), the user-style example.
tests=(
    tests/test_activation.py tests/test_api.py tests/test_notify.py tests/test_testing.py
    tests/test_inspect_cli.py tests/test_production.py tests/test_mistakes.py examples
    tests/test_coordinator.py tests/test_one_owner.py tests/test_internals.py
    "tests/test_server_contract.py::test_help_lists_the_options_and_the_kill_switch_removes_them"
    "tests/test_server_contract.py::test_ready_reloading_stopping_from_the_main_process"
    "tests/test_server_contract.py::test_a_broken_reload_keeps_the_old_workers_serving[granian-syntax]"
    "tests/test_server_contract.py::test_a_broken_reload_keeps_the_old_workers_serving[uvicorn-syntax]"
    "tests/test_server_contract.py::test_a_broken_reload_keeps_the_old_workers_serving[hypercorn-syntax]"
    "tests/test_granian.py::test_under_systemd_socket_activate"
    "tests/test_uvicorn_hypercorn.py::test_under_systemd_socket_activate"
    "tests/test_dev.py::test_the_servers_own_options_are_read"
    "tests/test_launcher.py::test_child_sees_exactly_what_systemd_gives"
    "tests/test_launcher.py::test_readme_dev_server"
    "tests/test_standby.py::test_the_woken_standby_serves_the_edited_code[granian]"
    "tests/test_standby.py::test_the_woken_standby_serves_the_edited_code[uvicorn]"
    "tests/test_standby.py::test_an_edit_to_a_module_the_standby_imported_means_a_cold_start"
)
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
