# Environment of the embedded local default: Airflow on SQLite in .local/airflow, MLflow on
# SQLite with a local artifact folder in .local/mlflow. No Docker, no Postgres, no servers.
# Source it (`source scripts/local-env.sh`) to use `airflow` and `mlflow` on those results.
RLOPS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="$RLOPS_ROOT/.venv/bin:$PATH"
export AIRFLOW_HOME="$RLOPS_ROOT/.local/airflow"
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="sqlite:///$AIRFLOW_HOME/airflow.db"
export AIRFLOW__CORE__DAGS_FOLDER="$RLOPS_ROOT/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$RLOPS_ROOT/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__API__HOST=127.0.0.1
export AIRFLOW__API__PORT=8080
export AIRFLOW__API__BASE_URL=http://127.0.0.1:8080
# Local only: every UI/API user is admin, no login. Never set this in production.
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=True
export MLFLOW_TRACKING_URI="sqlite:///$RLOPS_ROOT/.local/mlflow/mlflow.db"
export RLOPS_MLFLOW_ARTIFACT_LOCATION="$RLOPS_ROOT/.local/mlflow/artifacts"
export RLOPS_MLFLOW_UI_URL=http://127.0.0.1:5000
export MLFLOW_DISABLE_TELEMETRY=true
mkdir -p "$AIRFLOW_HOME" "$RLOPS_ROOT/.local/mlflow/artifacts"
