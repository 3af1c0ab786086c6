"""Label and rollout arms on the real task: SmolLM2-135M-Instruct on builtin-ifeval, through the CLI or --local.

    python benchmarks/ifeval_arms.py [--arms ...] [--seeds 0 1] [--rounds 6] [--label-rounds N] [--labels N]
        [--passive-dir DIR] [--work-dir DIR] [--local] [--quick] [--merge] [key=value ...]

Issues 13 and 14 ask, on the real model, what label selection and prompt scheduling buy: the first in
held-out accuracy against cumulative labels, the second against cumulative generated tokens. Every arm is
configs/smollm2-ifeval.yaml (`--rounds` rounds, default 6 as the real_model runs; `run.seed` per seed; then
the key=value overrides):
  passive          the config as it is: every response labelled, uniform scheduler, top half of the 32
                   prompts by PVar kept (16 prompts, at most 16 pairs). Its runs are benchmarks/real_model.py's
                   (`--passive-dir`, default runs/benchmarks/real_model, folders seed<S>): a complete one is
                   read back, not re-run; an incomplete one is resumed with real_model's own overrides.
  random           `labelling.query=random`, `--labels` labels a round (default half of passive's 128: 16
                   prompt groups of 4), `--label-rounds` rounds (default `--rounds`)
  pvar_proxy       the same with `labelling.query=pvar_proxy` (groups by the PVar of the proxy's scores)
  pvar_proxy_pairs the same labelling 2 responses of each chosen group, the proxy's best and worst
                   (`responses_per_group=2`), at half the labels: as many groups, so as many pairs at most
  history_nn       `data.scheduler=history` (GRESO), audit_fraction 0.1, a never-visited prompt borrowing the
                   tie streak of its 5 nearest visited prompts (MiniLM; rollout_efficiency.py's NEIGHBOURS)
  history_nn_lean  the same on 3/4 of the prompts a round (24) with `selection.policy.top_fraction` set so that as many
                   prompts are kept as passive keeps (ceil(0.6666 x 24) = 16)
  passive_proxy    (not run by default) passive scoring the proxy too: the check that the proxy changes nothing
Every arm but passive scores the `ifeval_proxy` proxy (role proxy, docs/labels.md): only pvar_proxy reads
it. Passive reuses the real_model runs without it because a proxy cannot change a run: it is scored after
generation, enters neither `reward` nor PVar nor the pairs, and costs a programmatic check of one
instruction per response (microseconds beside the seconds of generating it); `--arms passive_proxy` measures
that claim (its minus-passive row should be zero up to generation noise; with --quick at seed 0 it had the same
tokens, pairs and four accuracies at every point as passive).

Pairs trained a round are kept equal in what they can be: the pair builder (max_min) gives at most one pair
per prompt, and the pair budget is 16. Passive keeps ceil(0.5 x 32) = 16 prompts; the label arms keep every
labelled prompt (`selection.policy.top_fraction=1.0`: their 16 labelled groups, as label_efficiency.py does), the
lean arm 16 of its 24. Tied prompts have PVar 0, so each arm trains on min(16, its non-tied prompts).

**GRESO's history alone skips nothing here.** builtin-ifeval has 480 training prompts and the history
scheduler walks them in epochs, 32 a round: 6 rounds cover 192 of them, so no prompt is offered twice and
no prompt has a tie streak of its own when offered. Only borrowed neighbour streaks can skip anything
(`scheduling.skipped_unvisited`; the audit of those skips is `audit_unvisited_informative` of
`audit_unvisited_judged`). The lean arm's saving is then mostly its 24 prompts a round, not the skips.

Reported per arm (mean and Student-t 95% interval over seeds, benchmarks/seed_stats.py): the final
instruction-level loose and prompt-level strict accuracy and their change over the start; cumulative labels
and generated tokens; the labels (label arms) or tokens (scheduler arms) the arm's mean curve needs to reach
passive's final instruction-level loose accuracy (95% bootstrap over seeds); each label arm minus random at
equal labels, each scheduler arm minus passive (= uniform) at equal tokens, per seed; the scheduler's skips
and audit. The statistics are benchmarks/label_efficiency.py's. Writes benchmarks/results/ifeval_arms.json
and .png (accuracy against labels, accuracy against tokens).

Resumable: one run folder per (arm, seed), `--work-dir`/<arm>-seed<S> (default runs/benchmarks/ifeval_arms);
running the same command again reads complete runs back and resumes an interrupted one after its last
complete round (the CLI's resume). A folder run with other overrides is an error, never deleted.

**--local: the one-hour scale.** Through the CLI a run costs about 75 minutes (6 rounds of 32 prompts, the
whole held-out split, on vLLM), too much for arms x seeds in one sitting. `--local` runs every arm, passive
included (not reused), in ONE process through benchmarks/local_arms.py (the driver's real round, in-process
HF generator, scorer and one learner rank; the model and the frozen reference loaded once), at the sizes of
`LOCAL`: 16 prompts a round (passive keeps 8 and labels 64 responses, the label arms label 32, pvar_proxy_pairs
16), 48 held-out prompts, 3 rounds by default. Measured on the idle 2-core machine: a round 110-160 s (generate
45-65, train 25-45, evaluate 36-55) after a 40-60 s evaluation of the starting model; 8 runs (passive, random,
pvar_proxy and history_nn_lean at 2 seeds) took 412-537 s each, 66 minutes in all; on a later build machine a
run took 250-470 s. Its run folders are `--work-dir`/<arm>-seed<S> too (a finished one with the same overrides
is read back); `--merge` adds this command's (arm, seed)s to --out's runs.

--quick shrinks everything (real_model.py's tiny sizes, 2 rounds) to check the script end to end; its numbers
mean nothing, so its JSON, PNG and passive runs stay in the work directory.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

import numpy as np

from cli_runs import REPO, machine, run_summary, write_results
from harness.legacy import (
    draw_arms,
    labeller_entries,
    labels_to_reach,
    mean_curve,
    rewards_override,
    versus_random,
)
from real_model import CONFIG, HEADLINE, QUICK, SECOND
from rollout_efficiency import HISTORY as GRESO
from rollout_efficiency import NEIGHBOURS, read_scheduling, scheduling_means
from harness.stats import fmt, mean_interval

PROXY = {"kind": "programmatic", "name": "ifeval_proxy", "role": "proxy"}
HISTORY = [*GRESO, *NEIGHBOURS]
ARMS = {  # arm -> its overrides beside the proxy (budgets and the lean sizes are added by arm_overrides)
    "passive": [],
    "random": ["labelling.query=random", "selection.policy.top_fraction=1.0"],
    "pvar_proxy": ["labelling.query=pvar_proxy", "selection.policy.top_fraction=1.0"],
    "pvar_proxy_pairs": ["labelling.query=pvar_proxy", "selection.policy.top_fraction=1.0",
                         "labelling.query.responses_per_group=2"],
    "history_nn": HISTORY,
    "history_nn_lean": HISTORY,
    "passive_proxy": [],
}
DEFAULT_ARMS = ["passive", "random", "pvar_proxy", "pvar_proxy_pairs", "history_nn", "history_nn_lean"]
LABEL_ARMS = ("random", "pvar_proxy", "pvar_proxy_pairs")  # compared at equal labels, against random
TOKEN_ARMS = ("history_nn", "history_nn_lean", "passive_proxy")  # compared at equal tokens, against passive
LEAN_SHARE = 0.75  # of passive's prompts a round: 24 of 32
# --local's sizes (module docstring): the HF backend (the harness's), half of the config's prompts a round, 48 held-out
# prompts, a round's 64 responses in one HF generate call (batches of 32 made generation and evaluation 1.5x slower).
LOCAL = ["generation.backend=hf", "data.prompts_per_round=16", "eval.num_prompts=48", "generation.batch_size=64"]
LOCAL_ROUNDS = 3
RECORD = "ifeval_arms_run.json"  # in each run folder this script starts: the overrides it was run with


# --- arms ----------------------------------------------------------------------------------------


def sizes(config_path: Path, base: list[str]) -> dict:
    """What the budgets follow from: passive's labels a round and prompts kept, the lean arm's sizes."""
    from cluster.config_loading import load_config
    from policies.candidates import kept_prompt_count

    config = load_config(config_path, base)
    labellers = labeller_entries(config)
    prompts = config.data.prompts_per_round
    kept = kept_prompt_count(prompts, config.selection.policy.top_fraction)
    lean = max(1, round(LEAN_SHARE * prompts))
    # kept / lean rounded down to 4 decimals: 16/24 written 0.6667 would keep ceil(16.0008) = 17 prompts.
    fraction = min(1.0, math.floor(kept / lean * 1e4) / 1e4)
    if kept_prompt_count(lean, fraction) != kept:
        raise SystemExit(f"no top_fraction keeps {kept} of {lean} prompts")
    return {"rewards": [*labellers, PROXY], "passive_labels_per_round": prompts * config.generation.samples_per_prompt
            * len(labellers), "prompts_per_round": prompts, "kept_prompts": kept, "lean_prompts": lean,
            "lean_top_fraction": fraction}


def arm_overrides(arm: str, info: dict, scale: list[str], args) -> list[str]:
    """The CLI overrides of an arm's run (run.seed is added by cli_runs.run_summary); passive's are real_model.py's:
    the shared sizes (--local's, --quick's), run.rounds, the user's."""
    rounds = args.label_rounds if arm in LABEL_ARMS else args.rounds
    if arm == "passive":
        return [*scale, f"run.rounds={rounds}", *args.overrides]
    overrides = [*scale, f"run.rounds={rounds}", rewards_override(info["rewards"]), *ARMS[arm]]
    if arm in LABEL_ARMS:  # 2 labels a group instead of 4: half the labels buy as many groups (and pairs at most)
        overrides.append(f"labelling.labels_per_round={args.labels // 2 if arm == 'pvar_proxy_pairs' else args.labels}")
    if arm == "history_nn_lean":
        overrides += [f"data.prompts_per_round={info['lean_prompts']}",
                      f"selection.policy.top_fraction={info['lean_top_fraction']}"]
    return [*overrides, *args.overrides]


def comparable(overrides: list[str]) -> list[str]:
    # ray.* (dashboard, CPUs) says where a run ran, not what it computed: a resume may change it. run.rounds too:
    # a longer run's first rounds are the shorter run's, so more rounds resume it and fewer read its first ones.
    return [item for item in overrides if not item.startswith(("ray.", "run.rounds="))]


def run_arm(config: Path, seed: int, run_dir: Path, overrides: list[str], rounds: int) -> tuple[list[dict], str]:
    """The run's first `rounds` summary rows and how they were got: reused (complete, not run), resumed or run."""
    from actors.contracts import SUMMARY_FILE

    record, summary = run_dir / RECORD, run_dir / SUMMARY_FILE
    if record.exists() and comparable(json.loads(record.read_text())["overrides"]) != comparable(overrides):
        raise SystemExit(f"{run_dir} was run with other overrides ({record}); use another --work-dir or remove it")
    rows = json.loads(summary.read_text())["rounds"] if summary.exists() else []
    started = bool(rows)  # some rounds complete: the CLI resumes after the last
    if len(rows) >= rounds:
        return rows[:rounds], "reused"  # complete (real_model's passive runs may have more rounds: the first count)
    run_dir.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"overrides": overrides}) + "\n")
    rows, _ = run_summary(config, seed, run_dir, overrides)
    return rows[:rounds], "resumed" if started else "run"


def run_arm_local(harness, config: Path, seed: int, run_dir: Path, overrides: list[str]) -> tuple[list[dict], str]:
    """--local: the run in this process (benchmarks/local_arms.py); a finished one with the same overrides is read back."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    _, summary, _, reused = harness.finished_or_new(run_dir, [*overrides, f"run.seed={seed}"], config)
    return summary["rounds"], "reused" if reused else "run"


def read_run(arm: str, seed: int, rows: list[dict], status: str, run_dir: Path) -> dict:
    """Per point (the start, then after each round): cumulative labels and tokens, IFEval's four accuracies."""
    from actors.contracts import Metric
    from actors.rewards.ifeval_fields import IFEVAL_ACCURACIES

    if Metric.HELDOUT_BEFORE_IFEVAL not in rows[0]:
        raise SystemExit(f"{run_dir}: round 0 has no {Metric.HELDOUT_BEFORE_IFEVAL} (eval.before_training off?)")
    points = [rows[0][Metric.HELDOUT_BEFORE_IFEVAL], *(row[Metric.HELDOUT_IFEVAL] for row in rows)]
    return {
        "arm": arm, "seed": seed, "run_dir": str(run_dir), "status": status,
        "phase_seconds_total": sum(sum(row[Metric.PHASE_SECONDS].values()) for row in rows),
        "labels": [0, *(row["cumulative_labels"] for row in rows)],
        "tokens": [0, *(row["cumulative_generated_tokens"] for row in rows)],
        **{name: [point[name] for point in points] for name in IFEVAL_ACCURACIES},
        "pairs_trained": [row[Metric.PAIRS_TRAINED] for row in rows],
        "scheduling": read_scheduling(run_dir, len(rows)),
    }


def mergeable(out: Path, config: Path, info: dict, scale: list[str], args) -> dict | None:
    """--merge: the report at `out` (None if there is none), checked before anything runs: the same sizes, and
    every arm it shares with this command resolving to the same config (an override list may be spelled
    otherwise, e.g. a size that became a --local default and is still passed)."""
    from cluster.config_loading import load_config

    if not out.exists():
        return None
    previous = json.loads(out.read_text())
    mine = {"rounds": args.rounds, "label_rounds": args.label_rounds, "labels_per_round": args.labels,
            "quick": args.quick, "local": args.local, **info}
    differ = sorted(key for key, value in mine.items() if previous["settings"].get(key) != value)
    for arm, theirs in previous["settings"]["arm_overrides"].items():
        if arm in args.arms and (load_config(config, theirs).model_dump()
                                 != load_config(config, arm_overrides(arm, info, scale, args)).model_dump()):
            differ.append(f"{arm}'s config")
    if differ:
        raise SystemExit(f"--merge: {out} was run with other settings: {', '.join(differ)}")
    return previous


# --- statistics ----------------------------------------------------------------------------------


def summarise(runs: list[dict]) -> dict:
    """Mean curves with their bands, finals and changes over the start, costs, pairs and the scheduler's skips."""
    summary = {"seeds": [r["seed"] for r in runs], "labels": mean_curve(runs, "labels", HEADLINE)[0],
               "tokens": mean_curve(runs, "tokens", HEADLINE)[0],
               "final_labels": mean_interval([r["labels"][-1] for r in runs]),
               "final_tokens": mean_interval([r["tokens"][-1] for r in runs]),
               "pairs_per_round": statistics.fmean(p for r in runs for p in r["pairs_trained"]),
               "phase_seconds": mean_interval([r["phase_seconds_total"] for r in runs]),
               "scheduling": scheduling_means(runs)}
    for name in (HEADLINE, SECOND):
        bands = [mean_interval([r[name][i] for r in runs]) for i in range(len(runs[0][name]))]
        summary[name] = [b["mean"] for b in bands]
        summary[f"{name}_low"], summary[f"{name}_high"] = [b["low"] for b in bands], [b["high"] for b in bands]
        summary[f"{name}_final"] = bands[-1]
        summary[f"{name}_change"] = mean_interval([r[name][-1] - r[name][0] for r in runs])
    return summary


def headline(runs: list[dict], seed: int = 0) -> dict:
    """Each arm's summary; the cost to reach passive's final; the difference from its baseline at equal cost."""
    rng = np.random.default_rng(seed)
    arms = {arm: [r for r in runs if r["arm"] == arm] for arm in ARMS}
    arms = {arm: arm_runs for arm, arm_runs in arms.items() if arm_runs}
    result = {arm: summarise(arm_runs) for arm, arm_runs in arms.items()}
    passive = arms.get("passive", [])
    for arm, arm_runs in arms.items():
        key = "labels" if arm in LABEL_ARMS else "tokens"
        baseline = arms.get("random") if arm in LABEL_ARMS else passive
        shared = {r["seed"] for r in arm_runs} & {r["seed"] for r in passive}
        if shared:  # passive's own row: where its mean curve first reaches its final, in tokens
            result[arm]["reach_passive"] = {"cost": key, **labels_to_reach(arm_runs, passive, rng, key, HEADLINE)}
        if baseline and arm not in ("passive", "random"):
            result[arm]["minus_baseline"] = {"baseline": "random" if arm in LABEL_ARMS else "passive", "cost": key,
                                             **{name: versus_random(arm_runs, baseline, key, name)
                                                for name in (HEADLINE, SECOND)}}
    return result


# --- output --------------------------------------------------------------------------------------


def reach_text(reach: dict | None) -> str:
    if not reach:
        return "-"
    if reach["labels"] is None:
        return f"not reached ({reach['reached_share']:.0%})"
    high = "not reached" if reach["high"] is None else f"{reach['high']:.0f}"
    low = "-" if reach["low"] is None else f"{reach['low']:.0f}"
    share = "" if reach["share_of_passive"] is None else f" ({reach['share_of_passive']:.2f}x)"
    return f"{reach['labels']:.0f} [{low}, {high}]{share}"


def print_report(report: dict) -> None:
    arms = report["summary"]
    print(f"\nSmolLM2-135M-Instruct on builtin-ifeval, seeds {report['settings']['seeds']} (held-out accuracies in "
          f"points, mean ± 95% t-interval over seeds; 'reach': cost for the mean curve to reach passive's final "
          f"{HEADLINE}, 95% bootstrap, share of passive's)")
    print(f"{'arm':>16} {'labels':>6} {'tokens':>7} {'instr loose':>12} {'change':>12} {'prompt strict':>13} "
          f"{'change':>12} {'pairs/r':>7} {'reach passive (cost) [95%]':>36} {'minus baseline (instr, prompt)':>32}")
    for arm, s in arms.items():
        reach = s.get("reach_passive")
        versus = s.get("minus_baseline")
        versus_text = "-" if not versus or versus[HEADLINE] is None else (
            f"{versus['baseline'][:3]}: {fmt(versus[HEADLINE], signed=True)}, {fmt(versus[SECOND], signed=True)}")
        print(f"{arm:>16} {s['final_labels']['mean']:>6.0f} {s['final_tokens']['mean']:>7.0f} "
              f"{fmt(s[HEADLINE + '_final']):>12} {fmt(s[HEADLINE + '_change'], signed=True):>12} "
              f"{fmt(s[SECOND + '_final']):>13} {fmt(s[SECOND + '_change'], signed=True):>12} "
              f"{s['pairs_per_round']:>7.1f} {(reach['cost'][:3] + ' ' + reach_text(reach)) if reach else '-':>36} "
              f"{versus_text:>32}")
    print(f"\n{'scheduler':>16} {'skipped/r':>9} {'unvisited':>9} {'audited/r':>9} {'audit inf./judged':>17} "
          f"{'borrowed inf./judged':>20} {'tied share':>10}")
    for arm, s in arms.items():
        sched = s["scheduling"]
        if arm not in ("passive", *TOKEN_ARMS) or sched.get("skipped") is None:
            continue
        ratio = lambda a, b: "-" if not sched.get(b) else f"{sched[a] / sched[b]:.2f}"  # noqa: E731
        cell = lambda k: "-" if sched.get(k) is None else f"{sched[k]:.2f}"  # noqa: E731
        print(f"{arm:>16} {cell('skipped'):>9} {cell('skipped_unvisited'):>9} {cell('audited'):>9} "
              f"{ratio('audit_informative', 'audit_judged'):>17} "
              f"{ratio('audit_unvisited_informative', 'audit_unvisited_judged'):>20} {cell('tied_share'):>10}")
    print("\nper run: " + ", ".join(f"{r['arm']}-seed{r['seed']} {r['status']} ({r['phase_seconds_total']:.0f} s)"
                                    for r in report["runs"]))


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = report["summary"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    ylabel = "held-out instruction-level loose accuracy"
    groups = ((left, "labels", LABEL_ARMS, "label arms"), (right, "tokens", TOKEN_ARMS, "scheduler arms"))
    for axis, key, names, title in groups:
        shown = {arm: s for arm, s in arms.items() if arm == "passive" or arm in names}
        # passive_proxy dashed: it should lie on passive's line
        draw_arms(axis, shown, key, "passive", title, dashed="passive_proxy", value=HEADLINE, ylabel=ylabel)
        if shown:
            axis.legend(fontsize=8)
    figure.suptitle(f"SmolLM2-135M-Instruct on builtin-ifeval ({len(report['settings']['seeds'])} seed(s), mean and "
                    "95% interval over seeds; grey: passive's final)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


# --- main ----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arms", nargs="+", default=DEFAULT_ARMS, choices=list(ARMS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--rounds", type=int, help="run.rounds (default 6; 3 with --local, 2 with --quick)")
    parser.add_argument("--label-rounds", type=int, help="run.rounds of random and pvar_proxy (default: --rounds)")
    parser.add_argument("--labels", type=int, help="labels a round of the label arms (default: half of passive's)")
    parser.add_argument("--local", action="store_true", help="every arm (passive too) in this process at the one-hour "
                        "scale (module docstring)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script, measures nothing")
    parser.add_argument("--config", default=str(CONFIG))
    parser.add_argument("--work-dir", help="run folders <arm>-seed<S> (default runs/benchmarks/ifeval_arms, "
                        "ifeval_arms-quick with --quick)")
    parser.add_argument("--passive-dir", help="passive's run folders seed<S> (default runs/benchmarks/real_model, "
                        "benchmarks/real_model.py's; with --quick <work dir>/passive)")
    parser.add_argument("--out", help="JSON path (default benchmarks/results/ifeval_arms.json; with --quick in the "
                        "work dir); the PNG goes beside it")
    parser.add_argument("--merge", action="store_true", help="add this command's (arm, seed)s to the runs already "
                        "in --out; its sizes must be this command's and its arms' configs the same")
    parser.add_argument("overrides", nargs="*", help="key=value overrides for every arm, after --quick's")
    args = parser.parse_args()
    args.rounds = args.rounds or (2 if args.quick else LOCAL_ROUNDS if args.local else 6)
    args.label_rounds = args.label_rounds or args.rounds

    suffix = "-quick" if args.quick else ""
    work_dir = Path(args.work_dir or REPO / "runs" / "benchmarks" / f"ifeval_arms{suffix}")
    passive_dir = Path(args.passive_dir or (work_dir / "passive" if args.quick or args.local else
                                            REPO / "runs" / "benchmarks" / "real_model"))
    out = Path(args.out or (work_dir if args.quick else REPO / "benchmarks" / "results") / "ifeval_arms.json")
    config = Path(args.config)
    scale = [*(LOCAL if args.local else []), *(QUICK if args.quick else [])]  # the sizes every arm shares
    info = sizes(config, [*scale, *args.overrides])
    harness = None
    if args.local:
        from local_arms import LocalArms

        harness = LocalArms(config, scale)  # every arm's generation settings are the same: one generator
    args.labels = args.labels or info["passive_labels_per_round"] // 2

    previous = mergeable(out, config, info, scale, args) if args.merge else None
    runs, measured_on = [], machine()  # each run keeps the machine and commit it ran on, merged or not
    for seed in args.seeds:  # seeds outermost: an interrupted benchmark still has every arm of the first seed
        for arm in args.arms:
            run_dir = passive_dir / f"seed{seed}" if arm == "passive" else work_dir / f"{arm}-seed{seed}"
            rounds = args.label_rounds if arm in LABEL_ARMS else args.rounds
            overrides = arm_overrides(arm, info, scale, args)
            if harness is None:
                rows, status = run_arm(config, seed, run_dir, overrides, rounds)
            else:  # the harness's base overrides are `scale` already; the run's rounds are run.rounds
                rows, status = run_arm_local(harness, config, seed, run_dir, overrides[len(scale):])
            runs.append({**read_run(arm, seed, rows, status, run_dir), "machine": measured_on})
            run = runs[-1]
            print(f"{arm:>16} seed {seed}: {status}, labels {run['labels'][-1]}, tokens {run['tokens'][-1]}, "
                  f"{HEADLINE} {run[HEADLINE][0] * 100:.1f} -> {run[HEADLINE][-1] * 100:.1f}", flush=True)

    if previous:  # the runs of the other (arm, seed)s, ahead of this command's
        done = {(r["arm"], r["seed"]) for r in runs}
        runs = [r for r in previous["runs"] if (r["arm"], r["seed"]) not in done] + runs
        args.seeds = sorted({*previous["settings"]["seeds"], *args.seeds})
        args.arms = [*previous["settings"]["arms"], *(a for a in args.arms if a not in previous["settings"]["arms"])]
    settings = {"seeds": args.seeds, "arms": args.arms, "rounds": args.rounds, "label_rounds": args.label_rounds,
                "labels_per_round": args.labels, "quick": args.quick, "local": args.local, "overrides": args.overrides,
                "passive_dir": str(passive_dir), "work_dir": str(work_dir), **info,
                "arm_overrides": {arm: arm_overrides(arm, info, scale, args) for arm in args.arms}}
    if previous:
        settings["arm_overrides"] = {**previous["settings"]["arm_overrides"], **settings["arm_overrides"]}
    report = {"command": measured_on["command"], "config": args.config, "machine": measured_on,
              "settings": settings, "summary": headline(runs), "runs": runs}
    if previous:
        report["earlier_commands"] = [*previous.get("earlier_commands", []), previous["command"]]
        report.update({key: previous[key] for key in ("provenance",) if key in previous})  # older runs' origin
    print_report(report)
    write_results(report, out, plot)


if __name__ == "__main__":
    main()
