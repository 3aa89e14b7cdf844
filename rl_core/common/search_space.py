"""The hyperparameter search space of SAC: what a tuning study may vary, and how far.

Seven dimensions, as RL-Zoo's `sample_sac_params` tunes them: learning rate, batch size, net
width, gamma, tau, the update cadence (`train_freq`, with as many `gradient_steps`, so the
updates per env step stay one) and the entropy target. Each env gets a default space that
contains its preset (rl_core/common/presets.py), so the preset itself can be the study's baseline
trial; a user narrows any dimension (or fixes it, with one choice or `low == high`) by giving
it again. A bad space fails with every problem named: unknown dimension (with the closest
name), empty range, a value SACConfig would refuse.

Usable without Optuna installed: `suggest` only calls the trial object it is given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Protocol, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from rl_core.common.config import build_config, describe_errors

if TYPE_CHECKING:
    from collections.abc import Sequence


class SearchSpaceError(ValueError):
    """A search space that cannot be searched; the message names every bad dimension."""


class Trial(Protocol):
    """The part of `optuna.Trial` a search space uses."""

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...


_STRICT = ConfigDict(extra="forbid", frozen=True, strict=True)


class FloatRange(BaseModel):
    """A continuous dimension from `low` to `high` (both included; equal fixes it)."""

    model_config = _STRICT
    low: float = Field(allow_inf_nan=False)
    high: float = Field(allow_inf_nan=False)

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if self.low > self.high:
            raise ValueError(f"empty range: low {self.low:g} is above high {self.high:g}")
        return self


class LogRange(FloatRange):
    """A range in (0, 1] sampled on a log scale (a learning rate, tau)."""

    low: float = Field(gt=0.0, le=1.0, allow_inf_nan=False)
    high: float = Field(gt=0.0, le=1.0, allow_inf_nan=False)


def _choices(item: Any, description: str) -> Any:
    """A categorical dimension: a non-empty list of distinct values."""

    class Choices(BaseModel):
        __doc__ = description
        model_config = _STRICT
        choices: list[item] = Field(min_length=1, max_length=32)  # type: ignore[valid-type]

        @model_validator(mode="after")
        def _distinct(self) -> Self:
            if len({repr(c) for c in self.choices}) != len(self.choices):
                raise ValueError(f"choices repeat a value: {self.choices}")
            return self

    return Choices


PositiveInt = Annotated[int, Field(ge=1, le=65_536)]
IntChoices = _choices(PositiveInt, "Integers to choose from.")
CadenceChoices = _choices(Annotated[int, Field(ge=1, le=1_000)], "Env steps between updates.")
UnitChoices = _choices(Annotated[float, Field(ge=0.0, le=1.0)], "Numbers in [0, 1] to choose from.")
NetChoices = _choices(
    Annotated[list[PositiveInt], Field(min_length=1, max_length=8)],
    "Hidden layer widths to choose from, e.g. [[64, 64], [256, 256]].",
)


class SearchSpace(BaseModel):
    """Where each tuned SAC hyperparameter may go; every dimension is set."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    learning_rate: LogRange
    """Adam learning rate of actor, critics and entropy coefficient (log scale)."""
    batch_size: IntChoices  # type: ignore[valid-type]
    """Transitions per gradient step."""
    hidden_sizes: NetChoices  # type: ignore[valid-type]
    """Hidden layer widths shared by actor and critics."""
    gamma: UnitChoices  # type: ignore[valid-type]
    """Discount factor."""
    tau: LogRange
    """Polyak coefficient of the target critics (log scale)."""
    train_freq: CadenceChoices  # type: ignore[valid-type]
    """Env steps between update phases; each phase does as many gradient steps."""
    target_entropy_per_action: FloatRange
    """Entropy target per action dimension (SAC's heuristic: -1)."""

    def suggest(self, trial: Trial) -> dict[str, Any]:
        """One point of the space, drawn by `trial`, as Optuna parameters (`trial.params`)."""
        return {
            "learning_rate": _float(trial, "learning_rate", self.learning_rate, log=True),
            "batch_size": trial.suggest_categorical("batch_size", self.batch_size.choices),
            "hidden_sizes": trial.suggest_categorical(
                "hidden_sizes", [net_name(net) for net in self.hidden_sizes.choices]
            ),
            "gamma": trial.suggest_categorical("gamma", self.gamma.choices),
            "tau": _float(trial, "tau", self.tau, log=True),
            "train_freq": trial.suggest_categorical("train_freq", self.train_freq.choices),
            "target_entropy_per_action": _float(
                trial, "target_entropy_per_action", self.target_entropy_per_action
            ),
        }

    def contains(self, params: dict[str, Any]) -> bool:
        """Whether a point (as Optuna parameters) lies in this space."""
        ranges = {"learning_rate", "tau", "target_entropy_per_action"}
        for name in ranges:
            bounds = getattr(self, name)
            if not bounds.low <= params[name] <= bounds.high:
                return False
        nets = [net_name(net) for net in self.hidden_sizes.choices]
        return (
            params["hidden_sizes"] in nets
            and params["batch_size"] in self.batch_size.choices
            and params["gamma"] in self.gamma.choices
            and params["train_freq"] in self.train_freq.choices
        )


def _float(trial: Trial, name: str, bounds: FloatRange, *, log: bool = False) -> float:
    return trial.suggest_float(name, bounds.low, bounds.high, log=log)


def net_name(hidden_sizes: Sequence[int]) -> str:
    """`[256, 256]` as `"256x256"`: Optuna's categorical values are scalars."""
    return "x".join(str(width) for width in hidden_sizes)


def sac_overrides(params: dict[str, Any], act_dim: int) -> dict[str, Any]:
    """A point of the space (Optuna parameters) as SACConfig values for an env with `act_dim`
    action dimensions."""
    return {
        "learning_rate": params["learning_rate"],
        "batch_size": params["batch_size"],
        "hidden_sizes": [int(width) for width in params["hidden_sizes"].split("x")],
        "gamma": params["gamma"],
        "tau": params["tau"],
        "train_freq": params["train_freq"],
        "gradient_steps": params["train_freq"],
        "target_entropy": params["target_entropy_per_action"] * act_dim,
    }


def preset_point(env_id: str, act_dim: int) -> dict[str, Any]:
    """The env's preset (SACConfig defaults under RL-Zoo's values) as Optuna parameters.

    None of rlops' presets updates other than once per step on average, so `train_freq`
    alone says the cadence.
    """
    config = build_config({"env_id": env_id})
    entropy = -act_dim if config.target_entropy == "auto" else config.target_entropy
    return {
        "learning_rate": config.learning_rate,
        "batch_size": config.batch_size,
        "hidden_sizes": net_name(config.hidden_sizes),
        "gamma": config.gamma,
        "tau": config.tau,
        "train_freq": config.train_freq,
        "target_entropy_per_action": entropy / act_dim,
    }


BASE_SPACE: dict[str, dict[str, Any]] = {
    "learning_rate": {"low": 1e-4, "high": 3e-3},
    "batch_size": {"choices": [64, 128, 256, 512]},
    "hidden_sizes": {"choices": [[64, 64], [256, 256], [400, 300]]},
    "gamma": {"choices": [0.95, 0.98, 0.99, 0.995, 0.999]},
    "tau": {"low": 0.002, "high": 0.05},
    "train_freq": {"choices": [1, 4, 8, 16, 32, 64]},
    "target_entropy_per_action": {"low": -2.0, "high": 0.0},
}
"""RL-Zoo's SAC ranges, trimmed to what can pay off in a budget of tens of thousands of steps
(no learning rate down to 1e-5, no batch of 16, no 2,048-wide nets)."""


def default_space(env_id: str) -> dict[str, dict[str, Any]]:
    """`BASE_SPACE` stretched to hold the env's preset, so the preset is a point of it."""
    preset = preset_point(env_id, act_dim=1)
    preset["hidden_sizes"] = [int(width) for width in preset["hidden_sizes"].split("x")]
    space = {}
    for name, dimension in BASE_SPACE.items():
        value = preset[name]
        if "choices" in dimension:
            extra = [] if value in dimension["choices"] else [value]
            space[name] = {"choices": [*dimension["choices"], *extra]}
        else:
            low, high = dimension["low"], dimension["high"]
            space[name] = {"low": min(low, value), "high": max(high, value)}
    return space


def narrowing_model() -> type[BaseModel]:
    """The model of a user's narrowing: any dimension of `SearchSpace`, none required."""
    fields: dict[str, Any] = {
        name: (field.annotation, Field(None, description=field.description))
        for name, field in SearchSpace.model_fields.items()
    }
    config = ConfigDict(extra="forbid", frozen=True)
    return create_model("SearchSpaceNarrowing", __config__=config, **fields)


def search_space(env_id: str, narrowed: dict[str, Any] | None = None) -> SearchSpace:
    """The env's default space with the dimensions the user gave replaced, validated.

    Raises `SearchSpaceError` naming every bad dimension, under `search_space.`.
    """
    try:
        return SearchSpace(**{**default_space(env_id), **(narrowed or {})})
    except ValidationError as exc:
        problems = [f"search_space.{line}" for line in describe_errors(exc, SearchSpace)]
        raise SearchSpaceError(f"invalid search space: {'; '.join(problems)}") from None
