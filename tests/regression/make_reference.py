"""Produce tests/regression/reference.json: the learning regression test's expected returns.

    .venv/bin/python tests/regression/make_reference.py

Run it only when a change is *meant* to alter learning (new defaults, a fixed bug), and commit
the new file with that change, saying why. It records the machine fingerprint: on a matching
machine the test demands identical returns, elsewhere a tolerance.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from rl_core.config import SACConfig
from rl_core.evaluation import evaluate
from rl_core.lineage import cpu_model, package_versions
from rl_core.training import train

REFERENCE = Path(__file__).with_name("reference.json")
CONFIG = {
    "total_timesteps": 2_500,
    "hidden_sizes": [128, 128],
    "batch_size": 128,
    "seed": 7,
    "eval_seeds": list(range(1000, 1005)),
}


def fingerprint(config: SACConfig) -> dict[str, object]:
    """What must match for bit-identical returns: CPU, library versions, threads, precision."""
    versions = package_versions()
    return {
        "cpu": cpu_model(),
        "torch": versions["torch"],
        "numpy": versions["numpy"],
        "gymnasium": versions["gymnasium"],
        "torch_threads": config.torch_threads,
        "matmul_precision": config.matmul_precision,
    }


def main() -> None:
    config = SACConfig(**CONFIG)
    agent = train(config, show_progress=False).agent
    result = evaluate(agent.act, config.env_id, config.eval_seeds)
    REFERENCE.write_text(
        json.dumps(
            {
                "produced_by": "python tests/regression/make_reference.py",
                "produced_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "config": CONFIG,
                "fingerprint": fingerprint(config),
                "returns": result.returns,
                "mean": result.mean,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"mean return {result.mean:.3f} -> {REFERENCE}")


if __name__ == "__main__":
    main()
