#!/usr/bin/env bash
# Fuzz harness over auth_core (fuzz/, crate auth_fuzz): mutated and generated tokens, JWKs,
# password hashes, strict JSON, uuids. Builds it in release and runs N inputs (default
# 1,000,000; CI runs a smaller N). Prints the seed, per-target counts, the rate, and ends with
#   fuzz: N inputs, 0 panics, 0 forgeries accepted
# Exits non-zero on any panic, accepted forgery or other failure, with each offending input
# hex-dumped and the --seed/--replay options that regenerate it.
#   scripts/fuzz.sh [N] [extra auth_fuzz options, e.g. --seed S --threads T --target NAME]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
shift || true
# The workspace's target directory (or CARGO_TARGET_DIR): after `cargo test -p auth_core
# --release` only the harness itself is left to compile.
cargo build --release -p auth_fuzz
bin="${CARGO_TARGET_DIR:-$PWD/target}/release/auth_fuzz"
start=$(date +%s.%N)
status=0
"$bin" --inputs "$n" "$@" || status=$?
echo "fuzz.sh: wall time $(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }') s (run only, after the build)"
exit "$status"
