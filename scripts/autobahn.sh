#!/usr/bin/env bash
# Runs the Autobahn|Testsuite fuzzing client (cases 1-10: everything but compression) against
# the echo example of a runtime (runtime-smol/examples/autobahn-echo.rs, or
# runtime-tokio/examples/axum-autobahn-echo.rs with AUTOBAHN_RUNTIME=axum), which serves that
# runtime's /ws connection code with an echo backend. Fails if any case FAILED (or is UNIMPLEMENTED) or any close was not clean
# (behaviorClose other than OK or INFORMATIONAL). See docs/autobahn.md.
#
# Environment: AUTOBAHN_MAX_FRAME (default 16MiB: case 9 sends messages of up to 16 MiB),
# AUTOBAHN_CASES (JSON list, default ["1.*", ..., "10.*"]), AUTOBAHN_TIMEOUT (seconds, 600),
# AUTOBAHN_RUNTIME (smol or axum, default smol).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNTIME=${AUTOBAHN_RUNTIME:-smol}
case "$RUNTIME" in
  smol) PACKAGE=livebridge-smol EXAMPLE=autobahn-echo ;;
  axum) PACKAGE=livebridge-axum EXAMPLE=axum-autobahn-echo ;;
  *) echo "autobahn: AUTOBAHN_RUNTIME must be smol or axum" >&2; exit 2 ;;
esac
SITE=.autobahn/site-packages
OUT=.autobahn/$RUNTIME
REPORTS=$OUT/reports
MAX_FRAME=${AUTOBAHN_MAX_FRAME:-16MiB}
CASES=${AUTOBAHN_CASES:-'["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "8.*", "9.*", "10.*"]'}
TIMEOUT=${AUTOBAHN_TIMEOUT:-600}

PY2=$(command -v python2.7 || true)
if [ -z "$PY2" ] || ! "$PY2" -c '' >/dev/null 2>&1; then
  PY2="$HOME/.pyenv/versions/2.7.18/bin/python2.7"
fi
if [ ! -e "$SITE/.installed" ]; then
  echo "autobahn: autobahntestsuite is missing; run scripts/install-test-deps.sh" >&2
  exit 1
fi

start=$(date +%s)
cargo build --release -q -p "$PACKAGE" --example "$EXAMPLE"
target_dir=$(cargo metadata --format-version 1 --no-deps | "$PY2" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
ECHO_BIN="$target_dir/release/examples/$EXAMPLE"

mkdir -p "$OUT"
rm -rf "$REPORTS"
SERVER_LOG=$OUT/server.log
# Port 0: the kernel picks a free port; the example prints the address it got.
"$ECHO_BIN" --bind 127.0.0.1:0 --max-frame "$MAX_FRAME" >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!
cleanup() {
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
}
trap cleanup EXIT

URL=
for _ in $(seq 1 100); do
  URL=$(sed -n 's/^autobahn-echo listening on \(ws:\/\/[^ ]*\).*/\1/p' "$SERVER_LOG")
  [ -n "$URL" ] && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$SERVER_LOG" >&2; exit 1; }
  sleep 0.1
done
[ -n "$URL" ] || { echo "autobahn: the echo server did not start" >&2; cat "$SERVER_LOG" >&2; exit 1; }

SPEC=$OUT/fuzzingclient.json
cat >"$SPEC" <<JSON
{
  "outdir": "$REPORTS",
  "servers": [{"agent": "livebridge", "url": "$URL"}],
  "cases": $CASES,
  "exclude-cases": ["12.*", "13.*"],
  "exclude-agent-cases": {}
}
JSON

echo "autobahn: running the fuzzing client against $URL ($RUNTIME runtime, max message $MAX_FRAME)"
suite_start=$(date +%s)
if ! timeout "$TIMEOUT" "$PY2" -c "
import site, sys
site.addsitedir('$SITE')
from autobahntestsuite import wstest
sys.argv = ['wstest', '--mode', 'fuzzingclient', '--spec', '$SPEC']
wstest.run()
" >"$OUT/wstest.log" 2>&1; then
  echo "autobahn: wstest failed or timed out after ${TIMEOUT}s; see $OUT/wstest.log" >&2
  tail -20 "$OUT/wstest.log" >&2
  exit 1
fi
suite_end=$(date +%s)

# index.json: {agent: {case id: {behavior, behaviorClose, duration, remoteCloseCode, ...}}}.
# behavior is OK, NON-STRICT, INFORMATIONAL, UNIMPLEMENTED or FAILED; behaviorClose is OK or
# INFORMATIONAL when the close was clean, anything else (FAILED, WRONG CODE, UNCLEAN,
# FAILED BY CLIENT) when it was not. The summary table goes to $OUT/summary.md.
status=0
"$PY2" - "$REPORTS/index.json" "$OUT/summary.md" "$((suite_end - suite_start))" <<'PY' || status=$?
import json, sys
index_path, summary_path, seconds = sys.argv[1], sys.argv[2], sys.argv[3]
with open(index_path) as f:
    index = json.load(f)
results = index["livebridge"]
def key(case):
    return [int(part) for part in case.split(".")]
columns = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
groups = {}
bad = []
unclean = []
counts = dict((c, 0) for c in columns)
for case in sorted(results, key=key):
    result = results[case]
    behavior, close = result["behavior"], result["behaviorClose"]
    group = groups.setdefault(int(case.split(".")[0]), dict((c, 0) for c in columns + ["unclean"]))
    group[behavior] = group.get(behavior, 0) + 1
    counts[behavior] = counts.get(behavior, 0) + 1
    if behavior in ("FAILED", "UNIMPLEMENTED"):
        bad.append("%s: %s (close %s)" % (case, behavior, close))
    if close not in ("OK", "INFORMATIONAL"):
        group["unclean"] += 1
        unclean.append("%s: close %s (behavior %s)" % (case, close, behavior))
lines = ["| Group | Cases | " + " | ".join(columns) + " | Unclean close |",
         "|---|---:|" + "---:|" * len(columns) + "---:|"]
for g in sorted(groups):
    row = groups[g]
    total = sum(row[c] for c in row if c != "unclean")
    lines.append("| %d | %d | %s | %d |" % (g, total, " | ".join(str(row.get(c, 0)) for c in columns), row["unclean"]))
lines.append("| all | %d | %s | %d |" % (len(results), " | ".join(str(counts.get(c, 0)) for c in columns), len(unclean)))
with open(summary_path, "w") as f:
    f.write("\n".join(lines) + "\n")
print("\n".join(lines))
for line in bad + unclean:
    print("autobahn: " + line)
print("autobahn: %d cases, %d failed, %d unimplemented, %d non-strict, %d informational, %d unclean closes (suite %ss)" % (
    len(results), counts.get("FAILED", 0), counts.get("UNIMPLEMENTED", 0), counts.get("NON-STRICT", 0),
    counts.get("INFORMATIONAL", 0), len(unclean), seconds))
sys.exit(1 if bad or unclean else 0)
PY
echo "autobahn: report in $REPORTS/index.html; total $(( $(date +%s) - start ))s"
exit $status
