"""Label arms on the real task: SmolLM2-135M-Instruct on builtin-ifeval, held-out instruction-level loose accuracy
against labels, total cost and rollouts, seeds paired (benchmarks/harness/).

    python benchmarks/ifeval_arms.py --seeds 1000 1001 1002 --runs-dir runs/benchmarks/ifeval_arms-local
    python benchmarks/ifeval_arms.py --seed-block fresh [--arms ...] [--rounds N] [--cli] [--out PATH] [--merge]
        [key=value ...]
    python benchmarks/ifeval_arms.py --quick --seeds 0 --arms random pvar_implicit_pairs --out /tmp/ifeval_quick.json

The question (the one-hour scale): does choosing which responses to label, with no proxy (the policy's implicit
reward) or a proxy learned from the labels bought so far (ridge on MiniLM features), beat labelling at random at
equal labels, and passive labelling sized to the pairs it can train at equal total cost? Every arm is
configs/smollm2-ifeval.yaml (labeller: the `ifeval` reward) with the shared sizes, `run.rounds`, its own overrides
(ARMS, printed by --help) and the user's key=value overrides.

Scale. By default every run is in this process (benchmarks/local_arms.py: the driver's real round, the HF
generator, the model and frozen reference loaded once) at LOCAL's sizes: 16 prompts a round x 4 samples, 48
held-out prompts (one sample each, about 92 instructions: a standard error near 5 points a run), 3 rounds. `--cli`
runs the real CLI (Ray, vLLM) at the config's sizes (32 prompts, all 120 held-out prompts), 6 rounds by default;
`--quick` runs LOCAL with real_model.py's tiny sizes (4 prompts x 2 samples x 16 tokens, 4 held-out prompts), 1
round: it checks the script end to end, its numbers mean nothing.

Budgets (derived from the config and the sizes, `sizes`; LOCAL's numbers in brackets). `passive` (the config as it
is) labels every response of its prompts (16 x 4 = 64 labels a round) and trains only the top half by PVar (8
prompts, one max-min pair each: at most 8 pairs), so half its labels buy groups it never trains on.
`passive_sized` labels only as many groups as that: `data.prompts_per_round` = passive's kept prompts (8) and
`selection.policy.top_fraction=1.0`, so it trains every group it labels: 32 labels, at most 8 pairs a round, on
half passive's rollouts. Sizing it to the config's `selection.pair_budget` (16) instead would have kept passive's
64 labels and rollouts, the same cost as passive. The label arms label what passive_sized labels, 32 responses a
round (`labelling.labels_per_round` = kept x samples), from passive's 16 rolled-out prompts, and keep every labelled
group (`top_fraction=1.0`): `random` takes 8 whole groups (at most 8 pairs); the `_pairs` arms label 2 responses
of each of 16 groups (`responses_per_group=2`: at most 16 pairs, the pair budget). So at equal labels every arm
but passive spends the same labels a round; total cost differs by the rollouts (passive_sized rolls out 8 prompts,
the label arms 16) and the proxy calls (docs/costs.md: 0.05 a call, a label 1, 0.2 per 1,000 tokens).

The proxy. Only the arms that choose by `ifeval_proxy` (a one-instruction check, role proxy) score it. A proxy
changes no sample, label or pair (it is scored after generation and enters neither the reward nor PVar), so the
others run without it and are charged no proxy call; `pvar_implicit_pairs` and `pvar_learned_pairs` are charged
one proxy call a response for their own model (the policy and reference's log-probabilities; the ridge's
prediction). `passive_proxy` checks the claim (its minus-passive row should be zero up to generation noise).

Reported per arm (mean, Student-t 95% interval over seeds): labels, proxy calls, generated and learner tokens,
rollouts, total cost; the final instruction-level loose (the held-out `heldout_ifeval` of summary.json, read by
`ifeval_curves`) and prompt-level strict accuracy and their change over the start; pairs a round, tied share, the
signal's agreement with the labels; each arm minus random at equal labels, minus passive_sized at equal total cost
and at equal rounds, minus passive at equal rounds (per-seed differences, the MDE at 80% power beside every one
whose interval spans 0), for both accuracies, and the seeds a 4-point MDE would need at the measured spread; the
cost to reach its baseline's final (95% bootstrap) and the break-even proxy price. Writes JSON (every run with
its machine) and a PNG (accuracy against labels, total cost, prompts rolled out).

Time (idle 2-core machine, LOCAL, measured with the earlier arms: passive, random, pvar_proxy, history_nn_lean):
a round 110-160 s (generate 45-65, train 25-45, evaluate 36-55) after a 40-60 s evaluation of the starting
model, a 3-round run 250-540 s; the start-up (imports, model, generator) 10-30 s once. Through the CLI a round
took 650-1,000 s plus 190-300 s of evaluation before training. The estimate printed at the start uses these.
Seeds: at the one-hour scale the earlier label arms' paired differences had an sd near 5.5 points, so a 4-point
MDE needs about 17 seeds (5 arms x 17 seeds x ~8 min: about 11 hours on one process); the 3 hours of a session
buy 4 to 5 seeds of the 5 default arms, an MDE of 9-11 points. The `_pairs` arms train up to twice the pairs of
the others (16, not 8): their rounds may take 30-40 s more.

Resumable and parallel: every run has its folder `--runs-dir`/<arm>-<seed> (default runs/benchmarks/
ifeval_arms-<local|cli|quick>); a finished run with the same overrides is read back, not run again. Two processes
may share one --runs-dir on disjoint seeds, each with its own --out; the same command with all the seeds then
reads every run back (start-up only) and writes the merged JSON. `--merge` adds this command's (arm, seed)s to
--out's runs instead (same settings, or refused).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from harness.arms import REPO, Arm, arm_table, available, reward, rewards_override
from harness.curves import Comparison, compare, draw, fmt_break_even, fmt_quality
from harness.results import build_report, combined_runs, merge_runs, previous_report, summarise_arms, write
from harness.runs import CLI_RECORD, LOCAL_RECORD, add_arguments, make_runner, run_arms, seed_block_of
from harness.stats import BOOTSTRAP, fmt, fmt_difference, fmt_reach, mde, mean_interval

CONFIG = "configs/smollm2-ifeval.yaml"
HEADLINE, SECOND = "instruction_loose", "prompt_strict"
ACCURACIES = (HEADLINE, SECOND, "instruction_strict", "prompt_loose")  # actors/rewards/ifeval_fields.py
# The one-hour scale: the HF backend (the in-process runner's), half the config's prompts a round, 48 held-out
# prompts, a round's 64 responses in one HF generate call (batches of 32 made generation and evaluation 1.5x slower).
LOCAL = ["generation.backend=hf", "data.prompts_per_round=16", "eval.num_prompts=48", "generation.batch_size=64"]
TINY = ["data.prompts_per_round=4", "generation.samples_per_prompt=2", "generation.max_new_tokens=16",  # real_model.py's
        "selection.pair_budget=2", "learner.batch_size=2", "learner.micro_batch_size=null", "eval.num_prompts=4",
        "eval.samples_per_prompt=1", "diagnostics.did_prompts=0"]
ROUNDS = {"local": 3, "cli": 6, "quick": 1}
# Seconds of a run: (before the first round, each round), from the measurements in the module docstring (quick: this
# script's smoke test on the loaded 2-core machine).
SECONDS = {"local": (50, 145), "cli": (250, 800), "quick": (40, 40)}
LABELLER = reward("ifeval", weight=1.0)
PROXY = reward("ifeval_proxy", role="proxy")
PAIRS = "labelling.query.responses_per_group=2"
EVERY_LABELLED = "selection.policy.top_fraction=1.0"  # the label arms train every labelled group that makes a pair
# GRESO's history scheduler, a never-visited prompt borrowing the tie streak of its 5 nearest visited ones (MiniLM).
HISTORY = ["data.scheduler=history", "data.scheduler.audit_fraction=0.1", "data.scheduler.neighbours=5",
           "data.scheduler.neighbour_source=minilm"]
LEAN_SHARE = 0.75  # history_nn_lean's prompts a round, a share of passive's
DEFAULT_ARMS = ["passive_sized", "random", "random_pairs", "pvar_implicit_pairs", "pvar_learned_pairs"]
COMPARISONS = (Comparison("random", "labels"), Comparison("random", "total_cost"), Comparison("passive_sized", "total_cost"),
               Comparison("passive_sized", "round"), Comparison("passive", "round"))
TARGET_MDE = 0.04  # the issue's: a minimum detectable effect of at most 4 points of instruction-level loose accuracy
OUT = REPO / "benchmarks" / "results" / "ifeval_arms_local.json"  # ifeval_arms.json: the earlier arms' runs


# --- arms ----------------------------------------------------------------------------------------


def sizes(config: str | Path, overrides: list[str]) -> dict:
    """What the budgets follow from (module docstring): passive's prompts, labels and kept prompts a round, the
    label budget, the lean arm's prompts and the top_fraction that keeps as many as passive keeps."""
    from cluster.config_loading import load_config
    from policies.candidates import kept_prompt_count

    loaded = load_config(REPO / config, overrides)
    prompts, samples = loaded.data.prompts_per_round, loaded.generation.samples_per_prompt
    kept = kept_prompt_count(prompts, loaded.selection.policy.top_fraction)
    lean = max(1, round(LEAN_SHARE * prompts))
    # kept / lean rounded down to 4 decimals: 16/24 written 0.6667 would keep ceil(16.0008) = 17 prompts.
    fraction = min(1.0, math.floor(kept / lean * 1e4) / 1e4)
    if kept_prompt_count(lean, fraction) != kept:
        raise SystemExit(f"no top_fraction keeps {kept} of {lean} prompts")
    return {"prompts_per_round": prompts, "samples_per_prompt": samples, "passive_labels_per_round": prompts * samples,
            "kept_prompts": kept, "labels_per_round": kept * samples, "pair_budget": loaded.selection.pair_budget,
            "lean_prompts": lean, "lean_top_fraction": fraction}


def arms_for(size: dict) -> dict[str, Arm]:
    """Every arm at these sizes, as data: the defaults first, then the earlier arms kept for comparison."""
    budget, kept, groups = size["labels_per_round"], size["kept_prompts"], size["labels_per_round"] // 2
    labels = f"labelling.labels_per_round={budget}"
    scored_proxy = rewards_override(LABELLER, PROXY)
    active = {"config": CONFIG, "baseline": "passive_sized", "axes": ("labels", "total_cost")}
    scheduler = {"config": CONFIG, "baseline": "passive", "axes": ("generated_tokens",), "tags": ("scheduler",)}
    return arm_table(
        Arm("passive", [], config=CONFIG, description=f"the config as it is: every response of {size['prompts_per_round']}"
            f" prompts labelled ({size['passive_labels_per_round']} a round), the top {kept} by PVar trained",
            signal="none: every response is labelled"),
        Arm("passive_sized", [f"data.prompts_per_round={kept}", EVERY_LABELLED], config=CONFIG, baseline="passive",
            axes=("labels", "total_cost"), description=f"passive on {kept} prompts a round, as many as passive trains: "
            f"{budget} labels, every labelled group trained (at most {kept} pairs), half passive's rollouts",
            signal="none: every response is labelled"),
        Arm("random", ["labelling.query=random", labels, EVERY_LABELLED], description=f"{budget // size['samples_per_prompt']}"
            f" whole prompt groups in a seeded random order: {budget} labels a round", signal="none: a seeded random "
            "order", **active),
        Arm("random_pairs", ["labelling.query=random", labels, PAIRS, EVERY_LABELLED], description=f"2 random responses "
            f"of each of {groups} random groups: {budget} labels a round", signal="none: a seeded random order", **active),
        Arm("pvar_implicit_pairs", ["labelling.query.kind=pvar_implicit", "labelling.query.initial=random", labels, PAIRS,
                                    EVERY_LABELLED],
            description=f"the extremes of the log-ratio log pi - log pi_init in each of {groups} groups ranked by its "
                        f"PVar; round 0 at random: {budget} labels a round",
            signal="the implicit reward: what the policy moved since its start, no proxy; each response's forward "
                   "passes counted as a proxy call", **active),
        Arm("pvar_learned_pairs", ["labelling.query.kind=pvar_learned", labels, PAIRS, EVERY_LABELLED],
            description=f"the extremes of a learned proxy's scores in each of {groups} groups ranked by their PVar; "
                        f"round 0 at random: {budget} labels a round",
            signal="a ridge proxy on MiniLM features fitted on the labels bought so far; each response it scores "
                   "counted as a proxy call", **active),
        # The earlier arms (docs/label-efficiency.md and docs/scheduling.md, "On the real model"), not run by default.
        Arm("pvar_proxy", [scored_proxy, "labelling.query=pvar_proxy", labels, EVERY_LABELLED],
            description=f"whole groups by the PVar of ifeval_proxy's scores: {budget} labels a round",
            signal="ifeval_proxy: one of the response's instructions checked, pass or fail", tags=("older",), **active),
        Arm("pvar_proxy_pairs", [scored_proxy, "labelling.query=pvar_proxy", labels, PAIRS, EVERY_LABELLED],
            description=f"ifeval_proxy's best and worst response of each of {groups} groups ranked by its PVar: "
                        f"{budget} labels a round (the earlier runs: half that)",
            signal="ifeval_proxy: one of the response's instructions checked", tags=("older",), **active),
        Arm("passive_proxy", [scored_proxy], config=CONFIG, baseline="passive", axes=("round",), tags=("check",),
            description="passive scoring ifeval_proxy too: the check that a proxy changes no run",
            signal="none: every response is labelled"),
        Arm("history_nn", HISTORY, description="the history scheduler (GRESO), audit 0.1, a never-visited prompt "
            "borrowing the tie streak of its 5 nearest visited prompts (MiniLM)", signal="the labels' tie streaks",
            **scheduler),
        Arm("history_nn_lean", [*HISTORY, f"data.prompts_per_round={size['lean_prompts']}",
                                f"selection.policy.top_fraction={size['lean_top_fraction']}"],
            description=f"history_nn on {size['lean_prompts']} prompts a round, keeping {kept} as passive does",
            signal="the labels' tie streaks", **scheduler),
    )


# --- what a run measured beside the harness's curves -----------------------------------------------


def ifeval_curves(run_dir: Path, summary: dict) -> dict:
    """IFEval's four held-out accuracies per point (summary.json's `heldout_before_ifeval`, then each round's
    `heldout_ifeval`), "heldout" being instruction-level loose: Arm.heldout names only metrics.json's reward mean or
    a `heldout_columns` column, so the curve replaces read_run's (run_arms merges this after it). Also what the
    scheduler did each round (skips and audits; history arms)."""
    from actors.contracts import METRICS_FILE, Metric

    rows = summary["rounds"]
    if Metric.HELDOUT_BEFORE_IFEVAL not in rows[0]:
        raise SystemExit(f"{run_dir}: round 0 has no {Metric.HELDOUT_BEFORE_IFEVAL} (eval.before_training off?)")
    points = [rows[0][Metric.HELDOUT_BEFORE_IFEVAL], *(row[Metric.HELDOUT_IFEVAL] for row in rows)]
    curves = {name: [point[name] for point in points] for name in ACCURACIES}
    scheduling = [json.loads((Path(run_dir) / f"round_{row[Metric.ROUND]:04d}" / METRICS_FILE).read_text())
                  .get(Metric.SCHEDULING) or {} for row in rows]
    keep = ("skipped", "skipped_unvisited", "audited", "audit_informative", "audit_judged")
    return {**curves, "heldout": curves[HEADLINE], "heldout_curve": f"{Metric.HELDOUT_IFEVAL}.{HEADLINE}",
            "scheduling": [{key: s[key] for key in keep if key in s} for s in scheduling]}


def seeds_for(sd: float | None, target: float = TARGET_MDE, most: int = 200) -> int | None:
    """The fewest seeds whose paired MDE at this spread of the differences is at most `target` (None: > most)."""
    if sd is None:
        return None
    return next((n for n in range(2, most + 1) if mde(sd, n) <= target), None)


def add_accuracy_comparisons(summary: dict, runs: list[dict]) -> None:
    """Per arm: the change of both accuracies over the start, each comparison on prompt-level strict too, and the
    seeds a TARGET_MDE detectable effect would need at each comparison's measured spread."""
    by_arm = {name: [r for r in runs if r["arm"] == name] for name in summary}
    for name, s in summary.items():
        for value in (HEADLINE, SECOND):
            s[f"{value}_change"] = mean_interval([r[value][-1] - r[value][0] for r in by_arm[name]])
        s[f"versus_{SECOND}"] = {c.key: compare(by_arm[name], by_arm[c.against], c.axis, value=SECOND)
                                 for c in COMPARISONS if c.against in by_arm and c.against != name}
        s["seeds_for_target_mde"] = {key: seeds_for(v["sd"]) for key, v in s["versus"].items() if v}


# --- the table -----------------------------------------------------------------------------------


def table_rows(summary: dict[str, dict], comparisons: tuple[Comparison, ...]) -> list[dict]:
    """One row of formatted cells per arm (accuracies in points): what the tables print and the JSON keeps."""
    rows = []
    for arm, s in summary.items():
        totals, reach = s["totals"], s.get("reach") or {}
        rows.append({
            "arm": arm, "labels": f"{totals['labels']['mean']:.0f}", "proxy calls": f"{totals['proxy_scores']['mean']:.0f}",
            "gen. tokens": f"{totals['generated_tokens']['mean']:.0f}",
            "learner tokens": f"{totals['learner_tokens']['mean']:.0f}",
            "rollouts": f"{totals['prompts_rolled_out']['mean']:.0f}", "total cost": f"{totals['total_cost']['mean']:.1f}",
            "instr. loose": fmt(s["final"]), "instr. change": fmt(s[f"{HEADLINE}_change"], signed=True),
            "prompt strict": fmt(s.get(f"final_{SECOND}")), "prompt change": fmt(s[f"{SECOND}_change"], signed=True),
            "pairs/round": "-" if s["pairs_per_round"] is None else f"{s['pairs_per_round']:.1f}",
            "tied": "-" if s["tied_share_mean"] is None else f"{s['tied_share_mean']:.2f}",
            "signal rho / pair acc.": fmt_quality(s["proxy_quality"]),
            "s/run": "-" if s["wall_seconds_mean"] is None else f"{s['wall_seconds_mean']:.0f}",
            **{c.title: fmt_difference(s["versus"].get(c.key)) for c in comparisons},
            **{f"prompt strict {c.title}": fmt_difference(s[f"versus_{SECOND}"].get(c.key)) for c in comparisons},
            **{f"seeds for MDE, {c.key}": str(s["seeds_for_target_mde"].get(c.key) or "-") for c in comparisons},
            "baseline": s.get("baseline") or "-",
            "cost to reach baseline [95%]": "; ".join(f"{axis} {fmt_reach(r, 0 if axis == 'labels' else 1)}"
                                                      for axis, r in reach.items()) or "-",
            "break-even proxy price [95%]": fmt_break_even(s.get("break_even")) if s.get("baseline") else "-",
        })
    return rows


def print_tables(rows: list[dict], comparisons: tuple[Comparison, ...], header: str) -> None:
    spent = ["labels", "proxy calls", "gen. tokens", "learner tokens", "rollouts", "total cost", "instr. loose",
             "instr. change", "prompt strict", "prompt change", "pairs/round", "tied", "signal rho / pair acc.", "s/run"]
    groups = [("instruction-level loose", [c.title for c in comparisons]),
              ("prompt-level strict", [f"prompt strict {c.title}" for c in comparisons]),
              (f"seeds a {TARGET_MDE * 100:.0f}-point MDE would need at the measured spread (instruction loose)",
               [f"seeds for MDE, {c.key}" for c in comparisons]),
              ("against each arm's baseline", ["baseline", "cost to reach baseline [95%]", "break-even proxy price [95%]"])]
    print(f"\n{header}")
    for title, columns in [("spent and reached", spent), *groups]:
        columns = ["arm", *columns]
        names = {c: c.removeprefix("prompt strict ") for c in columns}
        widths = {c: max(len(names[c]), *(len(r[c]) for r in rows)) for c in columns}
        print(f"\n{title}\n" + "  ".join(names[c].rjust(widths[c]) for c in columns))
        for row in rows:
            print("  ".join(row[c].rjust(widths[c]) for c in columns))
    for row in rows:
        if row.get("scheduling"):
            print(f"{row['arm']}: the scheduler's mean per round {row['scheduling']}")


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = report["summary"]
    dashed = tuple(name for name, arm in report["arms"].items() if set(arm["tags"]) & {"older", "check", "scheduler"})
    figure, axes = plt.subplots(1, 3, figsize=(19, 5.5))
    title = (f"SmolLM2 on builtin-ifeval ({report['settings']['mode']}, {report['settings']['rounds']} rounds), "
             f"{len(report['seeds'])} seeds ({report['seed_block']['name']}), mean and 95% interval")
    for axis, x in zip(axes, ("labels", "total_cost", "prompts_rolled_out")):
        draw(axis, summary, x, baseline="passive_sized", title=title if x == "labels" else "", dashed=dashed,
             ylabel="held-out instruction-level loose accuracy")
    axes[0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


# --- main ----------------------------------------------------------------------------------------


def finished(arm: Arm, seed: int, runs_dir: Path, shared: list[str], after: list[str]) -> bool:
    """Whether the runner will read this run back: its folder's record (either runner's) has the same overrides."""
    for name in (LOCAL_RECORD, CLI_RECORD):
        record = runs_dir / f"{arm.name}-{seed}" / name
        if record.exists() and json.loads(record.read_text()).get("overrides") == arm.overrides_for(seed, shared, after):
            return True
    return False


def run_all(args, arms: list[Arm], block: dict, runs_dir: Path, mode: str, rounds: int,
            shared: list[str]) -> tuple[list[dict], float | None]:
    """Every (seed, arm) of this invocation, after printing what it will take; (runs, start-up seconds)."""
    pending = [(a.name, s) for s in block["seeds"] for a in arms if not finished(a, s, runs_dir, shared, args.overrides)]
    before, per_round = SECONDS[mode]
    each = before + per_round * rounds
    print(f"estimate: {len(pending)} runs to do x ~{each:.0f} s = ~{len(pending) * each / 3600:.1f} h at the measured speeds "
          f"({len(arms) * len(block['seeds']) - len(pending)} of {len(arms) * len(block['seeds'])} already in "
          f"{runs_dir}; {mode}, {rounds} rounds, arms {[a.name for a in arms]}, seeds {block['seeds']})", flush=True)
    runner = make_runner("cli" if mode == "cli" else "local", REPO / CONFIG, [*shared, *args.overrides])
    if mode != "cli":
        print(f"start-up (imports, task, model, generator): {runner.start():.1f}s", flush=True)
    runs = run_arms(arms, block["seeds"], runs_dir, runner, shared, args.overrides, extra=ifeval_curves)
    return runs, runner.startup_seconds


def main() -> None:
    table = arms_for(sizes(CONFIG, LOCAL))  # for --help; the run's own sizes below
    parser = argparse.ArgumentParser(description=__doc__ + "\narms (at the one-hour scale):\n" + "\n".join(
        f"  {arm.name}: {arm.description}" for arm in table.values()), formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser, table, DEFAULT_ARMS, OUT, combine=True)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 1 round: checks the script, measures nothing")
    parser.add_argument("--local", action="store_true", help="(the default: in process at the one-hour scale)")
    parser.add_argument("--rounds", type=int, help="run.rounds of every arm (default: 3; --cli 6; --quick 1)")
    parser.add_argument("--bootstrap", type=int, default=BOOTSTRAP, help="bootstrap resamples (default %(default)s)")
    args = parser.parse_args()
    if args.quick and args.cli:
        raise SystemExit("--quick runs in process: not with --cli")

    from cluster.config.evaluation import Prices

    mode = "cli" if args.cli else "quick" if args.quick else "local"
    rounds = args.rounds or ROUNDS[mode]
    scale = {"local": LOCAL, "cli": [], "quick": [*LOCAL, *TINY]}[mode]
    shared = [*scale, f"run.rounds={rounds}"]
    size = sizes(CONFIG, [*scale, *args.overrides])
    table = arms_for(size)
    block = seed_block_of(args)
    defaults = {"local": OUT, "cli": OUT.with_name("ifeval_arms_cli.json"),
                "quick": REPO / "runs" / "benchmarks" / "ifeval_arms-quick" / "ifeval_arms_quick.json"}
    out = Path(defaults[mode] if args.out == str(OUT) else args.out)
    runs_dir = Path(args.runs_dir or REPO / "runs" / "benchmarks" / f"ifeval_arms-{mode}")
    settings = {"config": CONFIG, "mode": mode, "rounds": rounds, "shared_overrides": scale, "overrides": args.overrides,
                "seed_block": block["name"], "sizes": size}
    previous = previous_report(out, settings, [table[name] for name in args.arms]) if args.merge else None
    arms = available([table[name] for name in args.arms], shared)
    if not arms:
        raise SystemExit("no arm to run")
    if args.combine:
        runs, commands = combined_runs(args.combine, settings, block["seeds"])
        startup, parts = None, {"combined_from": commands}
    else:
        runs, startup = run_all(args, arms, block, runs_dir, mode, rounds, shared)
        parts = {}
    if previous:
        runs = merge_runs(previous["runs"], runs)
    # Arms of earlier merged runs that this table no longer declares keep their recorded definition.
    definitions = {**table, **{name: Arm(**data) for name, data in ((previous or {}).get("arms") or {}).items()
                               if name not in table}}
    summary = summarise_arms(definitions, runs, COMPARISONS, extra=ACCURACIES[1:], resamples=args.bootstrap)
    add_accuracy_comparisons(summary, runs)
    if block["name"] == "explicit":
        block["seeds"] = sorted({r["seed"] for r in runs})
    comparisons = tuple(c for c in COMPARISONS if c.against in summary)
    rows = table_rows(summary, comparisons)
    for row in rows:
        if "scheduler" in definitions[row["arm"]].tags:
            row["scheduling"] = scheduling_means([r for r in runs if r["arm"] == row["arm"]])
    print_tables(rows, comparisons, f"SmolLM2-135M-Instruct on builtin-ifeval, {mode}, {rounds} rounds, seeds "
                 f"{block['name']} {block['seeds']}: accuracies in points (x100), mean ± 95% t half-width; costs in "
                 f"label units ({', '.join(f'{k} {v}' for k, v in Prices().model_dump().items())})")
    report = build_report(settings, definitions, runs, summary, seed_block=block, previous=previous,
                          startup_seconds=startup, comparisons=[c.key for c in COMPARISONS], table=rows, **parts)
    write(report, out, plot)


def scheduling_means(runs: list[dict]) -> dict:
    """What the scheduler did, per round averaged over rounds and seeds."""
    values: dict[str, list[float]] = {}
    for run in runs:
        for entry in run.get("scheduling") or []:
            for key, value in entry.items():
                values.setdefault(key, []).append(float(value))
    return {key: round(sum(v) / len(v), 2) for key, v in values.items()}


if __name__ == "__main__":
    main()
