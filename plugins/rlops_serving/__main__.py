"""`python -m rlops_serving`: serve `RLOPS_SERVING_MODEL_NAME@champion` (see server.py)."""

from rlops_serving.server import main

main()
