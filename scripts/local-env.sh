# Environment of the embedded local default: Airflow on SQLite in .local/airflow, MLflow on
# SQLite with a local artifact folder in .local/mlflow. No Docker, no Postgres.
# Source it (`source scripts/local-env.sh`) to use `airflow` and `mlflow` on those results.
# RLOPS_LOCAL_DIR (default .local) and RLOPS_AIRFLOW_PORT (default 8080) move them elsewhere.
RLOPS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RLOPS_LOCAL_DIR=${RLOPS_LOCAL_DIR:-$RLOPS_ROOT/.local}
RLOPS_AIRFLOW_PORT=${RLOPS_AIRFLOW_PORT:-8080}
export PATH="$RLOPS_ROOT/.venv/bin:$PATH"
export AIRFLOW_HOME="$RLOPS_LOCAL_DIR/airflow"
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="sqlite:///$AIRFLOW_HOME/airflow.db"
export AIRFLOW__CORE__DAGS_FOLDER="$RLOPS_ROOT/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$RLOPS_ROOT/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__EXECUTOR=LocalExecutor
export AIRFLOW__API__HOST=127.0.0.1
export AIRFLOW__API__PORT=$RLOPS_AIRFLOW_PORT
export AIRFLOW__API__BASE_URL=http://127.0.0.1:$RLOPS_AIRFLOW_PORT
# Local only: every UI/API user is admin, no login. Never set this in production.
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=True
export MLFLOW_TRACKING_URI="sqlite:///$RLOPS_LOCAL_DIR/mlflow/mlflow.db"
export RLOPS_MLFLOW_ARTIFACT_LOCATION="$RLOPS_LOCAL_DIR/mlflow/artifacts"
export RLOPS_MLFLOW_UI_URL=http://127.0.0.1:5000
export MLFLOW_DISABLE_TELEMETRY=true
# Runs here go through `airflow dags test`, which fails a successful run of a DAG with a
# deadline alert (apache/airflow#73428): the local default goes without deadline alerts.
export RLOPS_DEADLINE_ALERTS=off
mkdir -p "$AIRFLOW_HOME" "$RLOPS_LOCAL_DIR/mlflow/artifacts"
