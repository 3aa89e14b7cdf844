#!/usr/bin/env bash
# Set up and run the whole rlops pipeline end to end on the embedded local default:
# Airflow on SQLite (.local/airflow), MLflow on SQLite + a local artifact folder (.local/mlflow).
# No Docker, no Postgres. Usage: bash scripts/run-local-pipeline.sh ['<conf json>']
#
# Tasks run as they do in production: Airflow's LocalExecutor starts each one in its own
# supervised process, which reports to the API server and writes the task log the Airflow UI
# shows. The API server runs for the length of the pipeline (one already serving this
# AIRFLOW_HOME on the same port is used instead).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
source scripts/local-env.sh

CONF=${1:-'{"total_timesteps": 6000, "checkpoint_every": 2000}'}
LOG="$AIRFLOW_HOME/last-pipeline-run.log"
API="$AIRFLOW__API__BASE_URL/api/v2/version"

echo "==> preparing embedded Airflow in $AIRFLOW_HOME"
airflow db migrate > "$AIRFLOW_HOME/db-migrate.log" 2>&1 \
  || { tail -30 "$AIRFLOW_HOME/db-migrate.log"; exit 1; }
airflow dags reserialize > "$AIRFLOW_HOME/reserialize.log" 2>&1 \
  || { tail -30 "$AIRFLOW_HOME/reserialize.log"; exit 1; }

if ! curl -fs "$API" > /dev/null; then
  echo "==> starting the Airflow API server on $AIRFLOW__API__BASE_URL for the run"
  airflow api-server > "$AIRFLOW_HOME/api-server.log" 2>&1 &
  API_SERVER=$!
  trap 'kill "$API_SERVER" 2> /dev/null; wait "$API_SERVER" 2> /dev/null || true' EXIT
  for _ in $(seq 120); do
    curl -fs "$API" > /dev/null && break
    kill -0 "$API_SERVER" 2> /dev/null \
      || { tail -30 "$AIRFLOW_HOME/api-server.log"; echo "API server did not start" >&2; exit 1; }
    sleep 1
  done
  curl -fs "$API" > /dev/null || { echo "API server not answering on $API" >&2; exit 1; }
fi

echo "==> running DAG rlops_sac_pipeline end to end with conf $CONF"
echo "    (validate_conf -> train -> evaluate -> export_torchscript -> benchmark_latency"
echo "     -> register -> promote; about two minutes on 2 cores; watch it live at"
echo "     $AIRFLOW__API__BASE_URL; scheduler log in $LOG)"
# `airflow dags test --use-executor`, stopped if LocalExecutor's shutdown hangs after the run
if ! python -m rlops_airflow.local_dag_run rlops_sac_pipeline "$CONF" "$LOG"; then
  grep -E "ERROR|Error|Traceback|state=failed" "$LOG" | tail -20
  echo "pipeline run FAILED; scheduler log: $LOG; task logs under $AIRFLOW_HOME/logs" >&2
  exit 1
fi
echo
python -m rlops_airflow.report
