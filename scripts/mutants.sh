#!/usr/bin/env bash
# Mutation testing of the checks that must not be fooled: cargo-mutants mutates the invariant
# checker (flowfail-core/src/invariants.rs and invariants/) and the one guard every mutation
# passes (flowfail-core/src/respond/guard.rs), and runs the tests that exercise them against
# each mutant: flowfail-core's `checker` test binary (tests/checker.rs: the checker's direct
# tests, the scenario replays, the reliability tests and the model test; a small crate, so a
# mutant costs a rebuild of flowfail-core and little more). A mutant the tests do not catch is
# a check that could be fooled.
#
#   scripts/mutants.sh                 both files (slow: a build and a test run per mutant)
#   scripts/mutants.sh --file 'flowfail-core/src/respond/guard.rs'   one file only
#   scripts/mutants.sh --list          the mutants, without running them
#
# Not in CI (tens of minutes to hours on 2 cores). The score of the last run is written down in
# docs/RELIABILITY.md ("Mutation testing"), with the command that produced it. Results are in
# mutants.out/ (caught.txt, missed.txt, timeout.txt, unviable.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

version=27.1.0
if ! cargo mutants --version 2>/dev/null | grep -q "$version"; then
  echo "installing cargo-mutants $version"
  cargo install --locked --quiet "cargo-mutants@$version"
fi

files=(--file 'flowfail-core/src/invariants.rs' --file 'flowfail-core/src/invariants/*.rs'
  --file 'flowfail-core/src/respond/guard.rs')
for a in "$@"; do
  # A --file given on the command line replaces the default set.
  if [ "$a" = "--file" ] || [ "$a" = "-f" ]; then files=(); fi
done

# The PostgreSQL and AWS peers are not needed: flowfail-core's tests run on the in-memory
# backends. The model test runs fewer cases per mutant (it still reaches every check; its
# coverage minimums apply from 64 cases).
export FLOWFAIL_MODEL_CASES="${FLOWFAIL_MODEL_CASES:-16}"
# nextest stops a mutant's run at its first failing test: a caught mutant costs seconds.
tool=()
if cargo nextest --version >/dev/null 2>&1; then tool=(--test-tool nextest); fi
# Faster still: in a disposable clone (never a working tree: cargo-mutants edits the files),
# add --in-place, so each mutant rebuilds incrementally (seconds, not a minute); --iterate
# then re-tests only what an earlier run did not catch.
exec cargo mutants --package flowfail-core "${files[@]}" --timeout 300 "${tool[@]}" "$@" -- --test checker
