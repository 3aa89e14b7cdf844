#!/usr/bin/env bash
# airflow-init: one-shot setup before the Airflow services start.
set -euo pipefail
: "${AIRFLOW_ADMIN_PASSWORD:?AIRFLOW_ADMIN_PASSWORD must be set}"

# SimpleAuthManager reads passwords from this JSON file; without it the API server would
# generate them and print them to its log. The admin's from AIRFLOW_ADMIN_PASSWORD, every other
# user's from AIRFLOW_<USER>_PASSWORD.
umask 077
python - <<'PY'
import json
import os

users = [entry.split(":")[0] for entry in os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(",")]
passwords = {users[0]: os.environ["AIRFLOW_ADMIN_PASSWORD"]}
passwords |= {user: os.environ[f"AIRFLOW_{user.upper()}_PASSWORD"] for user in users[1:]}
with open(os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"], "w") as file:
    json.dump(passwords, file)
PY

exec airflow db migrate
