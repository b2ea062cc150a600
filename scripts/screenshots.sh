#!/usr/bin/env bash
# Screenshots for the docs (docs/img/*.png), taken with headless Chromium from real servers:
#   docs/img/prefect-deployments.png   the Prefect UI's deployments page (everything in prefect.yaml)
#   docs/img/prefect-pipeline-run.png  a COMPLETED `pipeline` flow run (its graph of stage subflows)
#   docs/img/mlflow-compare.png        MLflow's compare-runs page over that run's bench runs (one per init method)
#
# Everything lives in a temp folder (PREFECT_HOME, the MLflow store, the corpus and run folders): the
# project's mlruns/, corpus/ and runs/ are not touched. Starts a Prefect server, a lean MLflow server and a
# process worker on free loopback ports, deploys from prefect.yaml, triggers a tiny `pipeline` run through
# the endpoint the UI's Run button calls (the settings of tests/test_e2e_servers.py), waits for it, takes
# the shots, and stops every process it started. ~2-3 minutes on 2 cores.
#
#   bash scripts/screenshots.sh            # needs .venv (scripts/setup.sh) and Chromium (apt-get install chromium)
#   KEEP_TMP=1 bash scripts/screenshots.sh # keep the temp folder (server logs, the run's outputs)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/.venv/bin"
PY="$BIN/python"
OUT="$ROOT/docs/img"
CHROMIUM="${CHROMIUM:-$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)}"
[ -x "$PY" ] || { echo "no $PY: run scripts/setup.sh first" >&2; exit 1; }
[ -n "$CHROMIUM" ] || { echo "no Chromium: apt-get install -y chromium (or set CHROMIUM=...)" >&2; exit 1; }

TMP="$(mktemp -d -t weightgen-demo.XXXXXX)"
PIDS=()
START=$SECONDS
cd "$ROOT"

# Start a command in its own session (its pid is its process group) with SIGINT/SIGTERM at their
# defaults: a background job of a script inherits an ignored SIGINT (see ../shared/ENVIRONMENT.md).
start() {
  local log="$1"; shift
  setsid "$PY" -c 'import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL); signal.signal(signal.SIGTERM, signal.SIG_DFL)
os.execv(sys.argv[1], sys.argv[1:])' "$@" >"$log" 2>&1 &
  PIDS+=("$!")
}

stop() {  # SIGINT, then SIGTERM, then SIGKILL to the whole group (flow-run subprocesses included)
  local pid="$1" sig grace
  for sig in INT TERM KILL; do
    kill -0 "$pid" 2>/dev/null || break
    kill -s "$sig" -- "-$pid" 2>/dev/null || break
    for grace in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  done
  kill -s KILL -- "-$pid" 2>/dev/null || true  # anything left in the group
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop "${PIDS[$i]}"; done
  if [ "$rc" -ne 0 ]; then
    echo "failed (exit $rc); last lines of the logs in $TMP:" >&2
    for log in "$TMP"/*.log; do [ -f "$log" ] && { echo "== $log" >&2; tail -n 25 "$log" >&2; }; done
  fi
  if [ "${KEEP_TMP:-0}" = 1 ] || [ "$rc" -ne 0 ]; then echo "temp folder kept: $TMP" >&2; else rm -rf "$TMP"; fi
  echo "screenshots.sh: exit $rc after $((SECONDS - START)) s" >&2
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() { "$PY" -c 'import socket, sys; s = socket.socket(); s.bind((sys.argv[1], 0)); print(s.getsockname()[1])' "$1"; }

wait_for() {  # wait_for SECONDS WHAT COMMAND...
  local timeout="$1" what="$2" deadline=$((SECONDS + $1)); shift 2
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || { echo "$what: not ready after ${timeout}s" >&2; return 1; }
    sleep 1
  done
}

# --- environment: a private Prefect home and MLflow store, nothing from the caller's profile ----------------
unset WEIGHTGEN_MLRUNS MLFLOW_TRACKING_URI PREFECT_API_URL PREFECT_PROFILE
export PREFECT_HOME="$TMP/prefect" PREFECT_SERVER_ANALYTICS_ENABLED=false PWD="$ROOT" \
       PREFECT_API_SERVICES_SCHEDULER_ENABLED=false \
       MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 \
       WEIGHTGEN_CACHE="$TMP/cache"
# MLflow listens on 127.0.0.2 (loopback too, on Linux): its UI opens an "Assistant" panel over a third of every
# page on first load when the hostname is localhost/127.0.0.1, and a browser profile is new on every shot.
# That address must then be allowed as Host and as origin (MLflow's DNS-rebinding and CORS checks).
MLFLOW_HOST=127.0.0.2
PREFECT_PORT="$(free_port 127.0.0.1)"
MLFLOW_PORT="$(free_port "$MLFLOW_HOST")"
UI="http://127.0.0.1:$PREFECT_PORT"
API="$UI/api"
MLFLOW="http://$MLFLOW_HOST:$MLFLOW_PORT"
export PREFECT_UI_API_URL="$API"  # what the UI calls; it defaults to port 4200 whatever --port says

echo "servers: Prefect $UI, MLflow $MLFLOW (state in $TMP)"
start "$TMP/prefect-server.log" "$BIN/prefect" server start --host 127.0.0.1 --port "$PREFECT_PORT"
start "$TMP/mlflow-server.log" "$BIN/mlflow" server --host "$MLFLOW_HOST" --port "$MLFLOW_PORT" --workers 1 \
  --allowed-hosts "$MLFLOW_HOST:$MLFLOW_PORT" --cors-allowed-origins "$MLFLOW" \
  --backend-store-uri "sqlite:///$TMP/mlflow.db" --artifacts-destination "$TMP/mlartifacts"
wait_for 120 "prefect server" sh -c "curl -sf '$API/health' | grep -q true"
wait_for 120 "mlflow server" curl -sf "$MLFLOW/health"
export PREFECT_API_URL="$API" MLFLOW_TRACKING_URI="$MLFLOW"

echo "deploy: work pool weightgen, prefect.yaml"
"$BIN/prefect" work-pool create --type process weightgen >"$TMP/work-pool.log" 2>&1
"$BIN/prefect" --no-prompt deploy --all >"$TMP/deploy.log" 2>&1
start "$TMP/worker.log" "$BIN/prefect" worker start --pool weightgen --limit 1

# --- a tiny pipeline run, triggered as the UI's Run button does ------------------------------------------
cat >"$TMP/grid.yaml" <<'YAML'
name: demo
seeds: [0]
checkpoint_steps: [20]
recipe: {lr: 0.01, batch_size: 64, steps: 40, eval_every: 20}
archs: ["mlp:hidden=16", "mlp:hidden=8x8"]
tasks: [digits]
YAML
cat >"$TMP/suite.yaml" <<'YAML'
name: demo
seeds: [100]
recipe: {lr: 0.01, batch_size: 64, steps: 40, eval_every: 10}
methods: [random, moment, retrieval, generated]
samples: 1
ddim_steps: 5
cases:
  - {arch: "mlp:hidden=12", task: digits, split: unseen-arch}
YAML
PIPELINE_ID="$(curl -sf "$API/deployments/name/pipeline/pipeline" | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["id"])')"
FLOW_RUN_ID="$(TMP="$TMP" "$PY" - "$API/deployments/$PIPELINE_ID/create_flow_run" <<'EOF'
import json, os, sys, urllib.request
tmp = os.environ["TMP"]
parameters = {"name": "demo", "corpus_dir": f"{tmp}/corpus", "run_dir": f"{tmp}/run",
              "corpus": {"grid": f"{tmp}/grid.yaml", "workers": 1},
              "encoder": {"patch_size": 8, "latent_dim": 4, "steps": 20, "min_step": 0, "holdout": 0.25},
              "dit": {"steps": 4, "batch_size": 4, "preset": "tiny", "checkpoint_every": 0, "eval_every": 0, "samples": 1},
              "tune": {"steps": 2, "lookahead_steps": 1, "inner_steps": 2},
              "evaluate": {"suite": f"{tmp}/suite.yaml", "workers": 1}}
body = json.dumps({"parameters": parameters, "state": {"type": "SCHEDULED", "message": "Run from scripts/screenshots.sh"}})
request = urllib.request.Request(sys.argv[1], data=body.encode(), headers={"Content-Type": "application/json"})
with urllib.request.urlopen(request, timeout=30) as response:
    print(json.load(response)["id"])
EOF
)"
echo "pipeline flow run $FLOW_RUN_ID: waiting for it to finish"
STATE=""
DEADLINE=$((SECONDS + 900))
while [ "$SECONDS" -lt "$DEADLINE" ]; do
  STATE="$(curl -sf "$API/flow_runs/$FLOW_RUN_ID" | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["state"]["type"])' || true)"
  case "$STATE" in COMPLETED|FAILED|CRASHED|CANCELLED) break ;; esac
  kill -0 "${PIDS[2]}" 2>/dev/null || { echo "the worker exited" >&2; exit 1; }
  sleep 3
done
[ "$STATE" = COMPLETED ] || { echo "pipeline run ended $STATE" >&2; tail -n 40 "$TMP/worker.log" >&2; exit 1; }
echo "pipeline COMPLETED after $((SECONDS - START)) s"

# The bench's nested runs (one per init method) of this pipeline, for MLflow's compare page.
COMPARE_URL="$("$PY" - "$MLFLOW" "$FLOW_RUN_ID" <<'EOF'
import json, sys, urllib.parse
import mlflow
client = mlflow.MlflowClient(sys.argv[1])
experiment = client.get_experiment_by_name("weightgen-bench")
runs = client.search_runs([experiment.experiment_id],
                          f"tags.`weightgen.pipeline_flow_run_id` = '{sys.argv[2]}' and tags.`weightgen.stage` = 'bench'")
children = sorted((r for r in runs if "mlflow.parentRunId" in r.data.tags), key=lambda r: r.info.run_name)
assert len(children) >= 2, f"expected the bench's nested runs, found {len(children)}"
query = {"runs": json.dumps([r.info.run_id for r in children]), "experiments": json.dumps([experiment.experiment_id])}
print(f"{sys.argv[1]}/#/compare-runs?" + urllib.parse.urlencode(query, quote_via=urllib.parse.quote))
EOF
)"

# --- screenshots ----------------------------------------------------------------------------------------
shot() {  # shot PNG URL [WIDTH,HEIGHT]: one fresh headless Chromium (new profile) per picture
  local png="$1" url="$2" size="${3:-1600,1000}" profile
  profile="$(mktemp -d -p "$TMP" chromium.XXXXXX)"
  rm -f "$png"
  timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync --hide-scrollbars \
    --user-data-dir="$profile" --window-size="$size" --virtual-time-budget=20000 \
    --screenshot="$png" "$url" >>"$TMP/chromium.log" 2>&1
  [ -s "$png" ] || { echo "no screenshot of $url" >&2; return 1; }
  echo "  $png"
}
mkdir -p "$OUT"
echo "screenshots:"
# Prefect's v2 UI (its default in 3.9; the classic one is at / ): the run page draws subflows with their names.
shot "$OUT/prefect-deployments.png" "$UI/v2/deployments"
shot "$OUT/prefect-pipeline-run.png" "$UI/v2/runs/flow-run/$FLOW_RUN_ID"
# Tall enough for the parameters and metrics tables under the plot (--virtual-time-budget lets it render).
shot "$OUT/mlflow-compare.png" "$COMPARE_URL" 1600,1780
