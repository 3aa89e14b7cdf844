#!/usr/bin/env bash
# One PostgreSQL instance, two databases. Airflow and MLflow both keep an `alembic_version`
# table, so they must never share a database; each database is owned by its own login role and
# only that role (and the superuser) may connect to it.
# The postgres image runs this once, on an empty data volume (/docker-entrypoint-initdb.d);
# devstack runs the same file against its local cluster (PGHOST/PGPORT/PGPASSWORD set).
set -euo pipefail

: "${AIRFLOW_DB_PASSWORD:?AIRFLOW_DB_PASSWORD must be set}"
: "${MLFLOW_DB_PASSWORD:?MLFLOW_DB_PASSWORD must be set}"

# Passwords travel as psql variables (:'name' quotes them), never spliced into SQL text.
psql --no-psqlrc -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres \
  --set airflow_password="$AIRFLOW_DB_PASSWORD" \
  --set mlflow_password="$MLFLOW_DB_PASSWORD" <<'SQL'
CREATE ROLE airflow LOGIN PASSWORD :'airflow_password';
CREATE DATABASE airflow OWNER airflow;
REVOKE ALL ON DATABASE airflow FROM PUBLIC;

CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_password';
CREATE DATABASE mlflow OWNER mlflow;
REVOKE ALL ON DATABASE mlflow FROM PUBLIC;
SQL
