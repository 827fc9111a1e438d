#!/usr/bin/env bash
# A Debian sid root for the newest platform: CPython 3.14 and 3.15 (the
# wheel tests, scripts/test-wheels-sid.sh) and systemd 262 (booted by the
# newest-systemd tests of tests/e2e). Made by debootstrap (minbase) from the
# host's Debian mirror, about a minute; kept outside the checkout and made
# again when it is missing, incomplete or older than a week (sid moves).
#
#   bash scripts/sid-root.sh [ROOT]    (default: /var/tmp/listenfd-sid)
# Needs root.
set -euo pipefail
root=${1:-/var/tmp/listenfd-sid}
[ "$(id -u)" -eq 0 ] || { echo "sid-root: needs root (debootstrap)" >&2; exit 1; }

stamp="$root/.listenfd-root-made"
if [ -e "$stamp" ] && [ -z "$(find "$stamp" -mtime +7)" ] &&
    [ -x "$root/usr/bin/python3.15" ] && [ -x "$root/usr/lib/systemd/systemd" ]; then
    exit 0
fi
command -v debootstrap >/dev/null || {
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap
}
# The host's Debian mirror (its package registry), from its apt sources.
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
[ -n "$mirror" ] || mirror=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list)
# A run killed half-way may have left the host's /proc, /sys, /dev bound in.
for fs in dev/pts dev sys proc; do
    if mountpoint -q "$root/$fs"; then umount -l "$root/$fs"; fi
done
rm -rf --one-file-system "$root"
log=$(mktemp /tmp/listenfd-sid-debootstrap-XXXXXX.log)
debootstrap --variant=minbase \
    --include=python3,python3.14,python3.14-venv,python3.15,python3.15-venv,ca-certificates,systemd,iproute2,openssl \
    sid "$root" "$mirror" >"$log" 2>&1 || {
    tail -n 30 "$log" >&2
    exit 1
}
rm -f "$log"
date -u > "$stamp"
