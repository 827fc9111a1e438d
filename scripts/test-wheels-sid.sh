#!/usr/bin/env bash
# The wheel on the newest CPythons, 3.14 and 3.15, which Debian sid ships:
# in a sid root (scripts/sid-root.sh: the two Pythons, systemd for
# systemd-socket-activate, iproute2 for ss), the wheel in dist/ installed into
# a fresh virtual environment of each, and the tests of scripts/wheel-tests.txt
# run there, as scripts/test-wheels.sh runs them for 3.10-3.13.
#
#   bash scripts/test-wheels-sid.sh [ROOT]    (default: /var/tmp/listenfd-sid)
# Needs root. The root comes from scripts/sid-root.sh (a cache outside the
# checkout, shared with the newest-systemd tests of tests/e2e).
set -euo pipefail
cd "$(dirname "$0")/.."
root=${1:-/var/tmp/listenfd-sid}
wheel=$(ls dist/*.whl)
bash scripts/sid-root.sh "$root"
# pip in the root trusts the system store: the host's CA bundle, as the host's pip does.
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"

mounted=()
cleanup() {
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[i]}" || true; done
}
trap cleanup EXIT
for fs in proc sys dev dev/pts; do
    mountpoint -q "$root/$fs" || {
        if [ "$fs" = proc ]; then mount -t proc proc "$root/proc"; else mount --bind "/$fs" "$root/$fs"; fi
        mounted+=("$root/$fs")
    }
done

# What the tests need from this checkout, at /src in the root.
rm -rf "$root/src"
mkdir -p "$root/src/dist"
cp -r tests examples pyproject.toml scripts "$root/src/"
cp "$wheel" "$root/src/dist/"
mapfile -t tests < <(grep -v -e '^#' -e '^$' scripts/wheel-tests.txt)

failed=()
for python in python3.14 python3.15; do
    printf '\n== wheel on Debian sid: %s\n' "$(chroot "$root" "$python" --version)"
    chroot "$root" rm -rf "/venv-$python"
    chroot "$root" "$python" -m venv "/venv-$python"
    chroot "$root" bash -c "cd /src && /venv-$python/bin/python -m pip install -q --upgrade pip \
        && /venv-$python/bin/python -m pip install -q '/src/dist/$(basename "$wheel")[granian,uvicorn,hypercorn]' \
            --group pyproject.toml:test"
    for server in granian uvicorn hypercorn; do
        chroot "$root" "/venv-$python/bin/$server" --help | grep -q -- --systemd-socket
    done
    chroot "$root" "/venv-$python/bin/listenfd" --version
    chroot "$root" env -i HOME=/root PATH="/venv-$python/bin:/usr/bin:/bin" LANG=C.UTF-8 \
        bash -c "cd /src && python -m pytest -q -p no:cacheprovider ${tests[*]@Q}" ||
        failed+=("$python")
done
[ ${#failed[@]} -eq 0 ] || { echo "test-wheels-sid: failed on ${failed[*]}" >&2; exit 1; }
