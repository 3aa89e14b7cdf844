#!/usr/bin/env bash
# Set up and run the whole rlops pipeline end to end on the embedded local default:
# Airflow on SQLite (.local/airflow), MLflow on SQLite + a local artifact folder (.local/mlflow).
# No Docker, no Postgres, no servers. Usage: bash scripts/run-local-pipeline.sh ['<conf json>']
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
source scripts/local-env.sh

CONF=${1:-'{"total_timesteps": 6000, "checkpoint_every": 2000}'}
LOG="$AIRFLOW_HOME/last-pipeline-run.log"

echo "==> preparing embedded Airflow in $AIRFLOW_HOME"
airflow db migrate > "$AIRFLOW_HOME/db-migrate.log" 2>&1 \
  || { tail -30 "$AIRFLOW_HOME/db-migrate.log"; exit 1; }
airflow dags reserialize > "$AIRFLOW_HOME/reserialize.log" 2>&1 \
  || { tail -30 "$AIRFLOW_HOME/reserialize.log"; exit 1; }

echo "==> running DAG rlops_sac_pipeline end to end with conf $CONF"
echo "    (train -> evaluate -> export_torchscript -> benchmark_latency -> register -> promote;"
echo "     about two minutes on 2 cores; task logs in $LOG)"
if ! airflow dags test rlops_sac_pipeline -c "$CONF" > "$LOG" 2>&1; then
  grep -E "ERROR|Error|Traceback" "$LOG" | tail -20
  echo "pipeline run FAILED; full log: $LOG" >&2
  exit 1
fi
echo
python -m rlops_airflow.report
