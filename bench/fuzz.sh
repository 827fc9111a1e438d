#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets/) for a while and prints one
# line per target: executions, coverage, corpus size, anything found.
#
#   bash bench/fuzz.sh                 # 60 s per target
#   bash bench/fuzz.sh --dev --time 5  # what CI runs: the harness still works
#   bash bench/fuzz.sh --runs 10000000 # a fixed number of executions each
#   bash bench/fuzz.sh --time 600 socket_spec notification
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`) and a nightly
# toolchain, or else the stable one with RUSTC_BOOTSTRAP=1 (what libFuzzer's
# sanitizer flags need). --dev builds unoptimised: quicker to build, slower
# to run.
# The corpus grows in fuzz/corpus/ (not committed), seeded from fuzz/seeds/
# and fuzz/regressions/. A crash stops that target: its input lands in
# fuzz/artifacts/TARGET/; fix the bug, then keep the input in
# fuzz/regressions/TARGET/ so `cargo test` replays it for ever.
set -euo pipefail
cd "$(dirname "$0")/.."

limit=(-max_total_time=60)
profile=-O
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --time) limit=(-max_total_time="$2"); shift 2 ;;
        --runs) limit=(-runs="$2"); shift 2 ;;
        --dev) profile=--dev; shift ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        -*) echo "bench/fuzz.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) targets+=("$1"); shift ;;
    esac
done
if [ ${#targets[@]} -eq 0 ]; then
    for f in fuzz/fuzz_targets/*.rs; do targets+=("$(basename "$f" .rs)"); done
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "bench/fuzz.sh: needs cargo-fuzz: cargo install cargo-fuzz --locked" >&2
    exit 2
fi
if rustup run nightly rustc --version >/dev/null 2>&1; then
    fuzz=(cargo +nightly fuzz)
else
    fuzz=(env RUSTC_BOOTSTRAP=1 cargo fuzz)
fi

"${fuzz[@]}" build "$profile" >&2

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
printf '%-16s %14s %8s %8s %8s %7s  %s\n' target execs exec/s cov ft corpus found
failed=0
for target in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$target" "fuzz/seeds/$target" "fuzz/regressions/$target"
    log="$logs/$target.log"
    status=0
    "${fuzz[@]}" run "$profile" "$target" \
        "fuzz/corpus/$target" "fuzz/seeds/$target" "fuzz/regressions/$target" \
        -- "${limit[@]}" -print_final_stats=1 >"$log" 2>&1 || status=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corpus=$(find "fuzz/corpus/$target" -type f | wc -l)
    found=none
    if [ "$status" -ne 0 ]; then
        found=$(grep -o 'fuzz/artifacts/[^ ]*' "$log" | head -1 || true)
        found=${found:-"exit $status, see the log below"}
        failed=1
    fi
    printf '%-16s %14s %8s %8s %8s %7s  %s\n' "$target" "${execs:-?}" "${rate:-?}" \
        "${cov:-?}" "${ft:-?}" "$corpus" "$found"
    if [ "$status" -ne 0 ]; then
        tail -40 "$log" >&2
    fi
done
exit "$failed"
