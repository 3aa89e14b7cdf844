"""One typed config for a SAC run: every hyperparameter, validated, loadable from YAML/JSON.

Defaults follow RL-Zoo's tuned SAC hyperparameters for Pendulum-v1, so the default run is the
one the quality target is measured on. A bad value fails with a message that names the field,
the value given and what is allowed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rl_core import cpu


class ConfigError(ValueError):
    """A config value or override that cannot be used; the message names the field."""


class SACConfig(BaseModel):
    """Hyperparameters of one SAC training run (RL-Zoo defaults for Pendulum-v1)."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    env_id: str = "Pendulum-v1"
    """Gymnasium id of an environment with a continuous (Box) action space."""
    total_timesteps: int = Field(20_000, ge=1, le=100_000_000)
    """Environment steps to collect (one update per step after `learning_starts`)."""
    seed: int = Field(0, ge=0, le=2**31 - 1)
    """Drives torch, numpy, env resets, warm-up actions, replay sampling and action noise."""
    hidden_sizes: tuple[int, ...] = Field((256, 256), min_length=1, max_length=8)
    """Width of each hidden layer, shared by actor and critics."""
    learning_rate: float = Field(1e-3, gt=0.0, le=1.0)
    """Adam learning rate of actor, critics and entropy coefficient."""
    buffer_size: int = Field(1_000_000, ge=1)
    """Replay buffer capacity in transitions (memory is only touched as it fills)."""
    learning_starts: int = Field(100, ge=0)
    """Uniform-random steps before the first update."""
    batch_size: int = Field(256, ge=1, le=65_536)
    """Transitions per gradient step."""
    gamma: float = Field(0.99, ge=0.0, le=1.0)
    """Discount factor."""
    tau: float = Field(0.005, gt=0.0, le=1.0)
    """Polyak coefficient of the target critics."""
    train_freq: int = Field(1, ge=1)
    """Env steps between update phases."""
    gradient_steps: int = Field(1, ge=1)
    """Gradient steps per update phase."""
    ent_coef: Literal["auto"] | float = "auto"
    """Entropy coefficient alpha: "auto" tunes it towards `target_entropy`, a float fixes it."""
    ent_coef_init: float = Field(1.0, gt=0.0)
    """Initial alpha when `ent_coef` is "auto" (SB3's default)."""
    target_entropy: Literal["auto"] | float = "auto"
    """Entropy target; "auto" means -dim(action space)."""
    eval_seeds: tuple[int, ...] = Field(tuple(range(1000, 1010)), min_length=1)
    """Env seeds of the deterministic evaluation episodes, one episode per seed."""
    torch_threads: int = Field(2, ge=1, le=256)
    """Intra-op threads for the update (2 is the sweet spot on a 2-core CPU)."""
    matmul_precision: Literal["auto", "bf16", "ieee"] = "auto"
    """GEMM precision in the update. "bf16": oneDNN rounds matmul inputs to bfloat16 and
    accumulates in fp32 (the CPU analogue of TF32, ~2x faster GEMMs). "ieee": full fp32.
    "auto": bf16 where the CPU has bfloat16 instructions (avx512_bf16 or amx_bf16) and the
    widest hidden layer has at least 256 units, ieee elsewhere (rl_core/cpu.py says why); the
    choice is logged as the lineage tag `matmul_precision`."""
    checkpoint_every: int = Field(0, ge=0)
    """Write a checkpoint at the first episode end after every N steps (0: only at the end)."""
    log_every: int = Field(1_000, ge=1)
    """Steps between loss/alpha/throughput metric points."""

    @field_validator("hidden_sizes")
    @classmethod
    def _positive_widths(cls, sizes: tuple[int, ...]) -> tuple[int, ...]:
        if any(width < 1 for width in sizes):
            raise ValueError("every hidden layer width must be a positive integer")
        return sizes

    @field_validator("ent_coef")
    @classmethod
    def _positive_ent_coef(cls, value: str | float) -> str | float:
        if not isinstance(value, str) and value <= 0:
            raise ValueError('must be "auto" or a positive number')
        return value

    @property
    def effective_matmul_precision(self) -> cpu.MatmulPrecision:
        """The precision this config trains with on this CPU ("auto" resolved)."""
        return cpu.resolve_matmul_precision(self.matmul_precision, max(self.hidden_sizes))

    def resolved(self) -> dict[str, Any]:
        """The config as plain JSON-able values (what is logged and hashed)."""
        return self.model_dump(mode="json")

    def config_hash(self) -> str:
        """Short, stable hash of the resolved config: the identity of a training recipe."""
        canonical = json.dumps(self.resolved(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _describe_error(error: dict[str, Any]) -> str:
    field = ".".join(str(part) for part in error["loc"]) or "<config>"
    given = error.get("input")
    return f"{field}: {error['msg']} (given {given!r})"


def build_config(values: dict[str, Any]) -> SACConfig:
    """Validate raw values into a `SACConfig`, turning pydantic's errors into a `ConfigError`."""
    try:
        return SACConfig(**values)
    except ValidationError as exc:
        details = "; ".join(_describe_error(e) for e in exc.errors())
        allowed = ", ".join(SACConfig.model_fields)
        if any(e["type"] == "extra_forbidden" for e in exc.errors()):
            details += f". Known fields: {allowed}"
        raise ConfigError(f"invalid SAC config: {details}") from None


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """Turn `key=value` strings into a dict; values are parsed as YAML (numbers, lists, ...)."""
    parsed: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form key=value")
        parsed[key.strip()] = yaml.safe_load(raw) if raw.strip() else raw
    return parsed


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> SACConfig:
    """Load a YAML or JSON config file (optional), apply `key=value` overrides, validate."""
    values: dict[str, Any] = {}
    if path is not None:
        text = Path(path).read_text()
        loaded = yaml.safe_load(text)  # YAML is a superset of JSON
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of field: value")
        values.update(loaded or {})
    values.update(parse_overrides(overrides or []))
    return build_config(values)
