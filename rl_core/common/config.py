"""One typed config for a SAC run: every hyperparameter, validated, loadable from YAML/JSON.

Defaults follow RL-Zoo's tuned SAC hyperparameters for Pendulum-v1, so the default run is the
one the quality target is measured on. A bad value fails with a message that names the field,
the value given and what is allowed.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    WrapValidator,
    create_model,
    model_validator,
)
from pydantic_core import PydanticCustomError

from rl_core.common import cpu
from rl_core.common.presets import PRESETS, preset_for
from rl_core.envs.env_guard import MODULE_NAME, env_refusals
from rl_core.sac.step_compiler import StepCompiler, resolve_step_compiler

if TYPE_CHECKING:
    from rl_core.envs.spec import EnvSpec


class ConfigError(ValueError):
    """A config value or override that cannot be used; the message names the field."""


MAX_SEED = 2**31 - 1
"""Largest seed accepted anywhere (torch, numpy and gymnasium all take it)."""
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
PositiveFloat = Annotated[float, Field(gt=0.0, le=1e6, allow_inf_nan=False)]


def _auto_or(number: str, **bounds: float) -> tuple[WrapValidator, WithJsonSchema]:
    """An `"auto" | number` field: one clear error, and a JSON schema without `anyOf`.

    Validators report a union's failure once per branch, and JSON-schema validators report an
    `anyOf` failure without the field's name; one schema of two types says it plainly.
    """

    def validate(value: object, handler: ValidatorFunctionWrapHandler) -> object:
        try:
            return handler(value)
        except ValidationError:
            raise PydanticCustomError("auto_or_number", f'must be "auto" or {number}') from None

    schema = {"type": ["string", "number"], "pattern": "^auto$", **bounds}
    return WrapValidator(validate), WithJsonSchema(schema)


class SACConfig(BaseModel):
    """Hyperparameters of one SAC training run (RL-Zoo defaults for Pendulum-v1)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_default=True, use_attribute_docstrings=True
    )

    env_id: str = Field("Pendulum-v1", min_length=1, max_length=200)
    """Gymnasium env id with a continuous (Box) action space: a registered id, one offered
    through the `rlops.envs` entry points, or gymnasium's "module:EnvId-v0" form."""
    env_packages: tuple[Annotated[str, Field(pattern=MODULE_NAME)], ...] = ()
    """Modules imported before the env is made, e.g. one that registers it (RL-Zoo's
    --gym-packages): only packages offering envs through `rlops.envs` entry points and those
    in $RLOPS_ALLOWED_ENV_MODULES, with their sub-modules (rl_core/envs/env_guard.py)."""
    env_kwargs: dict[str, JsonValue] = Field(default_factory=dict)
    """Keyword arguments for gymnasium.make (the env's constructor), as JSON values, passed
    unchanged; names of files (xml_file, *_file, *_path, *_dir, *_filename) only with
    RLOPS_ALLOW_ENV_FILE_KWARGS=1."""
    total_timesteps: int = Field(20_000, ge=1, le=100_000_000)
    """Environment steps to collect (one update per step after `learning_starts`)."""
    seed: Seed = 0
    """Drives torch, numpy, env resets, warm-up actions, replay sampling and action noise."""
    hidden_sizes: tuple[Annotated[int, Field(ge=1, le=65_536)], ...] = Field(
        (256, 256), min_length=1, max_length=8
    )
    """Width of each hidden layer, shared by actor and critics."""
    learning_rate: float = Field(1e-3, gt=0.0, le=1.0)
    """Adam learning rate of actor, critics and entropy coefficient."""
    normalize_obs: bool = False
    """Normalize observations with running mean and variance (updated during training,
    stored in checkpoints, baked into the exported actor, which then takes raw observations)."""
    obs_clip: float = Field(10.0, gt=0.0, le=1e6)
    """Normalized observations are clipped to +-obs_clip (with `normalize_obs`)."""
    learning_rate_schedule: Literal["constant", "linear"] = "constant"
    """"linear": `learning_rate` times the fraction of the run still to go, set before each
    update phase (SB3's and RL-Zoo's `lin_<lr>`)."""
    use_preset: bool = True
    """Start from RL-Zoo's tuned values for `env_id` (rl_core/common/presets.py) when it has them;
    anything set explicitly still wins. Applied by `build_config` (CLI, config file, DAG)."""
    buffer_size: int = Field(1_000_000, ge=1, le=10_000_000)
    """Replay buffer capacity in transitions (memory is only touched as it fills)."""
    learning_starts: int = Field(100, ge=0, le=10_000_000)
    """Uniform-random steps before the first update."""
    batch_size: int = Field(256, ge=1, le=65_536)
    """Transitions per gradient step."""
    gamma: float = Field(0.99, ge=0.0, le=1.0)
    """Discount factor."""
    tau: float = Field(0.005, gt=0.0, le=1.0)
    """Polyak coefficient of the target critics."""
    train_freq: int = Field(1, ge=1, le=1_000_000)
    """Env steps between update phases."""
    gradient_steps: int = Field(1, ge=1, le=1_000)
    """Gradient steps per update phase."""
    use_sde: bool = False
    """Explore with gSDE (generalized state-dependent exploration, as SB3's `use_sde`): the
    noise is the policy's features times a random matrix, redrawn at the start of every
    `train_freq` chunk of env steps (and every `sde_sample_freq` steps within it), so it is
    smooth in time and state. What RL-Zoo's MountainCarContinuous and BipedalWalker recipes
    explore with."""
    sde_sample_freq: int = Field(-1, ge=-1, le=1_000_000)
    """With `use_sde`: env steps between two noise matrices within a chunk; -1 or 0: one
    matrix per chunk."""
    log_std_init: float = Field(-3.0, ge=-20.0, le=2.0)
    """With `use_sde`: the initial log-std of every entry of the noise matrix (SB3's default)."""
    ent_coef: Annotated[
        Literal["auto"] | PositiveFloat,
        *_auto_or("a positive number up to 1e6", exclusiveMinimum=0.0, maximum=1e6),
    ] = "auto"
    """Entropy coefficient alpha: "auto" tunes it towards `target_entropy`, a float fixes it."""
    ent_coef_init: PositiveFloat = 1.0
    """Initial alpha when `ent_coef` is "auto" (SB3's default)."""
    target_entropy: Annotated[Literal["auto"] | FiniteFloat, *_auto_or("a finite number")] = "auto"
    """Entropy target; "auto" means -dim(action space)."""
    eval_seeds: tuple[Seed, ...] = Field(tuple(range(1000, 1010)), min_length=1, max_length=1000)
    """Env seeds of the deterministic evaluation episodes, one episode per seed."""
    eval_every: int = Field(0, ge=0, le=100_000_000)
    """Evaluate the deterministic policy at the first episode end after every N env steps,
    on `progress_eval_seeds`; the best one is kept beside the last (0: never)."""
    progress_eval_seeds: tuple[Seed, ...] = Field(
        tuple(range(2000, 2005)), min_length=1, max_length=1000
    )
    """Env seeds of the evaluations during training: apart from `eval_seeds`, so choosing
    the best policy on them does not flatter the gate's figure."""
    torch_threads: int = Field(2, ge=1, le=256)
    """Intra-op threads for the update (2 is the sweet spot on a 2-core CPU)."""
    matmul_precision: Literal["auto", "bf16", "ieee"] = "auto"
    """GEMM precision in the update. "bf16": oneDNN rounds matmul inputs to bfloat16 and
    accumulates in fp32 (the CPU analogue of TF32, ~2x faster GEMMs). "ieee": full fp32.
    "auto": bf16 where the CPU has bfloat16 instructions (avx512_bf16 or amx_bf16) and the
    widest hidden layer has at least 256 units, ieee elsewhere (rl_core/common/cpu.py says why); the
    choice is logged as the lineage tag `matmul_precision`."""
    step_compiler: Literal["auto", "torchscript", "inductor", "reference"] = "auto"
    """What compiles the gradient step. "torchscript": nothing beyond torch. "inductor":
    AOTInductor's C++ library of the whole step, faster per update; it needs a C++ compiler
    and Python's headers, and a machine compiles each step shape once (10-30 s, then cached
    in $RLOPS_CACHE_DIR/aot-steps, by default ~/.cache/rlops/aot-steps, a folder only the user
    may write: rl_core/sac/aot_step.py). "reference": no compiler, the algorithm's readable
    definition with autograd (rl_core/sac/sac_reference.py), in fp32, at about half the
    updates/s (benchmarks/reference_vs_fast.py).
    "auto": inductor where it can build and the run plans at least 15,000 updates, TorchScript
    elsewhere (rl_core/sac/step_compiler.py); the choice is logged as the lineage tag
    `step_compiler`."""
    checkpoint_every: int = Field(0, ge=0, le=100_000_000)
    """Write a checkpoint at the first episode end after every N steps (0: only at the end)."""
    log_every: int = Field(1_000, ge=1, le=100_000_000)
    """Steps between loss/alpha/throughput metric points."""

    @model_validator(mode="after")
    def _steps_fit_the_run(self) -> SACConfig:
        if self.checkpoint_every > self.total_timesteps:
            raise ValueError(
                f"checkpoint_every ({self.checkpoint_every}) is more than total_timesteps "
                f"({self.total_timesteps}): set it to at most that, or 0 to checkpoint at the end"
            )
        if self.eval_every > self.total_timesteps:
            raise ValueError(
                f"eval_every ({self.eval_every}) is more than total_timesteps "
                f"({self.total_timesteps}): set it to at most that, or 0 for no evaluation"
            )
        if self.learning_starts >= self.total_timesteps:
            raise ValueError(
                f"learning_starts ({self.learning_starts}) is not below total_timesteps "
                f"({self.total_timesteps}): the run would never update the networks"
            )
        return self

    @model_validator(mode="after")
    def _reference_is_fp32(self) -> SACConfig:
        if self.step_compiler == "reference" and self.matmul_precision == "bf16":
            raise ValueError(
                'step_compiler "reference" computes in fp32: set matmul_precision to "ieee" '
                'or "auto", or choose another step_compiler (auto, torchscript, inductor)'
            )
        return self

    @property
    def applied_preset(self) -> str | None:
        """The env id whose preset `build_config` applies to this config, if any."""
        return self.env_id if self.use_preset and self.env_id in PRESETS else None

    def learning_rate_at(self, step: int) -> float:
        """The learning rate of the update phase that follows env step `step`."""
        if self.learning_rate_schedule == "constant":
            return self.learning_rate
        return self.learning_rate * max(0.0, 1.0 - step / self.total_timesteps)

    @property
    def env(self) -> EnvSpec:
        """How to build this run's env (id, packages, kwargs), as everything downstream
        receives it."""
        from rl_core.envs.spec import EnvSpec

        return EnvSpec(self.env_id, self.env_packages, dict(self.env_kwargs))

    @property
    def effective_matmul_precision(self) -> cpu.MatmulPrecision:
        """The precision this config trains with on this CPU ("auto" resolved)."""
        if self.step_compiler == "reference":
            return "ieee"
        return cpu.resolve_matmul_precision(self.matmul_precision, max(self.hidden_sizes))

    @property
    def planned_updates(self) -> int:
        """Gradient steps the whole run takes: one phase per `train_freq` steps after
        `learning_starts`."""
        phases = self.total_timesteps // self.train_freq - self.learning_starts // self.train_freq
        return phases * self.gradient_steps

    @property
    def effective_step_compiler(self) -> StepCompiler:
        """The compiler this config's gradient step runs under here ("auto" resolved)."""
        return resolve_step_compiler(self.step_compiler, self.planned_updates)

    def resolved(self) -> dict[str, Any]:
        """The config as plain JSON-able values (what is logged and hashed)."""
        return self.model_dump(mode="json")

    def config_hash(self) -> str:
        """Short, stable hash of the resolved config: the identity of a training recipe."""
        canonical = json.dumps(self.resolved(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _known_names(model: type[BaseModel], parent: tuple[str | int, ...]) -> list[str]:
    """Field names of the (possibly nested) model that `parent` locates inside `model`."""
    for part in parent:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def describe_errors(exc: ValidationError, model: type[BaseModel]) -> list[str]:
    """One line per problem, naming the field: `field: what is wrong (given value)`.

    An unknown name gets the closest known one ("did you mean ...?"), else the known list.
    """
    lines = []
    for error in exc.errors(include_url=False):
        loc = error["loc"]
        field = ".".join(str(part) for part in loc)
        if error["type"] == "extra_forbidden":
            known = _known_names(model, loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]}?" if close else f"known: {', '.join(known)}"
            lines.append(f"{field}: unknown parameter; {hint}")
        elif not loc:  # a rule across fields: its message names them
            lines.append(error["msg"].removeprefix("Value error, "))
        else:
            message = error["msg"].removeprefix("Value error, ")
            lines.append(f"{field}: {message} (given {error.get('input')!r})")
    return lines


def build_config(values: dict[str, Any]) -> SACConfig:
    """Validate raw values into a `SACConfig`, turning pydantic's errors into a `ConfigError`.

    The preset of the env (rl_core/common/presets.py) fills what `values` leaves unset, unless
    `use_preset` is false. Modules and env kwargs a run's conf may not ask of a worker
    (rl_core/envs/env_guard.py) are refused here, at the door. A config read back from a
    checkpoint or a logged run goes through `stored_config` instead.
    """
    env_id = values.get("env_id", SACConfig.model_fields["env_id"].default)
    preset: dict[str, Any] = {}
    if values.get("use_preset", True) is not False and isinstance(env_id, str):
        preset = preset_for(env_id)
    config = _validated({**preset, **values})
    _refuse_gsde_fields_without_gsde(config, set(values), preset)
    refused = env_refusals(config.env_id, config.env_packages, config.env_kwargs)
    if refused:  # make_env refuses them too; here a run stops before anything else
        raise ConfigError(f"invalid SAC config: {'; '.join(refused)}")
    return config


def stored_config(resolved: dict[str, Any]) -> SACConfig:
    """The config a checkpoint or a logged run stored (`SACConfig.resolved()`), as it was made.

    No preset is applied: a field the checkpoint predates takes SACConfig's default, which is
    what the run did before the field existed (a preset's newer choice, say MountainCar's
    gSDE, would build another actor). Nor does it refuse what `build_config` refuses at the
    door, so a checkpoint made before a refusal was added still loads.
    """
    return _validated(resolved)


def _validated(values: dict[str, Any]) -> SACConfig:
    """SACConfig of `values`, or a ConfigError naming every bad field."""
    try:
        return SACConfig(**values)
    except ValidationError as exc:
        details = "; ".join(describe_errors(exc, SACConfig))
        raise ConfigError(f"invalid SAC config: {details}") from None


GSDE_ONLY_FIELDS = ("sde_sample_freq", "log_std_init")
"""Fields that act only with `use_sde`."""


def _refuse_gsde_fields_without_gsde(
    config: SACConfig, given: set[str], preset: dict[str, Any]
) -> None:
    """A gSDE field the caller set to a value of its own while gSDE is off would silently do
    nothing. A default or the preset's value is fine: a resolved config carries them all, and
    a preset's gSDE may be switched off."""
    if config.use_sde:
        return
    stray = [
        f"{name} ({getattr(config, name)})"
        for name in GSDE_ONLY_FIELDS
        if name in given
        and getattr(config, name) not in (SACConfig.model_fields[name].default, preset.get(name))
    ]
    if stray:
        raise ConfigError(
            f"invalid SAC config: {', '.join(stray)} only acts with use_sde: set use_sde=true, "
            "or leave it unset"
        )


def overrides_model(name: str, exclude: frozenset[str]) -> type[BaseModel]:
    """A model of SACConfig's fields but `exclude`, each optional: what a caller may override.

    Every field keeps its type, bounds and docstring, so a bad override is refused with the
    same message as in a full config, and the model's JSON schema can validate a form.
    `model_dump(exclude_unset=True)` gives only what was set.
    """
    fields: dict[str, Any] = {
        field_name: (field.annotation, copy.copy(field))
        for field_name, field in SACConfig.model_fields.items()
        if field_name not in exclude
    }
    return create_model(name, __config__=ConfigDict(extra="forbid", frozen=True), **fields)


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
        try:
            loaded = yaml.safe_load(Path(path).read_text())  # YAML is a superset of JSON
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise ConfigError(f"config file {path}: {reason}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of field: value")
        values.update(loaded or {})
    values.update(parse_overrides(overrides or []))
    return build_config(values)
