"""The pipeline's settings: the one definition of every trigger-form param and its bounds.

The DAG's Params (the trigger form and the REST API's 400s) are generated from this model's
JSON schema (`rlops_airflow.params`), the `validate_conf` task validates a run's whole conf
with it before anything runs, and the task code uses it as the typed view of the params.
So a bound, a title or an allowed value is written once, here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StrictBool,
    ValidationError,
    model_validator,
)

from rl_core.common.config import (
    MAX_SEED,
    SACConfig,
    build_config,
    describe_errors,
    overrides_model,
    stored_config,
)
from rl_core.envs.env_guard import MODULE_NAME
from rl_core.envs.env_plugins import offered_envs
from rlops_airflow.promotion import Thresholds
from rlops_registry.names import default_model_name

EXPERIMENT_ENV = "RLOPS_MLFLOW_EXPERIMENT"
ARTIFACT_LOCATION_ENV = "RLOPS_MLFLOW_ARTIFACT_LOCATION"
DEFAULT_EXPERIMENT = "rlops"

TRAINING, EVALUATION, PROMOTION, ADVANCED = "Training", "Evaluation", "Promotion", "Advanced"
SECTIONS = (TRAINING, EVALUATION, PROMOTION, ADVANCED)
ENV_PROPOSALS = ("Pendulum-v1", "MountainCarContinuous-v0", *sorted(offered_envs()))
"""Env ids the trigger form proposes (any other can be typed): the default; MountainCar,
whose preset (gSDE) solves it in RL-Zoo's 50,000 steps; and the envs the installed packages
offer through `rlops.envs` entry points (PointReach-v0 where the example package is
installed)."""

PIPELINE_OWNED = frozenset(
    {
        "env_id",
        "env_packages",
        "env_kwargs",
        "total_timesteps",
        "seed",
        "eval_seeds",
        "checkpoint_every",
    }
)
"""SACConfig fields the form sets through its own params, so not through `sac_overrides`."""
SACOverrides = overrides_model("SACOverrides", PIPELINE_OWNED)


class ConfError(ValueError):
    """A DAG run's conf that cannot run; the message names every bad field."""


MODEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$"
"""A registered model name a run's conf may give (MLflow's own rule is looser)."""


def form_field(default: Any, section: str, title: str, description: str, **bounds: Any) -> Any:
    """A field that is also a trigger-form param: title, description and section shown."""
    return Field(
        default,
        title=title,
        description=description,
        json_schema_extra={"section": section},
        **bounds,
    )


class PipelineSettings(BaseModel):
    """Everything one pipeline run needs to know; field names are the DAG's params."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    env_id: str = form_field(
        "Pendulum-v1",
        TRAINING,
        "Environment",
        "Any gymnasium env id with a continuous (Box) action space and a flat Box observation: "
        "a registered id, one an installed package offers (rlops.envs entry points), or "
        "'module:EnvId-v0'. The validate_env task builds it first.",
        max_length=200,
        pattern=r"^[A-Za-z0-9_.:/\-]+$",  # also refuses the empty string, with one message
        examples=list(ENV_PROPOSALS),
    )
    env_packages: list[Annotated[str, Field(pattern=MODULE_NAME)]] = form_field(
        [],
        TRAINING,
        "Env packages",
        "Python modules imported before the env is made, e.g. one that registers it. Only "
        "packages offering envs (rlops.envs entry points) and those the workers list in "
        "RLOPS_ALLOWED_ENV_MODULES, with their sub-modules; 'module:EnvId-v0' ids likewise.",
        max_length=16,
    )
    env_kwargs: dict[str, Any] = form_field(  # JSON from the conf; SACConfig checks it further
        {},
        TRAINING,
        "Env keyword arguments",
        "Passed to gymnasium.make unchanged (the env's constructor runs with them on the "
        'workers), e.g. {"g": 9.81} for Pendulum-v1. Names of files (xml_file, *_file, '
        "*_path, *_dir, *_filename) are refused unless the workers set "
        "RLOPS_ALLOW_ENV_FILE_KWARGS=1.",
    )
    total_timesteps: int = form_field(
        20_000,
        TRAINING,
        "Total timesteps",
        "Environment steps to train for (1,000 to 2,000,000).",
        ge=1_000,
        le=2_000_000,
    )
    seed: int = form_field(
        0,
        TRAINING,
        "Seed",
        "Drives network init, exploration, replay sampling and env resets.",
        ge=0,
        le=MAX_SEED,
    )
    n_seeds: int = form_field(
        1,
        TRAINING,
        "Seeds to sweep",
        "Train seeds seed..seed+n-1 in parallel; the best one goes to the gate.",
        ge=1,
        le=8,
    )
    checkpoint_every: int = form_field(
        5_000,
        TRAINING,
        "Checkpoint every (steps)",
        "Upload a checkpoint this often; a retried train task resumes from it. "
        "0: only at the end. At most total timesteps.",
        ge=0,
        le=2_000_000,
    )
    eval_episodes: int = form_field(
        50,
        EVALUATION,
        "Evaluation episodes",
        "Deterministic episodes, one per env seed. 50 (benchmarks/decision_quality.py, "
        "Pendulum): a 10% better retrain replaces the champion 98% of the time (45% with 10 "
        "episodes), an equal one never (5% with 10); about 3 s for candidate and champion.",
        ge=1,
        le=100,
    )
    eval_seed_start: int = form_field(
        1000,
        EVALUATION,
        "First evaluation seed",
        "Episodes use env seeds start, start+1, ... (default 1000..1049).",
        ge=0,
        le=MAX_SEED - 99,
    )
    use_best: StrictBool = form_field(
        True,
        EVALUATION,
        "Gate the best policy",
        "With eval_every in sac_overrides: the gate, export and registry take the best policy "
        "of the evaluations during training; off, the last one.",
    )
    record_video: StrictBool = form_field(
        True,
        EVALUATION,
        "Record a video",
        "After the gate, one episode of each candidate on the first evaluation seed, as an "
        "animated GIF on its MLflow run (video/episode.gif). An env that cannot render here "
        "never fails the run: the run's tag rlops.video says why there is none.",
    )
    min_reward: float = form_field(
        -250.0,
        PROMOTION,
        "Minimum mean return",
        "Quality gate: the candidate's mean return must reach this.",
        ge=-1e9,
        le=1e9,
        allow_inf_nan=False,
    )
    min_speedup: float = form_field(
        1.5,
        PROMOTION,
        "Minimum TorchScript speedup",
        "Eager over exported median latency at batch 1 must reach this.",
        ge=0.0,
        le=100.0,
        allow_inf_nan=False,
    )
    compare_with_champion: StrictBool = form_field(
        True,
        PROMOTION,
        "Must not be worse than the champion",
        "Also require, on the same eval seeds episode by episode, a mean return difference "
        "to the current champion whose confidence interval stays at or above -margin.",
    )
    confidence: float = form_field(
        0.95,
        PROMOTION,
        "Confidence level",
        "Of the bootstrap intervals the gate states and the champion comparison decides on.",
        ge=0.5,
        le=0.999,
        allow_inf_nan=False,
    )
    noninferiority_margin: float = form_field(
        0.0,
        PROMOTION,
        "Non-inferiority margin",
        "How much worse than the champion the candidate may be at the low end of the "
        "interval, as a fraction of the magnitude of the champion's mean return. 0: it must "
        "be shown at least as good; 0.05: it may be up to 5% worse.",
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
    )
    registered_model_name: str | None = form_field(
        None,
        PROMOTION,
        "Registered model name",
        "MLflow registry name (letters, digits, '.', '_', '-'). Empty: rlops-sac-<env name>, "
        "e.g. rlops-sac-pendulum for Pendulum-v1. A registered model holds one env (id and "
        "env_kwargs): a run on another env under the same name fails before training.",
        pattern=MODEL_NAME,
    )
    tuned_by: str = form_field(  # in the conf only (rlops_airflow.params.LINEAGE_FIELDS)
        "",
        ADVANCED,
        "Tuned by",
        "Set by the rlops_sac_tune DAG: '<study>#<trial number>', the Optuna trial whose "
        "config this run trains; recorded on the candidate's run and model version.",
        max_length=300,
        pattern=r"^$|^[A-Za-z0-9_.:+/\-]+#[0-9]+$",
    )
    drift_retrain_of: str = form_field(  # in the conf only (rlops_airflow.params.LINEAGE_FIELDS)
        "",
        ADVANCED,
        "Retrain after drift of",
        "Set by a run the champion monitor's rollback started: '<model>@v<version>', the "
        "rolled-back version whose recipe this run trains again; recorded on the candidate's "
        "run and model version.",
        max_length=300,
        pattern=r"^$|^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}@v[0-9]+$",
    )
    drift_retrain_cooldown_hours: int = form_field(
        6,
        ADVANCED,
        "Drift retrain cooldown (hours)",
        "A run started by the monitor's rollback (asset rlops://champion-degraded) retrains "
        "the model only if no other such run did in the last this many hours; else it skips "
        "at once. Such a run takes this value from the DAG's default (it has no conf).",
        ge=1,
        le=168,
    )
    sac_overrides: SACOverrides = Field(  # type: ignore[valid-type]
        default_factory=SACOverrides,
        title="SAC overrides",
        description='Any other SACConfig field, e.g. {"hidden_sizes": [64, 64]}.',
        json_schema_extra={"section": ADVANCED},
    )

    @model_validator(mode="after")
    def _seeds_stay_in_range(self) -> PipelineSettings:
        if self.seed + self.n_seeds - 1 > MAX_SEED:
            raise ValueError(f"seed + n_seeds - 1 must be at most {MAX_SEED}")
        return self

    @property
    def eval_seeds(self) -> tuple[int, ...]:
        return tuple(range(self.eval_seed_start, self.eval_seed_start + self.eval_episodes))

    @property
    def model_name(self) -> str:
        """The registered model this run's candidate goes to."""
        return self.registered_model_name or default_model_name(self.env_id)

    @property
    def thresholds(self) -> Thresholds:
        """The promotion gate these settings ask for."""
        return Thresholds(
            self.min_reward,
            self.min_speedup,
            self.compare_with_champion,
            self.confidence,
            self.noninferiority_margin,
        )

    @property
    def sweep_seeds(self) -> list[int]:
        """Training seeds of the sweep: seed, seed+1, ..., one candidate each."""
        return list(range(self.seed, self.seed + self.n_seeds))

    def check_recipe(self) -> None:
        """Raise what training would: the recipe's own rules, as `train` will apply them."""
        self.sac_config()

    def sac_config(self, seed: int | None = None) -> SACConfig:
        """The training recipe: the form's fields plus any advanced `sac_overrides`, over
        the env's preset as it is *now* (a run's tasks use `ResolvedSettings` instead)."""
        return build_config(
            {
                **self.sac_overrides.model_dump(exclude_unset=True),
                "env_id": self.env_id,
                "env_packages": self.env_packages,
                "env_kwargs": self.env_kwargs,
                "total_timesteps": self.total_timesteps,
                "seed": self.seed if seed is None else seed,
                "eval_seeds": self.eval_seeds,
                "checkpoint_every": self.checkpoint_every,
            }
        )

    def resolve(self) -> ResolvedSettings:
        """These settings with their recipe resolved now, for the run's later tasks."""
        return ResolvedSettings(
            **self.model_dump(exclude_unset=True), recipe=self.sac_config().resolved()
        )


class ResolvedSettings(PipelineSettings):
    """What `validate_conf` hands every later task of a run: the settings, and the SAC
    recipe resolved once, against the presets of that moment. A preset changed while the run
    goes on (a deploy, a retry a day later) changes nothing of what it trains or records."""

    recipe: dict[str, JsonValue]
    """`SACConfig.resolved()` with the run's first seed."""

    def sac_config(self, seed: int | None = None) -> SACConfig:
        """The recipe as `validate_conf` resolved it, for candidate `seed` (default: the
        run's first): never re-resolved against today's presets."""
        return stored_config(self.recipe if seed is None else {**self.recipe, "seed": seed})


SettingsT = TypeVar("SettingsT", bound=BaseModel)


def parse_conf(params: Mapping[str, Any], model: type[SettingsT]) -> SettingsT:
    """`model` of a run's `params`, or a `ConfError` naming every bad field at once (an unknown
    name with the closest known one): the one wording of every DAG's conf check, since Airflow
    accepts an unknown key at trigger time and a typo would silently run with the default."""
    try:
        return model(**params)
    except ValidationError as exc:
        raise ConfError(f"invalid conf: {'; '.join(describe_errors(exc, model))}") from None


def validate_conf(
    params: dict[str, Any], model: type[PipelineSettings] = PipelineSettings
) -> PipelineSettings:
    """The settings of a run whose params are `params`, or a `ConfError` naming every problem.

    Field errors (unknown names with the closest known one, bad values, bad `sac_overrides`)
    come all at once; the rules across fields (e.g. `checkpoint_every` <= `total_timesteps`)
    follow once every field is valid, because they need valid values to compare.
    """
    settings = parse_conf(params, model)
    try:
        settings.check_recipe()
    except ValueError as exc:  # rl_core's ConfigError: the combined recipe is refused
        raise ConfError(f"invalid conf: {str(exc).removeprefix('invalid SAC config: ')}") from None
    return settings


def experiment_name() -> str:
    return os.environ.get(EXPERIMENT_ENV, DEFAULT_EXPERIMENT)


def artifact_location() -> str | None:
    """Where a newly created experiment stores artifacts (None: the server's default)."""
    return os.environ.get(ARTIFACT_LOCATION_ENV) or None
