"""`python -m rl_core` / `rlops`: train, evaluate, export, benchmark and reproduce."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich_argparse import RichHelpFormatter

from rl_core.common.cli_errors import user_error
from rl_core.common.config import ConfigError, SACConfig, load_config
from rl_core.evaluation.video import DEFAULT_MAX_FRAMES, DEFAULT_MAX_SIDE
from rl_core.policy.policy_source import ACCEPTED

console = Console(soft_wrap=True)  # never break paths and numbers across lines
errors = Console(stderr=True, soft_wrap=True)
DEFAULT_EVAL_SEEDS = tuple(range(1000, 1010))
POLICY_HELP = f"the policy: {ACCEPTED}"
TRAINED_HELP = (
    "the trained actor: a checkpoint.pt, an actor.pt, runs:/<run id>/actor or "
    "runs:/<run id>/checkpoint"
)


def _parse_seeds(text: str) -> tuple[int, ...]:
    """`1000-1009` or `1,2,3` -> seeds."""
    try:
        if "-" in text:
            first, last = (int(part) for part in text.split("-", 1))
            return tuple(range(first, last + 1))
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--seeds {text!r}: expected a range like 1000-1009 or a list like 1,2,3"
        ) from None


def _positive(kind: type[int] | type[float]) -> Callable[[str], float]:
    """An argparse type: a number of `kind` above 0 (frames, pixels, frames per second)."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if not value > 0:
            wanted = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r}: expected {wanted} above 0")
        return value

    return parse


def _new_folder(path: str, option: str) -> Path:
    """The folder `option` names, made now: a path that cannot be one fails before training."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{option} {path}: cannot make this folder ({exc.strerror})") from None
    return Path(path)


def _print_eval(result: object) -> None:
    console.print(
        f"mean return [bold]{result.mean:.1f}[/] ± {result.std:.1f} "
        f"over seeds {result.seeds[0]}..{result.seeds[-1]}"
    )


def cmd_train(args: argparse.Namespace) -> int:
    from rl_core.common.artifact_names import BEST_ACTOR_FILE, CHECKPOINT_FILE
    from rl_core.common.tracking import make_tracker
    from rl_core.evaluation.episodes import evaluate, log_evaluation
    from rl_core.run.training import train

    config = load_config(args.config, args.set)
    checkpoint = _new_folder(args.out, "--out") / CHECKPOINT_FILE
    console.print(
        f"training SAC on [bold]{config.env_id}[/] for {config.total_timesteps} steps "
        f"(seed {config.seed}, config {config.config_hash()})"
    )
    with make_tracker(args.experiment, run_name=args.run_name) as tracker:
        result = train(
            config,
            tracker=tracker,
            checkpoint_path=checkpoint,
            resume_from=args.resume,
            show_progress=not args.no_progress,
        )
        evaluation = evaluate(result.agent.act, config.env, config.eval_seeds)
        log_evaluation(tracker, evaluation, result.steps)
    console.print(
        f"{result.steps} steps at {result.steps_per_second:.0f} steps/s; checkpoint {checkpoint}"
    )
    if result.best is not None:
        console.print(
            f"best evaluation during training: {result.best.mean_return:.1f} at step "
            f"{result.best.step} ({checkpoint.with_name(BEST_ACTOR_FILE)})"
        )
    _print_eval(evaluation)
    if tracker.run_id:
        console.print(f"MLflow run {tracker.run_id}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from rl_core.evaluation.episodes import evaluate
    from rl_core.policy.policy_source import open_policy

    with tempfile.TemporaryDirectory() as scratch:
        source = open_policy(args.policy, Path(scratch))
        result = evaluate(source.policy(), source.env, args.seeds or DEFAULT_EVAL_SEEDS)
    if args.json:
        print(json.dumps(result.as_dict()))
    else:
        _print_eval(result)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from rl_core.policy.policy_model import save_policy_model
    from rl_core.policy.policy_source import open_policy

    out = Path(args.out)
    if out.exists():
        raise ConfigError(f"--out {out} exists already; give a new folder for the policy model")
    with tempfile.TemporaryDirectory() as scratch:
        source = open_policy(args.policy, Path(scratch))
        actor = source.trained_actor(args.policy, "export")
        meta = save_policy_model(actor, source.env, out)
    console.print(
        f"MLflow policy model -> {out}/ (TorchScript actor, max |Δaction| "
        f"{meta.max_abs_diff_vs_eager:.2e} on {meta.observations_checked} observations); "
        f"serve it with: mlflow models serve -m {out} --env-manager local"
    )
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from rl_core.policy.export import export_actor, load_exported
    from rl_core.policy.latency import benchmark_latency, latency_table
    from rl_core.policy.onnx_export import export_onnx, load_onnx
    from rl_core.policy.policy_source import open_policy

    with tempfile.TemporaryDirectory() as scratch:
        source = open_policy(args.policy, Path(scratch))
        actor = source.trained_actor(args.policy, "bench (eager vs exported)")
        exported = export_actor(actor, Path(scratch) / "bench-actor.pt", source.env)
        scripted = load_exported(exported.path)
        onnx = load_onnx(export_onnx(actor, Path(scratch) / "bench-actor.onnx", source.env).path)
    rows = benchmark_latency(
        actor, scripted, actor.obs_dim, args.batch_sizes, args.calls, onnx=onnx
    )
    console.print(latency_table(rows))
    if args.json:
        print(json.dumps([row.as_dict() for row in rows]))
    return 0


def cmd_video(args: argparse.Namespace) -> int:
    from rl_core.evaluation.video import record_episode
    from rl_core.policy.policy_source import open_policy

    with tempfile.TemporaryDirectory() as scratch:
        source = open_policy(args.policy, Path(scratch))
        path = record_episode(
            source.policy(),
            source.env,
            args.seed,
            Path(args.out),
            max_frames=args.max_frames,
            max_side=args.max_side,
            fps=args.fps,
        )
    console.print(
        f"episode on env seed {args.seed} of {source.env} -> {path} "
        f"({path.stat().st_size / 1024:.0f} KiB)"
    )
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from rich.table import Table

    from rl_core.run.reproduce import reproduce

    result = reproduce(args.reference, args.tolerance, show_progress=not args.no_progress)
    if result.differences:
        changes = Table(title="What differs from the original run")
        for column in ("lineage", "original", "now"):
            changes.add_column(column)
        for name, (then, now) in result.differences.items():
            changes.add_row(name, str(then), str(now))
        console.print(changes)
    else:
        console.print("same code, packages and machine as the original run")
    table = Table(
        title=f"Original {result.original_run_id} vs reproduction "
        f"{result.reproduced_run_id} (tolerance {args.tolerance:g})"
    )
    for column in ("metric", "original", "reproduced", "|Δ|", "ok"):
        table.add_column(column, justify="right")
    for row in result.rows:
        table.add_row(
            row.name,
            f"{row.original:.4f}",
            f"{row.reproduced:.4f}",
            f"{abs(row.reproduced - row.original):.2e}",
            "[green]pass[/]" if row.passed else "[red]FAIL[/]",
        )
    console.print(table)
    console.print("[bold green]reproduced[/]" if result.passed else "[bold red]NOT reproduced[/]")
    return 0 if result.passed else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlops",
        description="Soft Actor-Critic: train, evaluate, export, benchmark.",
        formatter_class=RichHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser(
        "train",
        help="train SAC and save a checkpoint",
        formatter_class=RichHelpFormatter,
        description="Train SAC. Logs to MLflow when "
        "MLFLOW_TRACKING_URI is set. Fields: " + ", ".join(SACConfig.model_fields),
    )
    train.add_argument("--config", help="YAML or JSON file of config fields")
    train.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="override config fields, e.g. --set total_timesteps=5000 seed=3",
    )
    train.add_argument("--out", default="runs/latest", help="folder for checkpoint.pt")
    train.add_argument("--resume", help="checkpoint to resume from")
    train.add_argument("--experiment", default="rlops", help="MLflow experiment name")
    train.add_argument("--run-name", help="MLflow run name")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(func=cmd_train)

    evaluate = commands.add_parser(
        "evaluate",
        help="evaluate a checkpoint deterministically",
        formatter_class=RichHelpFormatter,
    )
    evaluate.add_argument("policy", help=POLICY_HELP)
    evaluate.add_argument("--seeds", type=_parse_seeds, help="env seeds, e.g. 1000-1009")
    evaluate.add_argument("--json", action="store_true", help="print the result as JSON")
    evaluate.set_defaults(func=cmd_evaluate)

    export = commands.add_parser(
        "export",
        help="export the policy as an MLflow model around a checked TorchScript actor",
        formatter_class=RichHelpFormatter,
    )
    export.add_argument("policy", help=TRAINED_HELP)
    export.add_argument(
        "--out", default="policy", help="new folder: an MLflow pyfunc model (MLmodel + actor)"
    )
    export.set_defaults(func=cmd_export)

    bench = commands.add_parser(
        "bench", help="latency of eager vs TorchScript actor", formatter_class=RichHelpFormatter
    )
    bench.add_argument("policy", help=TRAINED_HELP)
    bench.add_argument("--calls", type=int, default=2_000, help="timed calls per batch size")
    bench.add_argument(
        "--batch-sizes",
        type=lambda s: tuple(int(x) for x in s.split(",")),
        default=(1, 8, 32, 128),
        help="comma-separated, e.g. 1,8,32,128",
    )
    bench.add_argument("--json", action="store_true", help="also print the rows as JSON")
    bench.set_defaults(func=cmd_bench)

    video = commands.add_parser(
        "video",
        help="record one episode of the policy as an animated GIF",
        formatter_class=RichHelpFormatter,
        description="Play one deterministic episode and draw it off screen (no display "
        "needed; MuJoCo envs: MUJOCO_GL=osmesa or egl, chosen for you when unset).",
    )
    video.add_argument("policy", help=POLICY_HELP)
    video.add_argument("--seed", type=int, default=DEFAULT_EVAL_SEEDS[0], help="env seed")
    video.add_argument("--out", default="episode.gif", help="the GIF to write")
    video.add_argument(
        "--max-frames",
        type=_positive(int),
        default=DEFAULT_MAX_FRAMES,
        help="frames spread evenly over the episode",
    )
    video.add_argument(
        "--max-side",
        type=_positive(int),
        default=DEFAULT_MAX_SIDE,
        help="largest frame side in pixels",
    )
    video.add_argument(
        "--fps", type=_positive(float), help="frames per second (default: real time, at least 10)"
    )
    video.set_defaults(func=cmd_video)

    again = commands.add_parser(
        "reproduce",
        help="re-train a logged run and compare its evaluation",
        formatter_class=RichHelpFormatter,
        description="Fetch a run's config and lineage from MLflow, show what differs from "
        "now, re-train with the same config and seeds, and compare the evaluation returns.",
    )
    again.add_argument(
        "reference", help="MLflow run id, models:/<name>@<alias> or models:/<name>/<version>"
    )
    again.add_argument(
        "--tolerance",
        type=float,
        default=0.0,
        help="largest allowed |difference| per compared return (default 0: exact)",
    )
    again.add_argument("--no-progress", action="store_true", help="no progress bar")
    again.set_defaults(func=cmd_reproduce)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except Exception as exc:
        message = user_error(exc)
        if message is None:
            raise  # a bug in rlops: its traceback must stay visible
        errors.print(f"[red]error:[/] {escape(message)}", highlight=False)
        return 2


if __name__ == "__main__":
    sys.exit(main())
