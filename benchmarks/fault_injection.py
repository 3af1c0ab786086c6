"""Faults while a run trains: the quickstart with N kills of random processes at random times, against the same
run undisturbed.

    python benchmarks/fault_injection.py [--kills 20] [--gap 5 20] [--quick] [--merge] [key=value ...] [--seeds 0 1]

Per seed (the run's `run.seed` and the kill schedule's), two runs of configs/quickstart.yaml through the real CLI,
each in a fresh run directory with its own embedded Ray cluster, with the same overrides:
- **undisturbed**: the command once, to the end;
- **disturbed**: the same command; after a random gap (uniform in --gap seconds) one process is SIGKILLed, chosen
  uniformly among the kinds alive at that moment (none while the driver is still starting, before its actors exist): a generator actor, a scorer actor, a Ray Train learner worker
  (found among the driver's session's processes by Ray's process titles), or the driver itself with its whole
  session (the embedded cluster dies with it), which is then started again with the same command: the automatic
  rerun a job supervisor gives. Until N kills are spent or the run ends.

What survives what (docs/recovery.md): Ray restarts a generator or scorer and retries its chunk; the driver
restarts the learner from the last committed round (`learner.max_restarts` is raised to the number of kills here,
so the budget is not what is measured); a killed driver's rerun resumes after the last committed round.

Printed per seed and over seeds (mean, 95% t-interval): kills by kind, kills survived (the run finished), rounds
redone (round starts beyond the run's rounds, read from the drivers' logs), learner restarts (metrics.json), the
wall time of each arm and the overhead, the final held-out reward of each, and whether every round's files equal
the undisturbed run's (metrics.json and its marker aside: they hold timings). Target (issue 29): 20 kills, all
survived, final metrics identical. Writes benchmarks/results/fault_injection.json (each run with the machine it
ran on) and a PNG beside it; `--merge` keeps the seeds already there that this command does not run (refused when
they were run with other settings), so seeds can be added one session at a time; --quick (2 rounds, 3 kills) checks the script and stays in the work directory.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
from cli_runs import REPO, machine
from harness.results import merge_runs, previous_report
from harness.stats import fmt, mean_interval

from actors.contracts import COMPLETE_MARKER, METRICS_FILE, SUMMARY_FILE, Metric

CONFIG = REPO / "configs" / "quickstart.yaml"
# The actor classes of the killable processes, read from Ray's process titles: ray::<class>[.<method>], or
# ray::<actor name>:<class>[.<method>] for a named actor (activedpo names its generators and scorers).
TARGETS = {"generator": ("Generator", "VLLMGenerator"), "scorer": ("Scorer",), "learner_worker": ("RayTrainWorker",)}


def actor_class(title: str) -> str | None:
    """'Generator' for 'ray::quickstart/generator-0:Generator.generate'; None for a process that is no actor."""
    if not title.startswith("ray::"):
        return None
    return title[len("ray::"):].split(" ")[0].rsplit(":", 1)[-1].split(".")[0]
QUICK = ["run.rounds=2", "data.prompts_per_round=16", "selection.pair_budget=8", "eval.num_prompts=16"]
ROUND_START = "] generate ..."  # a driver's log line when a round (or a refill batch) starts generating


def session_processes(sid: int) -> dict[str, list[int]]:
    """The pids of each target kind in the driver's process session."""
    found: dict[str, list[int]] = {kind: [] for kind in TARGETS}
    for process in psutil.process_iter(["pid", "cmdline"]):
        try:
            if os.getsid(process.info["pid"]) != sid:
                continue
        except (ProcessLookupError, PermissionError):
            continue
        name = actor_class((process.info["cmdline"] or [""])[0])
        for kind, classes in TARGETS.items():
            if name in classes:
                found[kind].append(process.info["pid"])
    return found


def start(run_dir: Path, overrides: list[str], log) -> subprocess.Popen:
    command = [sys.executable, "-m", "cluster.cli", "run", str(CONFIG), "--run-dir", str(run_dir), *overrides]
    return subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def kill_session(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def round_digests(run_dir: Path) -> dict[str, dict[str, str]]:
    """Per round folder, the sha256 of every file but metrics.json and its marker (they hold timings)."""
    digests = {}
    for folder in sorted(run_dir.glob("round_*")):
        digests[folder.name] = {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
                                for p in sorted(folder.rglob("*"))
                                if p.is_file() and p.name not in (METRICS_FILE, COMPLETE_MARKER)}
    return digests


def finished(run_dir: Path) -> dict:
    rows = json.loads((run_dir / SUMMARY_FILE).read_text())["rounds"]
    restarts = [json.loads((run_dir / f"round_{r[Metric.ROUND]:04d}" / METRICS_FILE).read_text())
                [Metric.LEARNER].get("restarts", 0) for r in rows]
    return {"final_heldout_reward": rows[-1][Metric.HELDOUT_REWARD_MEAN], "rounds": len(rows),
            "learner_restarts": int(sum(restarts))}


def undisturbed(run_dir: Path, overrides: list[str]) -> dict:
    started = time.perf_counter()
    with open(run_dir.parent / "undisturbed.log", "w") as log:
        code = start(run_dir, overrides, log).wait()
    if code != 0:
        raise SystemExit(f"the undisturbed run failed (exit {code}): {run_dir.parent / 'undisturbed.log'}")
    return {"wall_seconds": time.perf_counter() - started, **finished(run_dir)}


def disturbed(run_dir: Path, overrides: list[str], kills: int, gap: tuple[float, float], rng: random.Random) -> dict:
    """The run with `kills` kills (module docstring); the driver restarted after each kill of it."""
    log_path = run_dir.parent / "disturbed.log"
    done: list[dict] = []
    drivers, started = 1, time.perf_counter()
    with open(log_path, "w") as log:
        proc = start(run_dir, overrides, log)
        while True:
            deadline = time.monotonic() + rng.uniform(*gap)
            while time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.05)
            if proc.poll() is not None:
                if proc.returncode == 0:
                    break
                raise SystemExit(f"the disturbed run ended with exit {proc.returncode} after {len(done)} kills: "
                                 f"{log_path}")
            if len(done) == kills:
                continue  # kills spent: let it finish
            alive = {kind: pids for kind, pids in session_processes(proc.pid).items() if pids}
            if not alive:
                continue  # still starting (no actor yet): a kill now would only ever hit the driver's start-up
            kind = rng.choice(sorted([*alive, "driver"]))
            at = time.perf_counter() - started
            if kind == "driver":
                kill_session(proc)
                proc, drivers = start(run_dir, overrides, log), drivers + 1
            else:
                pid = rng.choice(sorted(alive[kind]))
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue  # it ended on its own in the meantime: not a kill
            done.append({"kind": kind, "at_seconds": round(at, 2), "alive": sorted(alive)})
            print(f"  kill {len(done)}/{kills}: {kind} at {at:.0f}s (alive: {', '.join(sorted(alive))})", flush=True)
    starts = log_path.read_text().count(ROUND_START)
    return {"wall_seconds": time.perf_counter() - started, "kills": done, "drivers": drivers,
            "round_starts": starts, **finished(run_dir)}


def one_seed(seed: int, work_dir: Path, overrides: list[str], kills: int, gap: tuple[float, float]) -> dict:
    base = [f"run.seed={seed}", "ray.include_dashboard=false", "reporting.report=false", *overrides]
    folder = work_dir / f"seed{seed}"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "undisturbed").mkdir(parents=True)
    (folder / "disturbed").mkdir(parents=True)
    calm = undisturbed(folder / "undisturbed" / "run", base)
    rounds = calm["rounds"]
    hit = disturbed(folder / "disturbed" / "run", [*base, f"learner.max_restarts={kills}"], kills, gap,
                    random.Random(seed))
    same = round_digests(folder / "undisturbed" / "run") == round_digests(folder / "disturbed" / "run")
    by_kind = {kind: sum(k["kind"] == kind for k in hit["kills"]) for kind in [*TARGETS, "driver"]}
    return {"seed": seed, "undisturbed": calm, "disturbed": hit, "kills_by_kind": by_kind,
            "kills_survived": len(hit["kills"]), "rounds_redone": hit["round_starts"] - rounds,
            "overhead": hit["wall_seconds"] / calm["wall_seconds"] - 1.0, "rounds_identical": same,
            "final_identical": hit["final_heldout_reward"] == calm["final_heldout_reward"], "machine": machine()}


def report(runs: list[dict], kills: int) -> dict:
    over = lambda key: mean_interval([float(r[key]) for r in runs])  # noqa: E731
    summary = {"kills_survived": over("kills_survived"), "rounds_redone": over("rounds_redone"),
               "overhead": over("overhead"),
               "learner_restarts": mean_interval([float(r["disturbed"]["learner_restarts"]) for r in runs]),
               "all_rounds_identical": all(r["rounds_identical"] for r in runs),
               "all_final_identical": all(r["final_identical"] for r in runs)}
    summary["target_met"] = bool(all(r["kills_survived"] == kills for r in runs) and summary["all_rounds_identical"])
    # A kill is counted once the run it hit finished, so a run that ended before the last kill was spent survived
    # every kill it took: the target then fails on the kills' number, not on a lost run.
    summary["ended_before_every_kill"] = {r["seed"]: r["kills_survived"] for r in runs if r["kills_survived"] < kills}
    print(f"\n{'seed':>4} {'kills (gen/score/learner/driver)':>34} {'redone':>7} {'restarts':>8} "
          f"{'wall calm':>9} {'wall hit':>9} {'final calm':>10} {'final hit':>10} {'identical':>9}")
    for r in runs:
        k = r["kills_by_kind"]
        print(f"{r['seed']:>4} {r['kills_survived']:>14} ({k['generator']}/{k['scorer']}/{k['learner_worker']}/"
              f"{k['driver']}){'':>8} {r['rounds_redone']:>7} {r['disturbed']['learner_restarts']:>8} "
              f"{r['undisturbed']['wall_seconds']:>8.0f}s {r['disturbed']['wall_seconds']:>8.0f}s "
              f"{r['undisturbed']['final_heldout_reward']:>10.4f} {r['disturbed']['final_heldout_reward']:>10.4f} "
              f"{str(r['rounds_identical']):>9}")
    print(f"\nover {len(runs)} seeds: kills survived {fmt(summary['kills_survived'], 1)} of {kills}, rounds redone "
          f"{fmt(summary['rounds_redone'], 1)}, wall-time overhead {fmt(summary['overhead'])}%, every round's files "
          f"identical: {summary['all_rounds_identical']} -> target (all {kills} survived, identical) "
          f"{'met' if summary['target_met'] else 'not met'}, as measured")
    for seed, spent in summary["ended_before_every_kill"].items():
        print(f"seed {seed}: the run finished after {spent} of the {kills} kills (each survived); a longer run "
              "(more rounds) or a shorter --gap spends them all")
    return summary


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    seeds = [str(r["seed"]) for r in runs]
    width = 0.38
    xs = range(len(runs))
    left.bar([x - width / 2 for x in xs], [r["undisturbed"]["wall_seconds"] for r in runs], width, label="undisturbed")
    left.bar([x + width / 2 for x in xs], [r["disturbed"]["wall_seconds"] for r in runs], width, label="disturbed")
    left.set_xticks(list(xs), seeds)
    left.set_xlabel("seed")
    left.set_ylabel("wall seconds")
    left.set_title("wall time with and without kills")
    left.legend()
    bottom = [0] * len(runs)
    for kind in [*TARGETS, "driver"]:
        counts = [r["kills_by_kind"][kind] for r in runs]
        right.bar(seeds, counts, bottom=bottom, label=kind)
        bottom = [b + c for b, c in zip(bottom, counts)]
    right.set_xlabel("seed")
    right.set_ylabel("kills survived")
    right.set_title("kills by process kind (all survived when the run finished)")
    right.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--gap", type=float, nargs=2, default=(5.0, 20.0), metavar=("MIN", "MAX"),
                        help="seconds between kills, drawn uniformly")
    parser.add_argument("--quick", action="store_true", help="2 small rounds, 3 kills: checks the script")
    parser.add_argument("--work-dir", default=str(REPO / "runs" / "benchmarks" / "fault_injection"))
    parser.add_argument("--out", help="JSON (default benchmarks/results/fault_injection.json; --quick: work dir)")
    parser.add_argument("--merge", action="store_true", help="keep the seeds already in --out that this command "
                        "does not run")
    parser.add_argument("overrides", nargs="*", help="key=value overrides for both arms")
    args = parser.parse_args()
    kills = 3 if args.quick else args.kills
    overrides = [*(QUICK if args.quick else []), *args.overrides]
    work_dir = Path(args.work_dir)
    out = Path(args.out or (work_dir if args.quick else REPO / "benchmarks" / "results") / "fault_injection.json")
    settings = {"config": str(CONFIG.relative_to(REPO)), "overrides": overrides, "kills": kills,
                "gap_seconds": list(args.gap), "quick": args.quick}
    previous = previous_report(out, settings, ()) if args.merge else None
    runs = []
    for seed in args.seeds:
        print(f"seed {seed}: undisturbed, then {kills} kills", flush=True)
        runs.append(one_seed(seed, work_dir, overrides, kills, tuple(args.gap)))
    commands = [machine()["command"]]
    if previous is not None:
        runs = merge_runs(previous["runs"], runs, key=("seed",))
        commands = [*previous.get("commands", [previous["command"]]), *commands]
    summary = report(runs, kills)
    record = {"command": commands[-1], "commands": commands, "settings": settings, "summary": summary, "runs": runs}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    plot(runs, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
