"""rlops vs Stable-Baselines3 SAC, side by side on one machine: speed, return, memory.

    .venv/bin/python benchmarks/vs_sb3.py --env HalfCheetah-v5 --steps 30000 --seeds 0 1
    .venv/bin/python benchmarks/vs_sb3.py --env Pendulum-v1 --steps 20000 --seeds 0 1 2
    .venv/bin/python benchmarks/vs_sb3.py --env Pendulum-v1 --set step_compiler=inductor

Both systems get the same hyperparameters (rlops' config for the env: its RL-Zoo preset, then
any `--set` fields), the same step budget, seeds and torch threads, and are evaluated the
same way: one deterministic episode per eval seed (1000..1009). Runs alternate, rlops then
SB3 for each seed, each in its own process (peak RSS is that run's alone, and a noisy
neighbour hits both alike). SB3 2.9.2 lives in its own venv (benchmarks/.venvs/sb3, created
on first use from the package index; never in requirements.txt).

Prints one row per run and a summary: median (and mean) env-steps/s of each and their ratios,
mean return ± standard error across seeds and whether rlops' is at least SB3's minus one
standard error, how sure a difference of returns is (Welch's interval of rlops - SB3, the
Mann-Whitney U test, the seeds on which rlops is lower: a few seeds decide the check above
by which seeds are drawn), peak RSS, the mean training-episode return in each quarter of the
run (where two learning curves part, if they do), and the CPU the figures were measured on.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rl_core.common.config import SACConfig

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SB3_VENV = HERE / ".venvs" / "sb3"
SB3_PINS = (
    "stable-baselines3==2.9.2",
    "torch==2.13.0",  # the local CPU wheel; anything else pulls CUDA
    "gymnasium==1.4.0",
    "numpy==2.4.6",
    "box2d==2.3.10",
    "pygame-ce==2.5.8",
    "mujoco==3.3.7",
    "imageio==2.38.2",
    "packaging==26.4",  # gymnasium's MuJoCo envs import it
)


def sb3_python() -> Path:
    """The peer venv's interpreter; the venv is created, or its pins installed again, when
    `SB3_PINS` changed since it was last set up."""
    python, stamp = SB3_VENV / "bin" / "python", SB3_VENV / "rlops-pins.txt"
    wanted = "\n".join(SB3_PINS)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(SB3_VENV)], check=True)
    if not stamp.exists() or stamp.read_text() != wanted:
        print(f"installing {', '.join(SB3_PINS)} into {SB3_VENV}", flush=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *SB3_PINS], check=True)
        stamp.write_text(wanted)
    return python


def rlops_job(args: argparse.Namespace, seed: int) -> dict[str, object]:
    """The run's job: env, budget, seed and rlops' resolved hyperparameters for the env."""
    from rl_core.common.config import build_config, parse_overrides

    overrides = parse_overrides(args.set)
    config = build_config(
        {
            "env_id": args.env,
            "total_timesteps": args.steps,
            "seed": seed,
            "torch_threads": args.threads,
            "eval_seeds": list(range(1000, 1000 + args.eval_episodes)),
            **overrides,
        }
    )
    ent_coef = config.ent_coef
    if ent_coef == "auto":
        ent_coef = f"auto_{config.ent_coef_init}"  # SB3 spells the initial value this way
    return {
        "env_id": config.env_id,
        "env_kwargs": dict(config.env_kwargs),
        "steps": config.total_timesteps,
        "seed": seed,
        "torch_threads": config.torch_threads,
        "eval_seeds": list(config.eval_seeds),
        "preset": config.applied_preset,
        "overrides": overrides,
        "rlops_only": {
            "step_compiler": config.effective_step_compiler,
            "matmul_precision": config.effective_matmul_precision,
        },
        "hyperparameters": {
            "learning_rate": config.learning_rate,
            "learning_rate_schedule": config.learning_rate_schedule,
            "buffer_size": config.buffer_size,
            "learning_starts": config.learning_starts,
            "batch_size": config.batch_size,
            "tau": config.tau,
            "gamma": config.gamma,
            "train_freq": config.train_freq,
            "gradient_steps": config.gradient_steps,
            "ent_coef": ent_coef,
            "target_entropy": config.target_entropy,
            "hidden_sizes": list(config.hidden_sizes),
            "use_sde": config.use_sde,
            "sde_sample_freq": config.sde_sample_freq,
            "log_std_init": config.log_std_init,
        },
    }


def job_config(job: dict[str, object]) -> SACConfig:
    """rlops' config for a job, as `rlops_job` resolved it."""
    from rl_core.common.config import build_config

    return build_config(
        {
            "env_id": job["env_id"],
            "env_kwargs": job["env_kwargs"],
            "total_timesteps": job["steps"],
            "seed": job["seed"],
            "torch_threads": job["torch_threads"],
            "eval_seeds": job["eval_seeds"],
            **job["overrides"],
        }
    )


def run_rlops(job: dict[str, object]) -> dict[str, float]:
    """Train and evaluate with rlops in this process (called in a fresh subprocess)."""
    from rl_core.evaluation.episodes import evaluate
    from rl_core.run.training import train

    os.environ.pop("MLFLOW_TRACKING_URI", None)  # measure training, not logging
    config = job_config(job)
    result = train(config, show_progress=False)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    evaluation = evaluate(result.agent.act, config.env, config.eval_seeds)
    return {
        "steps_per_second": result.steps_per_second,
        "mean_return": evaluation.mean,
        "peak_rss_mib": rss,
        "training_episodes": [
            [end, episode_return]
            for end, episode_return in zip(
                result.episode_end_steps, result.episode_returns, strict=True
            )
        ],
    }


def measure(system: str, job: dict[str, object]) -> dict[str, float]:
    """One run of `system` in its own process; its JSON figures."""
    if system == "rlops":
        argv = [sys.executable, str(Path(__file__)), "--worker", json.dumps(job)]
    else:
        argv = [str(sb3_python()), str(HERE / "sb3_worker.py"), json.dumps(job)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{system} run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def quarter_means(runs: list[dict], steps: int) -> list[float]:
    """Mean training-episode return in each quarter of the run (by the step an episode ended
    in), over all seeds' episodes: where in training two systems part, if they do."""
    quarters: list[list[float]] = [[], [], [], []]
    for run in runs:
        for end, episode_return in run["training_episodes"]:
            quarters[min(3, (end - 1) * 4 // steps)].append(episode_return)
    return [statistics.mean(q) if q else float("nan") for q in quarters]


def standard_error(values: list[float]) -> float:
    return statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="Pendulum-v1")
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--threads", type=int, default=2, help="torch threads, both systems")
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="rlops config fields over the preset; hyperparameters reach SB3 too",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_rlops(json.loads(args.worker))))
        return

    from rl_core.common import cpu

    sb3_python()  # create the peer venv before timing anything
    rows: dict[str, list[dict[str, float]]] = {"rlops": [], "sb3": []}
    print(f"{args.env}, {args.steps} steps, seeds {args.seeds}, {args.threads} torch threads")
    print(f"CPU: {cpu.model()} ({', '.join(cpu.kernel_flags())})")
    print(f"{'system':<8}{'seed':>6}{'steps/s':>10}{'return':>10}{'peak RSS MiB':>14}")
    for seed in args.seeds:
        job = rlops_job(args, seed)
        for system in ("rlops", "sb3"):
            figures = measure(system, job)
            rows[system].append(figures)
            print(
                f"{system:<8}{seed:>6}{figures['steps_per_second']:>10.1f}"
                f"{figures['mean_return']:>10.1f}{figures['peak_rss_mib']:>14.0f}",
                flush=True,
            )
    print(f"hyperparameters (preset {job['preset'] or 'none'}): {job['hyperparameters']}")
    print(f"rlops alone: {job['rlops_only']}")
    speeds = {s: [r["steps_per_second"] for r in runs] for s, runs in rows.items()}
    returns = {s: [r["mean_return"] for r in runs] for s, runs in rows.items()}
    for system in rows:
        print(
            f"{system:<6} {statistics.median(speeds[system]):7.1f} steps/s median"
            f" ({statistics.mean(speeds[system]):.1f} mean)   return"
            f" {statistics.mean(returns[system]):8.1f} ± {standard_error(returns[system]):.1f}"
            f" (s.e.)   peak RSS {max(r['peak_rss_mib'] for r in rows[system]):.0f} MiB"
        )
    median_ratio = statistics.median(speeds["rlops"]) / statistics.median(speeds["sb3"])
    mean_ratio = statistics.mean(speeds["rlops"]) / statistics.mean(speeds["sb3"])
    print(f"rlops / SB3 env-steps/s: x{median_ratio:.2f} of medians (x{mean_ratio:.2f} of means)")
    bounds = " / ".join(f"{args.steps * q // 4}-{args.steps * (q + 1) // 4}" for q in range(4))
    print(f"training-episode return by quarter of the run, steps {bounds}, mean over seeds:")
    for system, runs in rows.items():
        print(f"{system:<6} " + "".join(f"{m:>10.1f}" for m in quarter_means(runs, args.steps)))
    if len(args.seeds) < 2:
        print("quality condition (rlops' return >= SB3's minus one s.e.): needs two seeds or more")
        return
    floor = statistics.mean(returns["sb3"]) - standard_error(returns["sb3"])
    verdict = "yes" if statistics.mean(returns["rlops"]) >= floor else "NO"
    print(f"rlops mean return >= SB3's minus one s.e. ({floor:.1f}): {verdict}")
    print_difference(returns["rlops"], returns["sb3"])


def print_difference(rlops: list[float], sb3: list[float]) -> None:
    """How sure the difference of the seeds' returns is: Welch's interval of rlops - SB3 and
    the Mann-Whitney U test (no normality assumed). With a few seeds the check above is decided
    by which seeds are drawn; these say whether many seeds establish a difference."""
    from scipy.stats import mannwhitneyu

    from rl_core.evaluation.confidence import unpaired_difference

    p_value = mannwhitneyu(rlops, sb3, alternative="two-sided").pvalue
    lower = sum(mine < theirs for mine, theirs in zip(rlops, sb3, strict=True))
    print(
        f"rlops - SB3 mean return: {unpaired_difference(rlops, sb3)} (Welch); Mann-Whitney U "
        f"p = {p_value:.2f}; rlops lower on {lower} of {len(rlops)} seeds"
    )


if __name__ == "__main__":
    main()
