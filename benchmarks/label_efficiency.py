"""Label efficiency of query selection, at priced cost: held-out reward against labels, total cost and rollouts.

    python benchmarks/label_efficiency.py --seed-block fresh            # the headline: seeds 1000-1019, default arms
    python benchmarks/label_efficiency.py --seeds 0 1 --arms passive random pvar_proxy_pairs [--rounds 8]
        [--pool natural|realistic] [--cli] [--runs-dir DIR] [--merge] [--out PATH] [key=value ...]

Every arm is the pool's config (natural: configs/quickstart.yaml, graded labeller `builtin_task`; realistic:
configs/builtin-realistic.yaml, exact-match labeller) with the overrides of its `Arm` record below, and every arm
runs the same `--rounds` (default 8: equal rounds). Arms that choose by a proxy score it (role proxy) and pay for
it at `reporting.prices.proxy_call`; the others score none and are charged no proxy call (scoring a proxy changes
no sample). `builtin_task_exact` is scored with role eval, so the held-out exact-match rate is measured too.
Shared by every arm: `selection.policy.top_fraction=1.0` (the learner trains on every labelled prompt that makes
a pair, up to the pair budget of 32: what is compared is which responses get labels) and no DID or
gradient-norm diagnostics (measurements only). The arms, their overrides and what their signal knows are in
ARMS (printed by --help's arm list and written to the JSON); docs/label-efficiency.md explains them.

Reported per arm, seeds paired (benchmarks/harness/): what it spent on each priced axis (labels, proxy calls,
generated and learner tokens) and the total at its prices (label units: docs/costs.md); its final held-out
reward (Student-t 95% interval); minus random at equal labels, minus passive_sized at equal total cost, minus
passive at equal rounds (per-seed differences, t interval, and the minimum detectable effect at 80% power beside
every difference whose interval includes 0); the labels and the total cost its mean curve needs to reach
passive's final (95% bootstrap over seeds); the break-even proxy price (the proxy_call price at which reaching
passive's final costs it passive's total cost); the signal's agreement with the labels (metrics.json's
`proxy_quality`: Spearman / pair accuracy). Plot: held-out reward against cumulative labels, total cost and
prompts rolled out. Writes benchmarks/results/label_efficiency.json and .png; the JSON names the seed block.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from harness.arms import REPO, Arm, arm_table, available, reward, rewards_override
from harness.curves import Comparison, at_equal_reward, draw, fmt_break_even, fmt_quality
from harness.results import build_report, combined_runs, merge_runs, previous_report, summarise_arms, write
from harness.runs import add_arguments, make_runner, run_arms, seed_block_of
from harness.stats import BOOTSTRAP, fmt, fmt_difference, fmt_reach

POOLS = {"natural": ("configs/quickstart.yaml", "builtin_task"),
         "realistic": ("configs/builtin-realistic.yaml", "builtin_task_exact")}
EXACT = "builtin_task_exact"
SHARED = ["selection.policy.top_fraction=1.0", "diagnostics.did_prompts=0", "diagnostics.gradient_norms=false"]
BUDGET = "labelling.labels_per_round=64"  # a quarter of passive's 256 labels a round
PAIRS = "labelling.query.responses_per_group=2"
PROXY_PRICE = 0.05  # reporting.prices.proxy_call's default: what zero_label pays for each of its labels
NOISE_SWEEP = {"010": "±0.1", "060": "±0.6", "100": "±1.0"}
DEFAULT_ARMS = ["passive", "passive_sized", "random", "random_pairs", "pvar_proxy_pairs",
                *(f"pvar_proxy_pairs_noise{n}" for n in NOISE_SWEEP), "pvar_proxy_pairs_length", "pvar_implicit_pairs",
                "pvar_learned_pairs", "zero_label"]
COMPARISONS = (Comparison("random", "labels"), Comparison("random", "total_cost"), Comparison("passive_sized", "total_cost"),
               Comparison("passive", "round"))
OUT = REPO / "benchmarks" / "results" / "label_efficiency.json"


# --- arms ----------------------------------------------------------------------------------------


def arms_for(pool: str = "natural") -> dict[str, Arm]:
    """Every arm on `pool`, as data (the defaults first, then the older arms kept for comparison)."""
    config, labeller = POOLS[pool]
    exact = [] if labeller == EXACT else [reward(EXACT, role="eval")]

    def scored(*proxies: str) -> str:  # the labeller, the proxies the arm chooses by, the eval-only exact reward
        return rewards_override(reward(labeller), *(reward(p, role="proxy") for p in proxies), *exact)

    active = {"config": config, "baseline": "passive", "axes": ("labels", "total_cost")}
    proxy_pairs = Arm("pvar_proxy_pairs", [scored("builtin_task_proxy"), "labelling.query=pvar_proxy", BUDGET, PAIRS],
                      description="the proxy's best and worst response of each of 32 groups, groups by the PVar of the "
                                  "proxy's scores: 64 labels a round",
                      signal="the label plus uniform noise ±0.3, fixed per response (builtin_task_proxy), scored on "
                             "every response at the proxy price", **active)
    sweep = [proxy_pairs.variant(f"pvar_proxy_pairs_noise{n}", [scored(f"builtin_task_proxy_noise{n}")],
                                 signal=f"the label plus uniform noise {width} (the same draw as builtin_task_proxy's, "
                                        "scaled)", tags=("noise_sweep",))
             for n, width in NOISE_SWEEP.items()]
    return arm_table(
        Arm("passive", [scored(), "labelling.query=passive"], config=config, description="every response labelled: "
            "256 labels a round (64 prompts x 4)", signal="none: every response is labelled"),
        Arm("passive_sized", [scored(), "labelling.query=passive", "data.prompts_per_round=32"],
            description="passive on 32 prompts a round, the pair budget (selection.pair_budget): it trains about as "
                        "many pairs as it labels groups, on half of passive's rollouts and labels (128 a round)",
            signal="none: every response is labelled", **active),
        Arm("random", [scored(), "labelling.query=random", BUDGET], description="16 prompt groups of 4 in a seeded "
            "random order: 64 labels a round", signal="none: a seeded random order", **active),
        Arm("random_pairs", [scored(), "labelling.query=random", BUDGET, PAIRS], description="2 random responses of "
            "each of 32 random groups: 64 labels a round", signal="none: a seeded random order", **active),
        proxy_pairs, *sweep,
        proxy_pairs.variant("pvar_proxy_pairs_length", [scored("builtin_task_length_proxy")], signal="the label plus "
                            "an error of up to ±0.3 that follows the response's length (long ones scored up), not the "
                            "label (builtin_task_length_proxy)", tags=("biased_proxy",)),
        Arm("pvar_implicit_pairs", [scored(), "labelling.query.kind=pvar_implicit", "labelling.query.initial=random",
                                    BUDGET, PAIRS],
            description="the extremes of the log-ratio log pi - log pi_init in each of 32 groups ranked by its PVar; "
                        "round 0 at random: 64 labels a round",
            signal="the implicit reward: what the policy moved since its start, nothing of the labeller; each "
                   "response's forward pass counted as a proxy call", **active),
        Arm("pvar_learned_pairs", [scored(), "labelling.query.kind=pvar_learned", BUDGET, PAIRS],
            description="the extremes of a learned proxy's scores in each of 32 groups ranked by their PVar: 64 "
                        "labels a round",
            signal="a ridge proxy on MiniLM features fitted on the labels bought so far; each response it scores "
                   "counted as a proxy call", **active),
        Arm("zero_label", [rewards_override(reward("builtin_task_proxy"), reward(labeller, role="eval"), *exact),
                           "labelling.query=passive"],
            prices={"label": PROXY_PRICE}, heldout=labeller, proxy_axis="labels",
            description="no true label: the proxy is the only label-role reward and labels every response (256 a "
                        f"round at the proxy price {PROXY_PRICE}); held-out reward is {labeller} as an eval reward",
            signal="the label plus uniform noise ±0.3 (builtin_task_proxy) is the labeller", **active),
        # Older arms, not run by default (docs/label-efficiency.md has their earlier numbers).
        Arm("dynamic_filter", [scored(), "labelling.query=dynamic_filter", BUDGET], description="random groups until "
            "target_groups (the pair budget, 32) do not tie, under the 64-label budget (binds first)",
            signal="the labels themselves: a tied group is skipped after it is labelled", tags=("older",), **active),
        Arm("dynamic_filter_early", [scored(), "labelling.query=dynamic_filter", BUDGET, "labelling.target_groups=8"],
            description="dynamic_filter stopping at 8 groups that do not tie (half the groups 64 labels buy)",
            signal="the labels themselves", tags=("older",), **active),
        Arm("dynamic_filter_unbudgeted", [scored(), "labelling.query=dynamic_filter"], description="DAPO as run: no "
            "label budget, random groups until 32 do not tie", signal="the labels themselves", tags=("older",),
            **active),
        Arm("dynamic_sampling", [scored(), "labelling.query=dynamic_filter", "labelling.refill_batches=4"],
            description="the unbudgeted filter refilling up to 4 more batches of prompts from the pool (DAPO's "
                        "dynamic sampling)", signal="the labels themselves", tags=("older",), **active),
        Arm("pvar_proxy", [scored("builtin_task_proxy"), "labelling.query=pvar_proxy", BUDGET],
            description="16 whole groups by the PVar of the proxy's scores: 64 labels a round",
            signal="the label plus uniform noise ±0.3 (builtin_task_proxy)", tags=("older",), **active),
        Arm("pvar_implicit", [scored("builtin_task_proxy"), "labelling.query.kind=pvar_implicit",
                              "labelling.query.initial=proxy", BUDGET],
            description="16 whole groups by the PVar of the log-ratio; round 0 by the proxy's PVar (initial: proxy)",
            signal="the implicit reward (round 0: the proxy)", tags=("older",), **active),
        Arm("ensemble", [scored(), "labelling.query=ensemble", BUDGET], description="one pair per prompt where an "
            "ensemble reward model trained on the labels so far disagrees most: 32 pairs of 2 a round",
            signal="an ensemble of ridge heads on the policy's features, fitted on the labels so far", tags=("older",),
            **active),
    )


ARMS = arms_for("natural")


# --- the table -----------------------------------------------------------------------------------


def with_equal_reward(summary: dict[str, dict], arms: dict[str, Arm], runs: list[dict], baseline: str = "passive") -> None:
    """Each arm's `equal_reward`: what `baseline` spends to first reach the arm's final held-out reward, against
    what the arm spent, and the proxy price at which they are equal (harness.curves.at_equal_reward). Equal rounds
    make passive's final (4x the labels of a label arm) out of any label arm's reach; this reads the saving at
    the reward each arm does reach."""
    base = [r for r in runs if r["arm"] == baseline]
    if not base:
        return
    for name, entry in summary.items():
        own = [r for r in runs if r["arm"] == name]
        entry["equal_reward"] = at_equal_reward(own, base, own[0]["prices"], proxy_axis=arms[name].proxy_axis)


def table_rows(summary: dict[str, dict]) -> list[dict]:
    """One row of formatted cells per arm (held-out in points, x100): what the tables print and the JSON keeps."""
    rows = []
    for arm, s in summary.items():
        totals, reach, versus = s["totals"], s.get("reach") or {}, s["versus"]
        rows.append({
            "arm": arm, "labels": f"{totals['labels']['mean']:.0f}", "proxy calls": f"{totals['proxy_scores']['mean']:.0f}",
            "generated tokens": f"{totals['generated_tokens']['mean']:.0f}",
            "learner tokens": f"{totals['learner_tokens']['mean']:.0f}",
            "rollouts": f"{totals['prompts_rolled_out']['mean']:.0f}", "total cost": f"{totals['total_cost']['mean']:.1f}",
            "held-out final": fmt(s["final"]), "exact final": fmt(s.get("final_exact")),
            "pairs/round": "-" if s["pairs_per_round"] is None else f"{s['pairs_per_round']:.1f}",
            "tied": "-" if s["tied_share_mean"] is None else f"{s['tied_share_mean']:.2f}",
            "signal rho / pair acc.": fmt_quality(s["proxy_quality"]),
            **{c.title: fmt_difference(versus.get(c.key)) for c in COMPARISONS},
            "labels to reach passive [95%]": fmt_reach(reach.get("labels")),
            "total cost to reach passive [95%]": fmt_reach(reach.get("total_cost"), 1),
            "break-even proxy price [95%]": fmt_break_even(s.get("break_even")),
            "passive's cost at its reward (ratio)": _equal_reward_cost(s.get("equal_reward")),
            "break-even at equal reward": _equal_reward_price(s.get("equal_reward")),
            "s/run": "-" if s["wall_seconds_mean"] is None else f"{s['wall_seconds_mean']:.1f}",
        })
    return rows


def _equal_reward_cost(found: dict | None) -> str:
    if not found or found["baseline_cost"] is None:
        return "-" if not found else "not reached"
    return f"{found['baseline_cost']:.0f} ({found['ratio']:.2f})"


def _equal_reward_price(found: dict | None) -> str:
    if not found or found["price"] is None:
        return "-"
    return f"{found['price']:.3f}" if found["price"] > 0 else "never saves"


def print_tables(rows: list[dict], header: str) -> None:
    spent = ["arm", "labels", "proxy calls", "generated tokens", "learner tokens", "rollouts", "total cost",
             "held-out final", "exact final", "pairs/round", "tied", "signal rho / pair acc.", "s/run"]
    compared = ["arm", *(c.title for c in COMPARISONS), "labels to reach passive [95%]",
                "total cost to reach passive [95%]", "break-even proxy price [95%]",
                "passive's cost at its reward (ratio)", "break-even at equal reward"]
    print(f"\n{header}")
    for columns in (spent, compared):
        widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
        print("\n" + "  ".join(c.rjust(widths[c]) for c in columns))
        for row in rows:
            print("  ".join(row[c].rjust(widths[c]) for c in columns))


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = report["summary"]
    dashed = tuple(name for name, arm in report["arms"].items() if set(arm["tags"]) & {"noise_sweep", "older"})
    figure, axes = plt.subplots(1, 3, figsize=(19, 5.5))
    title = f"{report['settings']['pool']} pool, {len(report['seeds'])} seeds ({report['seed_block']['name']}), mean and 95% interval"
    for axis, x in zip(axes, ("labels", "total_cost", "prompts_rolled_out")):
        draw(axis, summary, x, baseline="passive", title=title if x == "labels" else "", dashed=dashed)
    axes[0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


# --- main ----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__ + "\narms:\n" + "\n".join(
        f"  {arm.name}: {arm.description}" for arm in ARMS.values()), formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser, ARMS, DEFAULT_ARMS, OUT, combine=True)
    parser.add_argument("--pool", choices=list(POOLS), default="natural")
    parser.add_argument("--rounds", type=int, default=8, help="run.rounds of every arm (default 8)")
    parser.add_argument("--bootstrap", type=int, default=BOOTSTRAP, help="bootstrap resamples (default %(default)s)")
    args = parser.parse_args()

    from cluster.config.evaluation import Prices

    table = arms_for(args.pool)
    block = seed_block_of(args)
    shared = [*SHARED, f"run.rounds={args.rounds}"]
    mode = "cli" if args.cli else "local"
    settings = {"pool": args.pool, "config": POOLS[args.pool][0], "rounds": args.rounds, "shared_overrides": SHARED,
                "overrides": args.overrides, "mode": mode, "seed_block": block["name"]}
    out = Path(args.out)
    previous = previous_report(out, settings, [table[name] for name in args.arms]) if args.merge else None
    arms = available([table[name] for name in args.arms], shared)
    if not arms:
        raise SystemExit("no arm to run")
    startup, parts = None, {}
    if args.combine:
        runs, commands = combined_runs(args.combine, settings, block["seeds"])
        parts = {"combined_from": commands}
    else:
        runner = make_runner(mode, arms[0].config_path, [*shared, *args.overrides])
        if mode == "local":
            print(f"start-up (imports, task, model, generator): {runner.start():.1f}s", flush=True)
        with tempfile.TemporaryDirectory(prefix="activedpo-label-efficiency-") as tmp:
            runs = run_arms(arms, block["seeds"], Path(args.runs_dir or tmp), runner, shared, args.overrides,
                            columns={"exact": EXACT})
        startup = runner.startup_seconds
    if previous:
        runs = merge_runs(previous["runs"], runs)
    # Arms of earlier merged runs that this table no longer declares keep their recorded definition.
    definitions = {**table, **{name: Arm(**data) for name, data in ((previous or {}).get("arms") or {}).items()
                               if name not in table}}
    summary = summarise_arms(definitions, runs, COMPARISONS, resamples=args.bootstrap)
    with_equal_reward(summary, definitions, runs)
    if block["name"] == "explicit":
        block["seeds"] = sorted({r["seed"] for r in runs})
    rows = table_rows(summary)
    print_tables(rows, f"{args.pool} pool, {args.rounds} rounds, seeds {block['name']} {block['seeds']}: held-out "
                       f"in points (x100), mean ± 95% t half-width; costs in label units at each arm's prices "
                       f"({', '.join(f'{k} {v}' for k, v in Prices().model_dump().items())} unless the arm sets "
                       "its own)")
    report = build_report(settings, definitions, runs, summary, seed_block=block, previous=previous,
                          startup_seconds=startup, comparisons=[c.key for c in COMPARISONS], table=rows, **parts)
    write(report, out, plot)


if __name__ == "__main__":
    main()
