"""The run loop: every (seed, arm) run in process or through the CLI, read back as one record per run.

- `make_runner("local" | "cli", config, base_overrides)`: in process (benchmarks/local_arms.py: the driver's
  real round, the model loaded once, so a run of the built-in task costs seconds) or through the real CLI
  (`cli_runs.run_summary`: Ray, actors, DDP learner; about 75 s of start-up a run). Both read a finished run
  with the same overrides back from its folder instead of running it again (an interrupted benchmark continues).
- `run_arms(arms, seeds, root, runner)`: seeds outermost (an interrupted benchmark still covers every arm of its
  first seeds), one folder `root/<arm>-<seed>` per run, one record per run (`read_run`) with the `machine` it
  was read on (cli_runs.machine(): commit, command, CPU model and count, library versions), kept per run so a
  merged JSON keeps each run's provenance. A run read back from `--runs-dir` ("reused": true) gets the machine
  that read it; its `wall_seconds` are those of the run that wrote it.
- `read_run(run_dir, summary, heldout, columns)`: per point (the start, then after each round) the cumulative
  counters (labels, proxy_scores, generated_tokens, learner_tokens, total_cost, prompts_rolled_out), the round
  index, the held-out curve the arm names, other held-out columns (exact match); per round the pairs trained,
  tied share, labelled PVar, the selector's summary, the signal's agreement with the labels (`proxy_quality`)
  and the share of the round spent choosing what to label; the prices the run was charged at.
- `SEED_BLOCKS` and `add_arguments`/`seed_block_of`: the command-line options every benchmark shares.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from harness.arms import HELDOUT_REWARD, Arm
from harness.curves import PRICED

# Named blocks of seeds. The headline numbers come from a block no arm was developed or tuned on.
SEED_BLOCKS = {
    "fresh": {"seeds": list(range(1000, 1020)),
              "note": "never used while the arms were developed or tuned (development used seeds 0-4 and the "
                      "earlier 20-seed block 0-19)"},
    "development": {"seeds": list(range(20)), "note": "the seeds the arms were developed on (0-4) and the earlier "
                                                      "20-seed block (0-19): not for headline numbers"},
}
COUNTERS = ("labels", "proxy_scores", "generated_tokens", "learner_tokens", "total_cost", "prompts_rolled_out")
CLI_RECORD = "harness_run.json"  # in each run folder the CLI runner starts: its overrides and wall seconds
# In each run folder local_arms.LocalArms.finished_or_new writes (the name predates the harness).
LOCAL_RECORD = "label_efficiency_run.json"


# --- runners -------------------------------------------------------------------------------------


class LocalRunner:
    """Runs in this process (benchmarks/local_arms.LocalArms, built at the first run or by `start`). Its
    generator is built from `config` with `base_overrides`: every run must share those generation settings."""

    mode = "local"

    def __init__(self, config: str | Path, base_overrides: Iterable[str] = ()):
        self.config, self.base_overrides = Path(config), list(base_overrides)
        self.harness, self.startup_seconds = None, None

    def start(self) -> float:
        """Imports, the task, the model, the generator: paid once. Returns the seconds it took."""
        if self.harness is None:
            started = time.perf_counter()
            from local_arms import LocalArms  # torch, transformers and the project's modules

            self.harness = LocalArms(self.config, self.base_overrides)
            self.startup_seconds = time.perf_counter() - started
        return self.startup_seconds

    def __call__(self, arm: Arm, seed: int, run_dir: Path, overrides: list[str]) -> tuple[dict, float, bool]:
        self.start()
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        _, summary, wall, reused = self.harness.finished_or_new(run_dir, overrides, arm.config_path)
        return summary, wall, reused


class CliRunner:
    """Runs through the real CLI (`python -m cluster.cli run`), one fresh run folder and Ray cluster a run."""

    mode = "cli"
    startup_seconds = 0.0

    def start(self) -> float:
        return 0.0

    def __call__(self, arm: Arm, seed: int, run_dir: Path, overrides: list[str]) -> tuple[dict, float, bool]:
        from actors.contracts import SUMMARY_FILE
        from cli_runs import run_summary

        record = run_dir / CLI_RECORD
        if record.exists() and json.loads(record.read_text())["overrides"] == overrides:
            return json.loads((run_dir / SUMMARY_FILE).read_text()), json.loads(record.read_text())["wall_seconds"], True
        if run_dir.exists():
            shutil.rmtree(run_dir)  # unfinished, or other settings: run afresh, as the in-process runner does
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        _, wall = run_summary(arm.config_path, seed, run_dir, overrides)
        record.write_text(json.dumps({"overrides": overrides, "wall_seconds": wall}) + "\n")
        return json.loads((run_dir / SUMMARY_FILE).read_text()), wall, False


def make_runner(mode: str, config: str | Path, base_overrides: Iterable[str] = ()):
    """"local" (in process) or "cli"."""
    if mode == "local":
        return LocalRunner(config, base_overrides)
    if mode == "cli":
        return CliRunner()
    raise ValueError(f"runner mode {mode!r}: 'local' or 'cli'")


# --- the loop ------------------------------------------------------------------------------------


def run_arms(arms: list[Arm], seeds: list[int], root: Path, runner, shared: Iterable[str] = (),
             after: Iterable[str] = (), columns: dict[str, str] | None = None,
             extra: Callable[[Path, dict], dict] | None = None, log=print) -> list[dict]:
    """Every (seed, arm), seeds outermost, in `root/<arm>-<seed>`; one record each (module docstring):
    {"arm", "seed", "mode", "overrides", "wall_seconds", "reused", **read_run(...), **extra(run_dir, summary),
     "machine"}. `shared` go before each arm's overrides, `after` (the user's) after them."""
    from cli_runs import machine

    records = []
    for seed in seeds:
        for arm in arms:
            overrides = arm.overrides_for(seed, shared, after)
            run_dir = Path(root) / f"{arm.name}-{seed}"
            summary, wall, reused = runner(arm, seed, run_dir, overrides)
            record = {"arm": arm.name, "seed": seed, "mode": runner.mode, "overrides": overrides,
                      "wall_seconds": wall, "reused": reused,
                      **read_run(run_dir, summary, arm.heldout, columns),
                      **(extra(run_dir, summary) if extra else {}), "machine": machine()}
            records.append(record)
            log(f"{arm.name:>24} seed {seed}: {wall:6.1f}s{' (reused)' if reused else ''}, labels "
                f"{record['labels'][-1]:>5.0f}, proxy calls {record['proxy_scores'][-1]:>5.0f}, total cost "
                f"{record['total_cost'][-1]:>8.2f}, held-out {record['heldout'][0]:.4f} -> {record['heldout'][-1]:.4f}")
            sys.stdout.flush()
    return records


# --- one run's curves ----------------------------------------------------------------------------


def read_run(run_dir: Path, summary: dict, heldout: str = HELDOUT_REWARD, columns: dict[str, str] | None = None) -> dict:
    """One run's curves (module docstring). `heldout`: metrics.json's held-out reward (HELDOUT_REWARD) or a
    reward's name or column in `heldout_columns` (round 0's `heldout_before_columns` for the start); `columns`:
    {record key: reward name or column} of more held-out curves, None where the run did not measure them."""
    from actors.contracts import CUMULATIVE_PREFIX, METRICS_FILE, Metric

    rows = summary["rounds"]
    metrics = [json.loads((Path(run_dir) / f"round_{row[Metric.ROUND]:04d}" / METRICS_FILE).read_text()) for row in rows]
    prices = run_prices(Path(run_dir))
    record: dict = {"run_dir": str(run_dir), "prices": prices, "round": list(range(len(rows) + 1))}
    for key in COUNTERS:
        record[key] = [0, *(row.get(f"{CUMULATIVE_PREFIX}{key}") for row in rows)]
    if any(value is None for value in record["total_cost"]):  # a run from before total_cost: priced here
        record["total_cost"] = [0, *(priced_total(row, prices) for row in rows)]
    reward = [rows[0].get(Metric.HELDOUT_BEFORE_MEAN), *(row[Metric.HELDOUT_REWARD_MEAN] for row in rows)]
    record["heldout_reward"] = reward
    record["heldout"] = reward if heldout == HELDOUT_REWARD else column_curve(metrics, heldout)
    if any(value is None for value in record["heldout"]):
        raise SystemExit(f"{run_dir}: no held-out {heldout} at every point ({record['heldout']}): is "
                         f"eval.before_training off, or the reward not scored with role eval?")
    for key, name in (columns or {}).items():
        curve = column_curve(metrics, name)
        record[key] = curve if any(value is not None for value in curve) else None
    record.update(
        pairs_trained=[row[Metric.PAIRS_TRAINED] for row in rows],
        tied_share=[row.get(Metric.ZERO_VARIANCE_SHARE) for row in rows],
        # The labelled prompts' PVar under their labels: how informative the groups the selector chose were.
        labelled_pvar=[(m.get(Metric.SELECTION) or {}).get("pvar_mean_all") for m in metrics],
        selector=[(m.get(Metric.LABELLING) or {}).get("selector") for m in metrics],
        proxy_quality=[m.get("proxy_quality") or (m.get(Metric.LABELLING) or {}).get("proxy_quality") for m in metrics],
        # Choosing what to label (the selector, a learned proxy's refit) as a share of the round's seconds.
        selection_share=[selection_seconds(m) / m[Metric.COSTS]["seconds"] if (m.get(Metric.COSTS) or {}).get("seconds")
                         else None for m in metrics],
    )
    return record


def column_curve(metrics: list[dict], name: str) -> list[float | None]:
    """A held-out column per point: round 0's `heldout_before_columns`, then each round's `heldout_columns`."""
    from actors.contracts import REWARD_PREFIX, Metric, reward_column_name

    column = name if name.startswith(REWARD_PREFIX) else reward_column_name(name)
    before = (metrics[0].get(Metric.HELDOUT_BEFORE_COLUMNS) or {}).get(column)
    return [before, *((m.get(Metric.HELDOUT_COLUMNS) or {}).get(column) for m in metrics)]


def run_prices(run_dir: Path) -> dict:
    """The `reporting.prices` the run was charged at (its config.yaml, every field written), else the defaults."""
    import yaml

    from cluster.config.evaluation import Prices

    path = run_dir / "config.yaml"
    written = (yaml.safe_load(path.read_text()) or {}).get("reporting", {}).get("prices") if path.exists() else None
    return Prices(**(written or {})).model_dump()


def priced_total(row: dict, prices: dict) -> float:
    from actors.contracts import CUMULATIVE_PREFIX
    from cluster.config.evaluation import Prices
    from cluster.costs import total_cost

    return total_cost({key: row.get(f"{CUMULATIVE_PREFIX}{key}") or 0 for key in PRICED}, Prices(**prices))


def selection_seconds(metrics: dict) -> float:
    seconds = (metrics.get("labelling") or {}).get("seconds") or {}
    return float(seconds.get("query", 0.0) + seconds.get("observe", 0.0))


# --- command line --------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser, arms: Iterable[str], default_arms: Iterable[str], out: Path,
                  combine: bool = False) -> None:
    """The options every harness benchmark takes: --seeds / --seed-block, --arms, --cli, --out, --runs-dir,
    --merge, and key=value overrides for every arm; `combine`: also --combine (a script that implements it)."""
    seeds = parser.add_mutually_exclusive_group(required=True)
    seeds.add_argument("--seeds", type=int, nargs="+", help="seeds to run (recorded as the block 'explicit')")
    seeds.add_argument("--seed-block", choices=list(SEED_BLOCKS),
                       help="a named block: " + "; ".join(f"{name} = {b['seeds'][0]}..{b['seeds'][-1]}, {b['note']}"
                                                          for name, b in SEED_BLOCKS.items()))
    parser.add_argument("--arms", nargs="+", default=list(default_arms), choices=list(arms))
    parser.add_argument("--cli", action="store_true", help="run through the real CLI (Ray, actors) instead of in "
                        "this process")
    parser.add_argument("--out", default=str(out), help="JSON path; the PNG goes beside it")
    parser.add_argument("--runs-dir", help="keep the run folders here (default: a temporary folder); a finished run "
                        "found there with the same overrides is read back, not run again")
    parser.add_argument("--merge", action="store_true", help="keep the runs of other (arm, seed)s already in --out "
                        "(same settings, or refused)")
    if combine:
        parser.add_argument("--combine", nargs="+", metavar="JSON", help="run nothing: summarise the runs of these "
                            "reports, written by this script with the same settings over parts of the seeds (e.g. two "
                            "processes on halves of --seed-block); each run keeps its machine record")
    parser.add_argument("overrides", nargs="*", help="key=value overrides for every arm")


def seed_block_of(args: argparse.Namespace) -> dict:
    """{"name", "seeds", "note"} of --seed-block, or the block 'explicit' of --seeds."""
    if getattr(args, "seed_block", None):
        return {"name": args.seed_block, **SEED_BLOCKS[args.seed_block]}
    return {"name": "explicit", "seeds": list(args.seeds), "note": "chosen on the command line"}
