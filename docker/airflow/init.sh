#!/usr/bin/env bash
# airflow-init: one-shot setup before the Airflow services start.
set -euo pipefail
: "${AIRFLOW_ADMIN_PASSWORD:?AIRFLOW_ADMIN_PASSWORD must be set}"

# SimpleAuthManager reads passwords from this JSON file; without it the API server would
# generate one and print it to its log.
umask 077
python - <<'PY'
import json
import os

users = os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"]
with open(os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"], "w") as file:
    json.dump({users.split(":")[0]: os.environ["AIRFLOW_ADMIN_PASSWORD"]}, file)
PY

exec airflow db migrate
