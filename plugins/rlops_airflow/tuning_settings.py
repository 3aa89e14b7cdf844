"""The tuning DAG's settings: the pipeline's, which the best trial's run inherits, plus the
study's own (trials, search space, pruning, the seeds trials are scored on).

Like `PipelineSettings`, the one definition of the trigger form (`rlops_airflow.params`) and
of what the first task validates (`validate_conf(params, TuneSettings)`).
"""

from __future__ import annotations

from typing import Annotated, Any, Self

from pydantic import Field, StrictBool, WithJsonSchema, model_validator

from rl_core.common.config import MAX_SEED
from rl_core.common.search_space import SearchSpace, narrowing_model, search_space
from rlops_airflow.settings import PipelineSettings, form_field

TUNING = "Tuning"
STUDY_NAME = r"^[A-Za-z0-9_.\-]{1,100}$"
SearchSpaceNarrowing = narrowing_model()


class TuneSettings(PipelineSettings):
    """One tuning run: every pipeline field (for the trials and for the best config's run),
    and the study's."""

    n_trials: int = form_field(
        16,
        TUNING,
        "Trials",
        "Configs to try, one mapped task each; they run in parallel on free workers.",
        ge=1,
        le=64,
    )
    study_name: Annotated[  # the form sends an empty text field as null
        Annotated[str, Field(pattern=STUDY_NAME)] | None,
        WithJsonSchema({"type": ["string", "null"], "pattern": STUDY_NAME}),
    ] = form_field(
        None,
        TUNING,
        "Study name",
        "Empty: a new Optuna study for this run. A name continues that study across runs, "
        "so its earlier trials inform the sampler (keep the search space the same).",
    )
    search_space: SearchSpaceNarrowing = Field(  # type: ignore[valid-type]
        default_factory=SearchSpaceNarrowing,
        title="Search space",
        description='Dimensions to narrow or fix, e.g. {"learning_rate": {"low": 3e-4, '
        '"high": 3e-3}, "batch_size": {"choices": [128, 256]}}. The others keep the env\'s '
        "default range, which holds its preset.",
        json_schema_extra={"section": TUNING},
    )
    preset_trial: StrictBool = form_field(
        True,
        TUNING,
        "Try the preset first",
        "The first trial runs the env's preset, the baseline the others must beat (when the "
        "search space holds it).",
    )
    trial_episodes: int = form_field(
        10,
        TUNING,
        "Episodes per trial score",
        "A trial's score: mean deterministic return of its final policy on this many env "
        "seeds from the first trial seed; the evaluations during the trial, which pruning "
        "reads, use the same seeds.",
        ge=1,
        le=100,
    )
    trial_seed_start: int = form_field(
        2000,
        TUNING,
        "First trial seed",
        "Env seeds of the trials' scores, apart from the gate's evaluation seeds, so picking "
        "the best trial does not flatter the gate's figure.",
        ge=0,
        le=MAX_SEED - 99,
    )
    evaluations_per_trial: int = form_field(
        5,
        TUNING,
        "Evaluations per trial",
        "Evaluations during each trial, spread over its steps: the curve pruning reads.",
        ge=1,
        le=50,
    )
    pruning: StrictBool = form_field(
        True,
        TUNING,
        "Prune",
        "Median pruner: stop a trial whose evaluation is below the median of earlier trials "
        "at the same step, once a third of its steps are done and enough trials finished.",
    )
    pruning_startup_trials: int = form_field(
        4,
        TUNING,
        "Trials before pruning",
        "Finished trials the pruner waits for before it stops any.",
        ge=0,
        le=64,
    )

    @model_validator(mode="after")
    def _a_searchable_study(self) -> Self:
        if self.tuned_by:
            raise ValueError("tuned_by is set by the tuning DAG itself, for the run it triggers")
        overlap = set(self.trial_seeds) & set(self.eval_seeds)
        if overlap:
            raise ValueError(
                f"trial_seed_start: the trial seeds {self.trial_seeds[0]}.."
                f"{self.trial_seeds[-1]} overlap the evaluation seeds (eval_seed_start, "
                f"eval_episodes) at {min(overlap)}; move one of them"
            )
        overridden = sorted(self.sac_overrides.model_dump(exclude_unset=True))
        searched = set(SearchSpace.model_fields) | {"gradient_steps", "target_entropy"}
        clash = [name for name in overridden if name in searched]
        if clash:
            raise ValueError(
                f"sac_overrides.{clash[0]}: the search decides it; fix it in search_space "
                "with one choice (or low == high) instead"
            )
        return self

    @property
    def trial_seeds(self) -> tuple[int, ...]:
        return tuple(range(self.trial_seed_start, self.trial_seed_start + self.trial_episodes))

    def check_recipe(self) -> None:
        """Also the search space: unknown dimensions, empty ranges, values SAC would refuse."""
        super().check_recipe()
        self.space()

    def space(self) -> SearchSpace:
        """The search space of this env, narrowed as asked."""
        return search_space(self.env_id, self.search_space.model_dump(exclude_none=True))

    def pipeline_conf(self, sac_values: dict[str, Any], tuned_by: str) -> dict[str, Any]:
        """The conf of the pipeline run that trains `sac_values` (the best trial's config):
        this run's pipeline fields as set, the trial's values over `sac_overrides`."""
        own = set(TuneSettings.model_fields) - set(PipelineSettings.model_fields)
        conf = self.model_dump(mode="json", exclude_unset=True, exclude=own)
        overrides = self.sac_overrides.model_dump(mode="json", exclude_unset=True)
        return conf | {"sac_overrides": overrides | sac_values, "tuned_by": tuned_by}
