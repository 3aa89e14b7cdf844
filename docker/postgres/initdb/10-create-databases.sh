#!/usr/bin/env bash
# One PostgreSQL instance, four databases: Airflow's, MLflow's, MLflow's users (its basic-auth
# app) and the tuning DAG's Optuna studies. Each keeps an `alembic_version` table, so they must
# never share a database; each is owned by one login role (mlflow owns both of MLflow's) and only
# that role (and the superuser) may connect.
# The postgres image runs this once, on an empty data volume (/docker-entrypoint-initdb.d);
# devstack runs the same file against its local cluster (PGHOST/PGPORT/PGPASSWORD set).
set -euo pipefail

: "${AIRFLOW_DB_PASSWORD:?AIRFLOW_DB_PASSWORD must be set}"
: "${MLFLOW_DB_PASSWORD:?MLFLOW_DB_PASSWORD must be set}"
: "${OPTUNA_DB_PASSWORD:?OPTUNA_DB_PASSWORD must be set}"

# Passwords travel as psql variables (:'name' quotes them), never spliced into SQL text.
psql --no-psqlrc -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres \
  --set airflow_password="$AIRFLOW_DB_PASSWORD" \
  --set mlflow_password="$MLFLOW_DB_PASSWORD" \
  --set optuna_password="$OPTUNA_DB_PASSWORD" <<'SQL'
CREATE ROLE airflow LOGIN PASSWORD :'airflow_password';
CREATE DATABASE airflow OWNER airflow;
REVOKE ALL ON DATABASE airflow FROM PUBLIC;

CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_password';
CREATE DATABASE mlflow OWNER mlflow;
REVOKE ALL ON DATABASE mlflow FROM PUBLIC;
CREATE DATABASE mlflow_auth OWNER mlflow;
REVOKE ALL ON DATABASE mlflow_auth FROM PUBLIC;

CREATE ROLE optuna LOGIN PASSWORD :'optuna_password';
CREATE DATABASE optuna OWNER optuna;
REVOKE ALL ON DATABASE optuna FROM PUBLIC;
SQL
