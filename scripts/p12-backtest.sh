#!/usr/bin/env bash
# P12 (docs/BENCHMARKS.md): `flowfail backtest` over a month of 1,000,000 tasks with three
# planted incidents, side by side with a plain COUNT(*) over the same rows, interleaved runs;
# wall time (median of RUNS) and peak RSS of the release binary.
#
#   FLOWFAIL_PG_URL=postgres://postgres@127.0.0.1:5432/postgres \
#   FLOWFAIL_AWS_ENDPOINT=http://127.0.0.1:5555 scripts/p12-backtest.sh
#
# Seeds the schema ff_p12 (dropped first) with the month of the end-to-end test
# (flowfail-cli/tests/it/live_e2e/backtest.rs), VACUUMed as a live table is; the bucket and log
# group in the local AWS API with the 40 timeouts' bundles. The Kubernetes API is not started:
# the Deployment is a gap (one refused connection), which the report says.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${FLOWFAIL_PG_URL:?set FLOWFAIL_PG_URL}"
: "${FLOWFAIL_AWS_ENDPOINT:?set FLOWFAIL_AWS_ENDPOINT (a local AWS API, e.g. moto)}"
RUNS="${RUNS:-5}"
S=ff_p12
WORK="${P12_DIR:-/tmp/flowfail-p12}"
mkdir -p "$WORK"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing

echo "== release build"
cargo build --release --quiet -p flowfail-cli
BIN="${CARGO_TARGET_DIR:-target}/release/flowfail"

echo "== seeding $S: 1,000,760 tasks"
psql -q -v ON_ERROR_STOP=1 "$FLOWFAIL_PG_URL" <<SQL
DROP SCHEMA IF EXISTS $S CASCADE;
CREATE SCHEMA $S;
CREATE TABLE $S.tasks (task_id TEXT PRIMARY KEY, flow_type TEXT NOT NULL, status TEXT NOT NULL,
  error_message TEXT, http_status INTEGER, created_at TIMESTAMPTZ NOT NULL, finished_at TIMESTAMPTZ,
  attempts INTEGER NOT NULL DEFAULT 0, task_object JSONB, retry_not_before TIMESTAMPTZ, claimed_by TEXT);
INSERT INTO $S.tasks (task_id, flow_type, status, error_message, http_status, created_at, finished_at, attempts)
SELECT 'm-' || i, 'plan', CASE WHEN i % 500 = 0 THEN 'failed' ELSE 'succeeded' END,
       CASE WHEN i % 500 = 0 THEN 'Internal server error' END, CASE WHEN i % 500 = 0 THEN 500 END,
       t - interval '30 seconds', t, 0
  FROM (SELECT i, timestamptz '2026-11-01 00:00:00+00' + i * interval '2.592 seconds' AS t
          FROM generate_series(1, 1000000) i) g;
INSERT INTO $S.tasks (task_id, flow_type, status, error_message, http_status, created_at, finished_at, attempts)
SELECT 'to-' || k, 'impl', 'failed', 'Task timed out after 45.00 seconds', NULL, t - interval '45 seconds', t, 0
  FROM (SELECT k, timestamptz '2026-11-05 10:00:00+00' + k * interval '15 seconds' AS t FROM generate_series(0, 39) k) g;
INSERT INTO $S.tasks (task_id, flow_type, status, error_message, http_status, created_at, finished_at, attempts)
SELECT 'rl-' || k, 'review', 'failed',
       '{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"}}',
       429, t - interval '5 seconds', t, 0
  FROM (SELECT k, timestamptz '2026-11-12 14:00:00+00' + k * interval '30 seconds' AS t FROM generate_series(0, 119) k) g;
INSERT INTO $S.tasks (task_id, flow_type, status, error_message, http_status, created_at, finished_at, attempts)
SELECT 'bd-' || k, 'impl', 'failed', 'KeyError: ''context_refs''', NULL, t - interval '2 seconds', t, 0
  FROM (SELECT k, timestamptz '2026-11-20 12:00:00+00' + k * interval '1 millisecond' AS t FROM generate_series(0, 599) k) g;
CREATE INDEX tasks_status_created_idx ON $S.tasks (status, created_at DESC);
CREATE INDEX tasks_done_at_idx ON $S.tasks ((coalesce(finished_at, created_at))) INCLUDE (status, finished_at, created_at);
VACUUM ANALYZE $S.tasks;
SQL

echo "== bucket, log group and 40 bundles of 600 KB in the local AWS API"
# boto3 comes with moto (scripts/test-peers.sh installs it into .venv-moto).
PY="${MOTO_PY:-.venv-moto/bin/python}"
"$PY" - "$FLOWFAIL_AWS_ENDPOINT" <<'PY'
import sys, boto3
kw = dict(endpoint_url=sys.argv[1], region_name="us-east-1",
          aws_access_key_id="testing", aws_secret_access_key="testing")
s3, logs = boto3.client("s3", **kw), boto3.client("logs", **kw)
try:
    s3.create_bucket(Bucket="ff-p12-bundles")
except s3.exceptions.BucketAlreadyOwnedByYou:
    pass
try:
    logs.create_log_group(logGroupName="/ff/p12")
except logs.exceptions.ResourceAlreadyExistsException:
    pass
body = ('{"messages":[{"role":"user","content":"' + "x" * 599_900 + '"}]}').encode()
for k in range(40):
    s3.put_object(Bucket="ff-p12-bundles", Key=f"to-{k}.json", Body=body)
PY

printf 'x-p12-key\n' > "$WORK/key"
chmod 600 "$WORK/key"
cat > "$WORK/flowfail.toml" <<TOML
[postgres]
url = "$FLOWFAIL_PG_URL"
schema = "$S"
[aws]
region = "us-east-1"
endpoint = "$FLOWFAIL_AWS_ENDPOINT"
log_group = "/ff/p12"
bucket = "ff-p12-bundles"
[kubernetes]
api_url = "http://127.0.0.1:9"
namespace = "default"
deployment = "flowengine"
[vendors]
primary = "anthropic"
[vendors.anthropic]
quota = "none"
[vendors.openai]
quota = "none"
[pager.routing_keys]
on_call = { file = "$WORK/key" }
sre = { file = "$WORK/key" }
tech_lead = { file = "$WORK/key" }
TOML

COUNT="SELECT count(*) FROM $S.tasks WHERE coalesce(finished_at, created_at) >= '2026-10-31 23:00:00+00' AND coalesce(finished_at, created_at) < '2026-12-01 00:00:00+00'"
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
: > "$WORK/backtest.ms"; : > "$WORK/count.ms"
echo "== $RUNS interleaved runs"
for _ in $(seq "$RUNS"); do
  t=$(date +%s%N)
  "$BIN" backtest --config "$WORK/flowfail.toml" --from 2026-11-01 --to 2026-12-01 --json > "$WORK/report.json"
  ms "$t" >> "$WORK/backtest.ms"
  t=$(date +%s%N)
  psql -qAt "$FLOWFAIL_PG_URL" -c "$COUNT" > /dev/null
  ms "$t" >> "$WORK/count.ms"
done
/usr/bin/time -v "$BIN" backtest --config "$WORK/flowfail.toml" --from 2026-11-01 --to 2026-12-01 \
  > /dev/null 2> "$WORK/time.txt"
rss=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$WORK/time.txt")
incidents=$(python3 -c "import json; r=json.load(open('$WORK/report.json')); print(len(r['incidents']), [max(i['classification'], key=i['classification'].get) for i in r['incidents']], r['tasks_read'])")
echo "P12 backtest, median of $RUNS: $(median < "$WORK/backtest.ms") ms (runs: $(tr '\n' ' ' < "$WORK/backtest.ms"))"
echo "P12 plain COUNT(*) over the same rows (psql, connection included), median: $(median < "$WORK/count.ms") ms"
echo "P12 peak RSS: ${rss} KiB; incidents, main kinds, tasks read: $incidents"
