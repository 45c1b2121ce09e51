#!/usr/bin/env bash
# Side-by-side comparisons of flowfail with the tools an engineer would otherwise use, in one
# run on one machine (P1-P7 of docs/BENCHMARKS.md). Installs its peers: ripgrep and hyperfine
# from Debian, langchain-core and check-jsonschema from PyPI into .venv-compare/.
#
#   scripts/compare.sh            # everything; about 10 minutes on two cores
#   RUNS=5 scripts/compare.sh     # fewer timed runs per command (default 10)
#   SKIP_CRITERION=1 ...          # skip the in-process criterion groups (P2, P3, P7)
#
# Inputs are generated deterministically into $COMPARE_DIR (default: a temporary directory);
# every hyperfine table is kept there as Markdown, and a summary is printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

RUNS=${RUNS:-10}
work=${COMPARE_DIR:-$(mktemp -d)}
mkdir -p "$work"
summary="$work/summary.md"
: >"$summary"
say() { echo "$*" | tee -a "$summary"; }
# The last recorded round's figure of a P-row (docs/bench-previous.tsv), printed under it.
previous() {
  local line
  line=$(awk -F'\t' -v k="$1" '$1 == k { print $2 " (" $3 ")" }' "$repo/docs/bench-previous.tsv")
  say "   previous: ${line:-none recorded}"
}
current="$work/bench-current.tsv"
: >"$current"
record() { printf '%s\t%s\t%s compare.sh\n' "$1" "$2" "$(date -u +%Y-%m-%d)" >>"$current"; }

echo "== peers"
need_apt=()
command -v rg >/dev/null 2>&1 || need_apt+=(ripgrep)
command -v hyperfine >/dev/null 2>&1 || need_apt+=(hyperfine)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if [ ! -x .venv-compare/bin/check-jsonschema ] || ! .venv-compare/bin/python -c 'import langchain_core' 2>/dev/null; then
  python3 -m venv .venv-compare
  .venv-compare/bin/pip install --quiet --disable-pip-version-check langchain-core check-jsonschema
fi
py=.venv-compare/bin/python
echo "ripgrep: $(rg --version | head -n 1); hyperfine: $(hyperfine --version)"
echo "langchain-core: $($py -c 'import langchain_core; print(langchain_core.__version__)'); check-jsonschema: $(.venv-compare/bin/check-jsonschema --version | tail -n 1)"

echo "== build (release)"
cargo build --release --quiet -p flowfail-cli
cargo build --release --quiet -p flowfail --examples
ff=$repo/target/release/flowfail
ex=$repo/target/release/examples

# Mean of a hyperfine JSON export, in milliseconds, for command number $2 (0-based).
mean_ms() { $py -c "import json,sys; print('%.1f' % (json.load(open(sys.argv[1]))['results'][int(sys.argv[2])]['mean']*1e3))" "$1" "$2"; }
ratio() { $py -c "import sys; print('%.2f' % (float(sys.argv[1])/float(sys.argv[2])))" "$1" "$2"; }
bench() { # name, then commands; ignores exit codes (validators exit 1 on invalid files)
  local name=$1
  shift
  hyperfine -i -w 2 -r "$RUNS" --export-json "$work/$name.json" --export-markdown "$work/$name.md" "$@" >/dev/null
  cat "$work/$name.md"
}

say ""
say "# flowfail comparisons, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -m)"

echo "== P1: classify a 100 MB log vs ripgrep"
"$ex/gen_log" 100 >"$work/flowengine.log"
log=$work/flowengine.log
# Eight kind-identifying regexes, as an engineer would write them for rg -c.
rg_kinds=(-e 'rate_limit_error|RateLimitError|ThrottlingException|RESOURCE_EXHAUSTED'
  -e '(?i)rate limit|too many requests|quota'
  -e 'Task timed out after'
  -e 'APITimeoutError|ReadTimeout|DEADLINE_EXCEEDED|(?i)timed out'
  -e 'overloaded_error|api_error|InternalServerError|ServiceUnavailable'
  -e 'Error code: 5\d\d|(?i)bad gateway|service unavailable'
  -e 'ValidationError|is a required property|(?i)validation error'
  -e 'insufficient_quota|credit balance is too low')
rg_cmd="rg -c $(printf "%q " "${rg_kinds[@]}") $log"
# flowfail classifies the failure lines (the default), or every line (--all-lines).
bench p1 -n flowfail "$ff classify --plain --count $log" -n flowfail-all-lines "$ff classify --plain --all-lines --count $log" \
  -n rg-8-regexes "$rg_cmd" -n rg-ERROR "rg -c ERROR $log"
mb=$(($(stat -c %s "$log") / 1000000))
f=$(mean_ms "$work/p1.json" 0); a=$(mean_ms "$work/p1.json" 1); r=$(mean_ms "$work/p1.json" 2); e=$(mean_ms "$work/p1.json" 3)
say ""
say "P1 ${mb} MB log: flowfail classify (failure lines) ${f} ms ($($py -c "print('%.0f' % ($mb/$f*1e3))") MB/s), --all-lines ${a} ms, rg -c 8 regexes ${r} ms ($($py -c "print('%.0f' % ($mb/$r*1e3))") MB/s), rg -c ERROR ${e} ms -> flowfail is $(ratio "$r" "$f")x rg (8 regexes), $(ratio "$e" "$f")x rg ERROR; --all-lines $(ratio "$r" "$a")x rg (8 regexes)"
# An incident's log: 30 % of its lines are failures (the classifier's heavy case).
"$ex/gen_log" 100 30 >"$work/incident.log"
heavy=$work/incident.log
rg_heavy="rg -c $(printf "%q " "${rg_kinds[@]}") $heavy"
bench p1-heavy -n flowfail "$ff classify --plain --count $heavy" -n rg-8-regexes "$rg_heavy" -n rg-ERROR "rg -c ERROR $heavy"
hf=$(mean_ms "$work/p1-heavy.json" 0); hr=$(mean_ms "$work/p1-heavy.json" 1); he=$(mean_ms "$work/p1-heavy.json" 2)
say "P1 ${mb} MB log, 30 % failures: flowfail ${hf} ms, rg -c 8 regexes ${hr} ms, rg -c ERROR ${he} ms -> flowfail is $(ratio "$hr" "$hf")x rg (8 regexes), $(ratio "$he" "$hf")x rg ERROR"
say "   what they found: flowfail $("$ff" classify --plain --count "$heavy"); rg -c ERROR $(rg -c ERROR "$heavy")"
previous P1
record P1 "flowfail ${f} ms, rg 8 regexes ${r} ms (7 % failure log); ${hf} ms vs ${hr} ms (30 %)"
say "   what they found: error lines (grep ERROR) $(rg -c ERROR "$log"); rg 8 regexes $(eval "$rg_cmd"); flowfail: $("$ff" classify --plain --count "$log"); --all-lines: $("$ff" classify --plain --all-lines --count "$log")"

echo "== P2: prune a 5 MB bundle vs LangChain trim_messages"
"$ex/gen_bundle" >"$work/bundle.json"
bench p2 -n flowfail-prune "$ff prune --max-size 180KB --manifest $work/manifest.json < $work/bundle.json > $work/ff-pruned.json" \
  -n langchain-trim "$py scripts/langchain_trim.py $work/bundle.json $work/lc-trimmed.json 180000"
f=$(mean_ms "$work/p2.json" 0); l=$(mean_ms "$work/p2.json" 1)
lc_in=()
for _ in 1 2 3 4 5; do
  lc_in+=("$($py scripts/langchain_trim.py "$work/bundle.json" "$work/lc-trimmed.json" 180000 2>&1 | sed -E 's/.*write: ([0-9.]+) ms.*/\1/')")
done
lc_med=$(printf '%s\n' "${lc_in[@]}" | sort -n | sed -n 3p)
say ""
say "P2 5 MB bundle -> 180 KB, end to end (CLI): flowfail ${f} ms, LangChain ${l} ms -> $(ratio "$l" "$f")x; outputs $(stat -c %s "$work/ff-pruned.json") and $(stat -c %s "$work/lc-trimmed.json") bytes"
previous P2
record P2 "flowfail ${f} ms end to end"
say "   LangChain in process (parse -> trim -> write, median of 5): ${lc_med} ms; flowfail in process: see criterion prune_5MB below"

echo "== P3: validate 10,000 TaskObjects vs check-jsonschema"
rm -rf "$work/tasks"
"$ex/gen_taskobjects" "$work/tasks" 10000
cp flowfail-core/schemas/task_object.v2.schema.json "$work/schema-v2.json"
(cd "$work" && bench p3 -n flowfail-validate "$ff validate tasks/*.json > /dev/null" \
  -n check-jsonschema "$repo/.venv-compare/bin/check-jsonschema --schemafile schema-v2.json tasks/*.json > /dev/null" \
  -n bare-jsonschema-rs "$ex/bare_validate tasks/*.json > /dev/null")
f=$(mean_ms "$work/p3.json" 0); c=$(mean_ms "$work/p3.json" 1); b=$(mean_ms "$work/p3.json" 2)
say ""
say "P3 10,000 files: flowfail validate ${f} ms, check-jsonschema ${c} ms, bare jsonschema-rs (one thread) ${b} ms -> $(ratio "$c" "$f")x check-jsonschema, $(ratio "$b" "$f")x the bare process"
previous P3
record P3 "flowfail validate ${f} ms"
say "   invalid found: flowfail $( (cd "$work" && "$ff" validate tasks/*.json || true) | grep -c '"valid":false'), check-jsonschema $( (cd "$work" && "$repo/.venv-compare/bin/check-jsonschema" --schemafile schema-v2.json tasks/*.json 2>&1 || true) | grep -c '::\$')"

echo "== P4: detector at 1 M and 100 M outcomes"
say ""
say "P4 $("$ex/detect_scale" 1000000)"
p4=$("$ex/detect_scale" 100000000)
say "P4 $p4"
previous P4
record P4 "$p4"

echo "== P5: triage + decide at 10k and 100k failed tasks"
say ""
say "P5 $("$ex/triage_scale" 10000)"
p5=$("$ex/triage_scale" 100000)
say "P5 $p5"
previous P5
record P5 "$p5"

echo "== P6: scenario replays (virtual time)"
say ""
for sc in pilot-timeout rate-limit; do
  mttr=$("$ff" respond --scenario "testdata/scenarios/$sc.json" --json | $py -c 'import json,sys; r=json.load(sys.stdin); print(r["post_incident"]["mttr_seconds"])')
  say "P6 $sc: MTTR ${mttr} s virtual"
done
bench p6 -n pilot-timeout "$ff respond --scenario testdata/scenarios/pilot-timeout.json --json" \
  -n rate-limit "$ff respond --scenario testdata/scenarios/rate-limit.json --json"
say "   wall time per replay (whole CLI process): pilot $(mean_ms "$work/p6.json" 0) ms, rate limit $(mean_ms "$work/p6.json" 1) ms"
previous P6
record P6 "pilot-timeout whole process $(mean_ms "$work/p6.json" 0) ms"

if [ -z "${SKIP_CRITERION:-}" ]; then
  echo "== criterion: in-process groups"
  # Criterion redraws its progress line with carriage returns; keep names and medians only.
  criterion_lines() { tr '\r' '\n' | grep -E "^($1)|time:" | grep -v -e '^Benchmarking' -e '%'; }
  cargo bench --quiet -p flowfail --bench core -- 'prune_5MB|schema' 2>&1 | criterion_lines 'prune_5MB|schema' | tee -a "$summary"
  if [ -n "${FLOWFAIL_PG_URL:-}" ]; then
    echo "== P7: retry scheduling in PostgreSQL"
    cargo bench --quiet -p flowfail-pg --bench retry 2>&1 | criterion_lines schedule_retries | tee -a "$summary"
  else
    say "P7 skipped: set FLOWFAIL_PG_URL (e.g. postgres://postgres@127.0.0.1:5432/postgres)"
  fi
fi

echo
echo "== this run's figures ($current: copy it over docs/bench-previous.tsv when recording a round)"
echo "== summary ($summary)"
cat "$summary"
