# syntax=docker/dockerfile:1
# The policy server (`python -m rlops_serving`): CPU torch, the server's pins from
# requirements.txt, and mlflow-skinny at the pinned MLflow version (the client only: no pandas,
# pyarrow, SQLAlchemy or tracking server). Neither Airflow nor the training stack is installed.
# Build context: the repository root (see serving.Dockerfile.dockerignore beside this file).
FROM python:3.11-slim-bookworm

# torch's default Linux wheel pulls several GB of CUDA libraries; the CPU build of the same
# version comes from PyTorch's own index.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

COPY requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" \
        "$(grep -E '^torch==' /tmp/requirements.txt)" \
    && grep -iE '^(numpy|gymnasium|pydantic|pydantic-settings|PyYAML|prometheus-client|fastapi|starlette|uvicorn|uvloop|httptools)==' \
        /tmp/requirements.txt > /tmp/serving.txt \
    && test "$(wc -l < /tmp/serving.txt)" -eq 11 \
    && sed -n 's/^mlflow==/mlflow-skinny==/p' /tmp/requirements.txt >> /tmp/serving.txt \
    && test "$(wc -l < /tmp/serving.txt)" -eq 12 \
    && pip install --no-cache-dir -r /tmp/serving.txt \
    && pip check \
    && rm /tmp/requirements.txt /tmp/serving.txt \
    && useradd --create-home --uid 10001 rlops

# The code the server imports: rl_core (the policy model folder), rlops_registry (aliases and
# tag names; no Airflow), and the server itself. Nothing of the Airflow side.
COPY rl_core /opt/rlops/rl_core
COPY plugins/rlops_registry /opt/rlops/plugins/rlops_registry
COPY plugins/rlops_serving /opt/rlops/plugins/rlops_serving
ENV PYTHONPATH=/opt/rlops:/opt/rlops/plugins \
    PYTHONUNBUFFERED=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    RLOPS_SERVING_HOST=0.0.0.0 \
    RLOPS_SERVING_PORT=8000
RUN python -c "import rlops_serving.server"

USER rlops
WORKDIR /home/rlops
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=6 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
CMD ["python", "-m", "rlops_serving"]
