#!/usr/bin/env bash
# Run the ETSI NGSI-LD API conformance suite (Robot Framework) against a live civicmesh broker.
#
# The suite is ETSI's code: it lives OUTSIDE this repository (an export of marek-mraz/ngsi-ld-test-suite at commit
# 1d442dc, see docs/conformance.md), and nothing from it is ever copied into the repository. At run time this
# script copies the suite's own test @context files into a context cache directory outside the repository, so the
# broker resolves the suite's remote @context URLs offline.
#
# Usage: scripts/conformance.sh [options] [GROUP ...] [-- ROBOT_ARGS...]
#   GROUP        a folder under TP/NGSI-LD of the suite, e.g. CommonBehaviours, ContextInformation/Provision,
#                ContextInformation/Consumption/Entity/QueryEntities. Default: the three groups of issue 2.
#   --no-temporal      leave out every Temporal* sub-folder (temporal API not implemented yet)
#   --no-broker        do not start a broker; test the one already answering at $CONFORMANCE_URL
#   --shared-db        one broker and database for all groups (default: a fresh broker + database per group,
#                      so leftovers of one group's failed teardowns cannot change another group's counts)
#   --contexts-only    only (re)build the context cache directory, then exit
#   -h | --help        this text
#   -- ROBOT_ARGS      passed to robot unchanged, e.g. -- --test '001_01*' or -- --loglevel DEBUG
#
# Environment (all optional):
#   CONFORMANCE_HOME       /work/conformance      (holds suite/, venv/, contexts/, results/)
#   CONFORMANCE_PORT       18080
#   CONFORMANCE_DB         /tmp/conformance.db    (SQLite file, removed before each broker start)
#   CONFORMANCE_BROKER_CMD command that starts the broker in the foreground (default below)
#   CONFORMANCE_URL        http://127.0.0.1:$PORT/ngsi-ld/v1
#   CONFORMANCE_NOTIFY_PORT 8085, CONFORMANCE_CSOURCE_PORT 8086, CONFORMANCE_CTXSERVER_PORT 8087
#   CONFORMANCE_MQTT_ALT_PORT 1884        (a private Mosquitto for the MQTT tests on a non-default port; the
#                                          script starts one there when `mosquitto` is installed and the port is free)
#   CONFORMANCE_GROUP_TIMEOUT 2400 (seconds per group)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HOME_DIR="${CONFORMANCE_HOME:-/work/conformance}"
SUITE_DIR="$HOME_DIR/suite"
VENV_DIR="$HOME_DIR/venv"
CONTEXT_DIR="$HOME_DIR/contexts"
RESULTS_ROOT="$HOME_DIR/results"
PORT="${CONFORMANCE_PORT:-18080}"
DB_FILE="${CONFORMANCE_DB:-/tmp/conformance.db}"
# The suite's notification receivers and context sources listen on loopback: let the endpoint policy admit it.
export CIVICMESH_ENDPOINT_ALLOW="${CIVICMESH_ENDPOINT_ALLOW:-127.0.0.1,::1,localhost}"
BROKER_CMD="${CONFORMANCE_BROKER_CMD:-$REPO_ROOT/.venv/bin/civicmesh serve --port $PORT --no-auth --context-dir $CONTEXT_DIR --database sqlite:///$DB_FILE}"
BASE_URL="${CONFORMANCE_URL:-http://127.0.0.1:$PORT/ngsi-ld/v1}"
HEALTH_URL="${BASE_URL%/ngsi-ld/v1}/health"
NOTIFY_PORT="${CONFORMANCE_NOTIFY_PORT:-8085}"
CSOURCE_PORT="${CONFORMANCE_CSOURCE_PORT:-8086}"
CTXSERVER_PORT="${CONFORMANCE_CTXSERVER_PORT:-8087}"
GROUP_TIMEOUT="${CONFORMANCE_GROUP_TIMEOUT:-2400}"
MQTT_ALT_PORT="${CONFORMANCE_MQTT_ALT_PORT:-1884}"
DEFAULT_GROUPS=(CommonBehaviours ContextInformation/Provision ContextInformation/Consumption)

# The suite's payloads name their test contexts by these URLs (grep of data/ at 1d442dc). The easy-global-market
# compound context is not shipped by the suite; its published content is the same term list as the suite's own
# test context plus core context v1.8, so it is served by the suite's compound file (see docs/conformance.md).
FORGE="https://forge.etsi.org/rep/cim/ngsi-ld-test-suite/-/raw/develop/resources/jsonld-contexts"
EGM_COMPOUND="https://easy-global-market.github.io/ngsild-api-data-models/ngsildTestSuite/ngsildTestSuiteV1.8-compound.jsonld"

no_temporal=0
start_broker=1
fresh_per_group=1
contexts_only=0
groups=()
robot_extra=()

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; }
die() { echo "conformance: $*" >&2; exit 2; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --no-temporal) no_temporal=1 ;;
        --no-broker) start_broker=0 ;;
        --shared-db) fresh_per_group=0 ;;
        --contexts-only) contexts_only=1 ;;
        -h|--help) usage; exit 0 ;;
        --) shift; robot_extra=("$@"); break ;;
        -*) die "unknown option $1 (try --help)" ;;
        *) groups+=("$1") ;;
    esac
    shift
done
[[ ${#groups[@]} -gt 0 ]] || groups=("${DEFAULT_GROUPS[@]}")

[[ -d "$SUITE_DIR/TP/NGSI-LD" ]] || die "no suite export at $SUITE_DIR (see docs/conformance.md, 'Set-up')"
[[ -x "$VENV_DIR/bin/robot" ]] || die "no robot in $VENV_DIR (see docs/conformance.md, 'Set-up')"

build_context_cache() {
    local src="$SUITE_DIR/resources/jsonld-contexts"
    mkdir -p "$CONTEXT_DIR"
    cp -f "$src/ngsi-ld-test-suite.jsonld" "$src/ngsi-ld-test-suite-compound.jsonld" "$CONTEXT_DIR/"
    # Core-context URLs (uri.etsi.org ngsi-ld-core-context-vX.Y.jsonld) are deliberately absent: the broker
    # has the core context built in. ...-core-context-non-existing.jsonld must stay unresolvable (503 tests).
    "$VENV_DIR/bin/python" - "$CONTEXT_DIR/index.json" "$FORGE" "$EGM_COMPOUND" <<'PY'
import json
import sys

index_path, forge, egm_compound = sys.argv[1:4]
index = {
    f"{forge}/ngsi-ld-test-suite.jsonld": "ngsi-ld-test-suite.jsonld",
    f"{forge}/ngsi-ld-test-suite-compound.jsonld": "ngsi-ld-test-suite-compound.jsonld",
    egm_compound: "ngsi-ld-test-suite-compound.jsonld",
}
with open(index_path, "w", encoding="utf-8") as out:
    json.dump(index, out, indent=2)
    out.write("\n")
PY
    echo "context cache: $CONTEXT_DIR ($(ls "$CONTEXT_DIR" | wc -l) files, index.json maps 3 URLs)"
}

broker_pid=""
stop_broker() {
    if [[ -n "$broker_pid" ]] && kill -0 "$broker_pid" 2>/dev/null; then
        kill "$broker_pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$broker_pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$broker_pid" 2>/dev/null || true
        wait "$broker_pid" 2>/dev/null || true
    fi
    broker_pid=""
}
# The MQTT notification tests (Subscription/.../MQTT) expect a second MQTT broker on a non-default port; the suite
# starts one with docker, which these machines do not have. A private anonymous Mosquitto on 127.0.0.1 stands in.
mqtt_pid=""
start_alt_mqtt() {
    command -v mosquitto >/dev/null 2>&1 || { echo "no mosquitto: MQTT tests on a non-default port will fail"; return 0; }
    if (exec 3<>"/dev/tcp/127.0.0.1/$MQTT_ALT_PORT") 2>/dev/null; then
        echo "something already listens on $MQTT_ALT_PORT; using it as the non-default-port MQTT broker"; return 0
    fi
    local conf="$run_dir/mosquitto-alt.conf"
    printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$MQTT_ALT_PORT" >"$conf"
    mosquitto -c "$conf" >"$run_dir/mosquitto-alt.log" 2>&1 &
    mqtt_pid=$!
}
stop_alt_mqtt() {
    if [[ -n "$mqtt_pid" ]] && kill -0 "$mqtt_pid" 2>/dev/null; then kill "$mqtt_pid" 2>/dev/null || true; fi
    mqtt_pid=""
}
trap 'stop_broker; stop_alt_mqtt' EXIT INT TERM

launch_broker() {  # $1 = log file
    rm -f "$DB_FILE" "$DB_FILE-wal" "$DB_FILE-shm"
    if curl -fsS -o /dev/null --max-time 2 "$HEALTH_URL" 2>/dev/null; then
        die "something already answers at $HEALTH_URL; stop it or use --no-broker"
    fi
    # shellcheck disable=SC2086  # the command is a word list on purpose
    $BROKER_CMD >"$1" 2>&1 &
    broker_pid=$!
    for _ in $(seq 1 150); do
        if curl -fsS -o /dev/null --max-time 2 "$HEALTH_URL" 2>/dev/null; then return 0; fi
        if ! kill -0 "$broker_pid" 2>/dev/null; then
            tail -n 30 "$1" >&2
            die "broker exited before $HEALTH_URL answered (command: $BROKER_CMD)"
        fi
        sleep 0.2
    done
    tail -n 30 "$1" >&2
    die "broker did not answer $HEALTH_URL within 30 s"
}

# Robot only selects by test tags, and the suite puts its operation tags on keywords, so temporal tests are
# left out by path: a folder without Temporal* sub-folders is taken whole, otherwise its children are examined.
robot_paths() {  # $1 = path relative to the suite dir; prints the paths to run, one a line
    local base="$1" child
    if [[ $no_temporal -eq 0 ]]; then echo "$base"; return 0; fi
    [[ "$(basename "$base")" == Temporal* ]] && return 0
    if [[ -z "$(find "$SUITE_DIR/$base" -mindepth 1 -type d -name 'Temporal*' -print -quit 2>/dev/null)" ]]; then
        echo "$base"; return 0
    fi
    while IFS= read -r child; do
        robot_paths "$base/$(basename "$child")"
    done < <(find "$SUITE_DIR/$base" -mindepth 1 -maxdepth 1 \( -type d -o -name '*.robot' \) | sort)
}

summarize() {  # $1 = output.xml, $2 = group label, $3 = summary tsv to append to
    "$VENV_DIR/bin/python" - "$1" "$2" "$3" <<'PY'
import sys
import xml.etree.ElementTree as ET

output_xml, group, tsv = sys.argv[1:4]
try:
    root = ET.parse(output_xml).getroot()
except (OSError, ET.ParseError) as exc:
    print(f"  {group}: no result ({exc})")
    with open(tsv, "a", encoding="utf-8") as out:
        out.write(f"{group}\t0\t0\t0\tno result\n")
    sys.exit(0)
stats = root.find("./statistics/total/stat")
passed, failed, skipped = (int(stats.get(k) or 0) for k in ("pass", "fail", "skip"))
total = passed + failed + skipped
share = f"{100 * passed / total:.1f}%" if total else "-"
print(f"  {group}: {passed}/{total} passed ({share}), {failed} failed, {skipped} skipped")
# One level below the group's top suite (ids s1-sN): the operation folders, e.g. Entities, QueryEntities.
for stat in root.findall("./statistics/suite/stat"):
    if stat.get("id", "").count("-") == 1:
        p, f = int(stat.get("pass") or 0), int(stat.get("fail") or 0)
        print(f"      {stat.get('name')}: {p}/{p + f + int(stat.get('skip') or 0)}")
with open(tsv, "a", encoding="utf-8") as out:
    out.write(f"{group}\t{passed}\t{total}\t{failed}\t{share}\n")
# The failing test names with the first line of robot's message, next to output.xml, for triage.
with open(output_xml.replace("output.xml", "failed.txt"), "w", encoding="utf-8") as out:
    for test in root.iter("test"):
        status = test.find("status")
        if status is not None and status.get("status") == "FAIL":
            message = (status.text or "").strip().splitlines()
            out.write(f"{test.get('name')}\t{message[0][:300] if message else ''}\n")
PY
}

build_context_cache
[[ $contexts_only -eq 0 ]] || exit 0

stamp="$(date -u +%Y%m%dT%H%M%SZ)"
run_dir="$RESULTS_ROOT/$stamp"
mkdir -p "$run_dir"
summary="$run_dir/summary.tsv"
printf 'group\tpassed\ttotal\tfailed\tpass share\n' >"$summary"
echo "results: $run_dir"

robot_vars=(
    --variable "url:$BASE_URL"
    --variable "temporal_api_url:$BASE_URL"
    --variable "notification_server_host:127.0.0.1"
    --variable "notification_server_port:$NOTIFY_PORT"
    --variable "context_source_host:127.0.0.1"
    --variable "context_source_port:$CSOURCE_PORT"
    --variable "context_server_host:127.0.0.1"
    --variable "context_server_port:$CTXSERVER_PORT"
    --variable "mqtt_broker_host:127.0.0.1"
    --variable "mqtt_broker_non_default_port:$MQTT_ALT_PORT"
)
start_alt_mqtt

if [[ $start_broker -eq 1 && $fresh_per_group -eq 0 ]]; then
    launch_broker "$run_dir/broker.log"
fi

for group in "${groups[@]}"; do
    slug="${group//\//-}"
    [[ -e "$SUITE_DIR/TP/NGSI-LD/$group" ]] || die "no group $group under $SUITE_DIR/TP/NGSI-LD"
    mapfile -t paths < <(robot_paths "TP/NGSI-LD/$group")
    if [[ ${#paths[@]} -eq 0 ]]; then
        echo "  $group: skipped (only temporal tests, --no-temporal given)"
        continue
    fi
    if [[ $start_broker -eq 1 && $fresh_per_group -eq 1 ]]; then
        launch_broker "$run_dir/broker-$slug.log"
    fi
    echo "running $group (${#paths[@]} path(s)) ..."
    # Robot resolves ${EXECDIR}/resources/... so it must run from the suite directory.
    (cd "$SUITE_DIR" && timeout "$GROUP_TIMEOUT" "$VENV_DIR/bin/robot" \
        --name "$slug" --outputdir "$run_dir/$slug" --console dotted --consolewidth 100 \
        "${robot_vars[@]}" "${robot_extra[@]}" "${paths[@]}") >"$run_dir/$slug.console.txt" 2>&1 || true
    summarize "$run_dir/$slug/output.xml" "$group" "$summary"
    if [[ $start_broker -eq 1 && $fresh_per_group -eq 1 ]]; then
        stop_broker
    fi
done
stop_broker

echo "summary: $summary"
column -t -s $'\t' "$summary" 2>/dev/null || cat "$summary"
