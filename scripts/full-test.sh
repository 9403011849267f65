#!/usr/bin/env bash
# The full test suite: installs what it needs, then runs every check CI runs.
#   fmt, clippy (all features / no default features), rustdoc -D warnings, doctests,
#   a smoke run of every fuzz target, benchmark compile + quick run, and finally every test
#   (including the interop tests against real Dovecot and Postfix) through cargo-nextest,
#   whose summary lines close the output.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n=== %s\n' "$*"; }

step "install missing dependencies"
bash scripts/install-deps.sh

step "cargo fmt --check"
cargo fmt --all --check
(cd fuzz && cargo fmt --all --check)

step "clippy, all features"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
step "clippy, no default features"
cargo clippy --workspace --all-targets --no-default-features --locked -- -D warnings

step "rustdoc -D warnings"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features --locked

step "licenses (deny.toml allow list) and publishable library crates"
python3 scripts/check-licenses.py
cargo package --locked --allow-dirty --no-verify --quiet \
  -p mailferry-wire -p mailferry-sasl -p mailferry-routing \
  -p mailferry-pop3-client -p mailferry-smtp-client -p mailferry-smtp-server

step "doctests"
cargo test --doc --workspace --all-features --locked

step "fuzz smoke run"
bash scripts/fuzz-smoke.sh "${FUZZ_SECONDS:-10}"

step "benchmarks: quick run"
cargo bench -p mailferry-benches --benches --locked -- --quick --noplot

step "every test, including interop against real Dovecot and Postfix"
cargo nextest run --workspace --all-features --locked --run-ignored all --no-fail-fast
