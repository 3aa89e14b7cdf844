"""Record this machine's returns in tests/regression/reference.json for the exact-replay test.

    .venv/bin/python tests/regression/make_reference.py

The file holds one record per numeric fingerprint (CPU model and kernel flags, library
versions, threads, matmul precision): running this adds or replaces this machine's record.
Re-record every fingerprint only when a change is *meant* to alter learning (new defaults, a
fixed bug), and commit the file with that change, saying why.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from rl_core.config import SACConfig
from rl_core.evaluation import evaluate
from rl_core.lineage import numeric_fingerprint
from rl_core.training import train

REFERENCE = Path(__file__).with_name("reference.json")
CONFIG = {
    "total_timesteps": 2_500,
    "hidden_sizes": [128, 128],
    "batch_size": 128,
    "seed": 7,
    "eval_seeds": list(range(1000, 1005)),
}


def fingerprint() -> dict[str, object]:
    return numeric_fingerprint(SACConfig(**CONFIG))


def evaluation_returns() -> list[float]:
    """Per-episode eval returns of CONFIG, trained from scratch."""
    config = SACConfig(**CONFIG)
    agent = train(config, show_progress=False).agent
    return evaluate(agent.act, config.env_id, config.eval_seeds).returns


def recorded_returns(records: list[dict], machine: dict[str, object]) -> list[float] | None:
    """The returns recorded for `machine`'s fingerprint, if any."""
    for record in records:
        if record["fingerprint"] == machine and record["config"] == CONFIG:
            return record["returns"]
    return None


def main() -> None:
    machine = fingerprint()
    records = json.loads(REFERENCE.read_text())["records"] if REFERENCE.exists() else []
    records = [r for r in records if r["fingerprint"] != machine]
    returns = evaluation_returns()
    records.append(
        {
            "produced_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "config": CONFIG,
            "fingerprint": machine,
            "returns": returns,
        }
    )
    document = {"produced_by": "python tests/regression/make_reference.py", "records": records}
    REFERENCE.write_text(json.dumps(document, indent=2) + "\n")
    print(f"{len(records)} fingerprint(s); this machine's returns {returns} -> {REFERENCE}")


if __name__ == "__main__":
    main()
