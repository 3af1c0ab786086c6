"""Label efficiency of query selection: held-out reward against the labels (and tokens) a run paid for.

    python benchmarks/label_efficiency.py [--seeds 0 1 2 3 4] [--pools natural realistic] [--arms ...]
        [--rounds 4] [--active-rounds 8] [--labels 64] [--merge] [key=value ...]

Every arm is the pool's config (natural: configs/quickstart.yaml, realistic: configs/builtin-realistic.yaml)
with the built-in proxy added to `scoring.rewards` (so every arm generates and proxy-scores alike) and one
query selector (docs/labels.md):
  passive         every response labelled (256 labels a round), `--rounds` rounds
  random          prompt groups in a seeded random order, `--labels` a round (default: a quarter of
                  passive's), `--active-rounds` rounds (default: twice `--rounds`, so the active arms
                  can spend up to half of passive's labels and "not reached" is not a matter of too
                  few rounds)
  dynamic_filter  random groups until target_groups of them do not tie (DAPO's dynamic sampling)
  dynamic_filter_early
                  the same with target_groups at half the groups the budget labels, so it may stop early
  dynamic_filter_unbudgeted
                  DAPO as its authors run it: no label budget, random groups until target_groups (the pair
                  budget, 32) of them do not tie; it spends what the filter needs
  dynamic_sampling
                  the same, rolling out up to 4 more batches of prompts when a round's groups run out
                  (`labelling.refill_batches`, DAPO's refill from the pool): more rollouts and labels
  pvar_proxy      groups by the PVar of the proxy's scores
  pvar_implicit   groups by the PVar of the implicit reward log pi - log pi_init
  ensemble        one pair per prompt where an ensemble reward model disagrees most
  random_pairs, pvar_proxy_pairs, pvar_implicit_pairs
                  the same selectors labelling 2 responses of each chosen group (responses_per_group=2):
                  a random two, or the extremes of the proxy's score or of the log-ratio
Shared by every arm: `selection.policy.top_fraction=1.0` (the learner trains on every labelled prompt that makes
a pair, up to the pair budget: what is compared is which responses get labels), and no DID or gradient-norm
diagnostics (measurements only: they change no sample, label or update). When the scorer knows the
eval-only role, `builtin_task_exact` is added with role eval, so metrics.json's `heldout_columns` give
the held-out exact-match rate; on the realistic pool the labeller is that reward already.

All runs go through benchmarks/local_arms.py: the driver's real round in one process, so the start-up
(imports, model) is paid once, not once per run. Headline per pool: the labels each arm needs to reach
passive's final held-out reward (linear interpolation on its mean curve; 95% bootstrap interval over
seeds, paired by seed), and each active arm minus random at random's final label count (per-seed
differences, mean and Student-t 95% interval, benchmarks/seed_stats.py). Writes
benchmarks/results/label_efficiency.json and .png. --merge adds the arms run now to an existing JSON of
the same settings (an arm that landed later). docs/label-efficiency.md has the numbers and their reading.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from cli_runs import REPO, machine, write_results
from seed_stats import fmt, mean_interval

from actors.contracts import METRICS_FILE, Metric

POOLS = {"natural": REPO / "configs" / "quickstart.yaml", "realistic": REPO / "configs" / "builtin-realistic.yaml"}
# Arm -> its query selector. `dynamic_filter_early` is dynamic_filter allowed to stop before the budget is
# spent (target_groups: half the groups the budget labels); at its default target (the pair budget, 32
# groups) the budget binds first and it labels exactly random's groups (docs/label-efficiency.md).
ARMS = {"passive": "passive", "random": "random", "dynamic_filter": "dynamic_filter",
        "dynamic_filter_early": "dynamic_filter", "dynamic_filter_unbudgeted": "dynamic_filter",
        "dynamic_sampling": "dynamic_filter", "pvar_proxy": "pvar_proxy", "pvar_implicit": "pvar_implicit",
        "ensemble": "ensemble", "random_pairs": "random", "pvar_proxy_pairs": "pvar_proxy",
        "pvar_implicit_pairs": "pvar_implicit"}
UNBUDGETED = ("dynamic_filter_unbudgeted", "dynamic_sampling")
PAIR_ARMS = tuple(arm for arm in ARMS if arm.endswith("_pairs"))  # responses_per_group=2
PROXY = {"kind": "programmatic", "name": "builtin_task_proxy", "role": "proxy"}
EXACT = {"kind": "programmatic", "name": "builtin_task_exact"}
SHARED = ["selection.policy.top_fraction=1.0", "diagnostics.did_prompts=0", "diagnostics.gradient_norms=false"]
BOOTSTRAP = 2000


# --- arms ----------------------------------------------------------------------------------------


def labeller_entries(config) -> list[dict]:  # the label-role rewards as `scoring.rewards` override entries
    return [spec.model_dump(mode="json", exclude_defaults=True, include={"kind", "name", "path", "weight"})
            for spec in config.scoring.rewards if spec.role == "label"]


def reward_entries(config_path: Path) -> tuple[list[dict], str, bool]:
    """The pool's labellers plus the proxy (and the eval-only exact reward when the config takes it); the
    exact reward's column; whether that column is the labeller's own (then the held-out reward is it)."""
    from actors.contracts import InputError
    from cluster.config import RewardSpec
    from cluster.config_loading import load_config

    config = load_config(config_path)
    exact_column = RewardSpec(**EXACT).column
    labeller_is_exact = any(spec.column == exact_column for spec in config.scoring.rewards if spec.role == "label")
    entries = [*labeller_entries(config), PROXY]
    if not labeller_is_exact:
        try:  # the eval-only role: absent from older checkouts, where the exact rate is simply not measured
            load_config(config_path, [rewards_override([*entries, {**EXACT, "role": "eval"}])])
            entries.append({**EXACT, "role": "eval"})
        except InputError:
            pass
    return entries, exact_column, labeller_is_exact


def rewards_override(entries: list[dict]) -> str:
    return "scoring.rewards=" + json.dumps(entries)  # JSON is YAML flow syntax


def arm_overrides(arm: str, seed: int, pool: dict, args) -> list[str]:
    common = [rewards_override(pool["rewards"]), *SHARED, f"run.seed={seed}", *args.overrides]
    if arm == "passive":
        return [*common, f"run.rounds={args.rounds}"]
    overrides = [*common, f"labelling.query={ARMS[arm]}", f"run.rounds={args.active_rounds}"]
    overrides += ["labelling.refill_batches=4"] if arm == "dynamic_sampling" else []
    overrides += [] if arm in UNBUDGETED else [f"labelling.labels_per_round={args.labels}"]
    overrides += ["labelling.query.responses_per_group=2"] if arm in PAIR_ARMS else []
    overrides += ["labelling.query.initial=proxy"] if ARMS[arm] == "pvar_implicit" else []  # as published
    if arm == "dynamic_filter_early":
        groups = args.labels // pool["labels_per_response"] // pool["samples_per_prompt"]
        overrides.append(f"labelling.target_groups={max(1, groups // 2)}")
    return overrides


def pool_info(pool: str) -> dict:
    """The pool's config, reward entries, exact-match column and passive's labels a round."""
    from cluster.config_loading import load_config

    rewards, exact_column, labeller_is_exact = reward_entries(POOLS[pool])
    config = load_config(POOLS[pool], [rewards_override(rewards)])
    label_rewards = sum(1 for spec in config.scoring.rewards if spec.role == "label")
    return {"config": str(POOLS[pool].relative_to(REPO)), "rewards": rewards, "exact_column": exact_column,
            "labeller_is_exact": labeller_is_exact, "samples_per_prompt": config.generation.samples_per_prompt,
            "labels_per_response": label_rewards,
            "passive_labels_per_round": config.data.prompts_per_round * config.generation.samples_per_prompt
            * label_rewards}


# --- one run's curves ----------------------------------------------------------------------------


def read_run(run_dir: Path, summary: dict, exact_column: str, labeller_is_exact: bool) -> dict:
    """Per point (the start, then after each round): cumulative labels and generated tokens, held-out
    reward and exact-match rate; per round: tied share of labelled prompts and the selector's summary."""
    rows = summary["rounds"]
    metrics = [json.loads((run_dir / f"round_{row[Metric.ROUND]:04d}" / METRICS_FILE).read_text()) for row in rows]
    reward = [rows[0][Metric.HELDOUT_BEFORE_MEAN], *(row[Metric.HELDOUT_REWARD_MEAN] for row in rows)]
    if labeller_is_exact:
        exact = reward
    else:
        before = (metrics[0].get(Metric.HELDOUT_BEFORE_COLUMNS) or {}).get(exact_column)
        exact = [before, *((m.get(Metric.HELDOUT_COLUMNS) or {}).get(exact_column) for m in metrics)]
    return {
        "labels": [0, *(row["cumulative_labels"] for row in rows)],
        "tokens": [0, *(row["cumulative_generated_tokens"] for row in rows)],
        "reward": reward,
        "exact": exact if any(v is not None for v in exact[1:]) else None,
        "pairs_trained": [row[Metric.PAIRS_TRAINED] for row in rows],
        # The labelled prompts' PVar under their labels: how informative the groups the selector chose were.
        "labelled_pvar": [m[Metric.SELECTION]["pvar_mean_all"] for m in metrics],
        "tied_share": [row.get(Metric.ZERO_VARIANCE_SHARE) for row in rows],
        "selector": [(row.get(Metric.LABELLING) or {}).get("selector") for row in rows],
        # Choosing what to label (the selector, and an ensemble's refit) as a share of the round's seconds.
        "selection_share": [selection_seconds(row) / row[Metric.COSTS]["seconds"] for row in rows
                            if (row.get(Metric.COSTS) or {}).get("seconds")],
    }


def run_arms(harness, root: Path, seeds, pools: dict, arm_names, overrides_of, cost_key: str = "labels",
             extra=None) -> list[dict]:
    """Every (seed, pool, arm) run through the harness's `finished_or_new`, seeds outermost so an interrupted
    benchmark still covers every arm; one record each: its curves (`read_run`) plus `extra(run_dir)` when given.
    `overrides_of(arm, seed, pool_info)` gives a run's overrides; `pools` maps a pool's name to its info."""
    runs = []
    for seed in seeds:
        for pool, info in pools.items():
            for arm in arm_names:
                run_dir, summary, wall, reused = harness.finished_or_new(root / f"{pool}-{arm}-{seed}",
                                                                         overrides_of(arm, seed, info), POOLS[pool])
                record = {"pool": pool, "arm": arm, "seed": seed, "wall_seconds": wall,
                          **read_run(run_dir, summary, info["exact_column"], info["labeller_is_exact"]),
                          **(extra(run_dir) if extra else {})}
                runs.append(record)
                print(f"{pool:>9} {arm:>20} seed {seed}: {wall:5.1f}s{' (reused)' if reused else ''}, {cost_key} "
                      f"{record[cost_key][-1]:>6}, held-out {record['reward'][0]:.4f} -> {record['reward'][-1]:.4f}",
                      flush=True)
    return runs


def selection_seconds(row: dict) -> float:
    seconds = (row.get(Metric.LABELLING) or {}).get("seconds") or {}
    return float(seconds.get("query", 0.0) + seconds.get("observe", 0.0))


# --- statistics ----------------------------------------------------------------------------------


def first_reach(xs: list[float], ys: list[float], target: float) -> float | None:
    """The x where the curve first reaches `target`, linear between points; None if it never does."""
    for i, y in enumerate(ys):
        if y >= target - 1e-12:  # a mean of the same numbers summed in another order still reaches it
            if i == 0:
                return float(xs[0])
            x0, x1, y0 = xs[i - 1], xs[i], ys[i - 1]
            return float(x0 + (target - y0) * (x1 - x0) / (y - y0))
    return None


def value_at(xs: list[float], ys: list[float], x: float) -> float | None:
    """The curve at x (linear between points), None outside it."""
    if x < xs[0] - 1e-9 or x > xs[-1] + 1e-9:
        return None
    return float(np.interp(x, xs, ys))


def mean_curve(runs: list[dict], key: str = "labels", value: str = "reward") -> tuple[list[float], list[float]]:
    """Mean x and mean value per point over runs (an arm's runs share their rounds)."""
    return list(np.mean([r[key] for r in runs], axis=0)), list(np.mean([r[value] for r in runs], axis=0))


def labels_to_reach(arm_runs: list[dict], passive_runs: list[dict], rng: np.random.Generator,
                    key: str = "labels", value: str = "reward") -> dict:
    """Labels (or another cost: `key`, e.g. "tokens") the arm's mean curve needs to reach passive's mean final
    reward (or another curve: `value`), with a bootstrap over seeds (the same resampled seeds for both: runs of
    one seed share prompt draws and evaluation seeds)."""
    by_seed = {r["seed"]: r for r in arm_runs}
    passive = {r["seed"]: r for r in passive_runs}
    seeds = sorted(set(by_seed) & set(passive))
    target = statistics.fmean(passive[s][value][-1] for s in seeds)
    point = first_reach(*mean_curve([by_seed[s] for s in seeds], key, value), target)
    draws = []
    for _ in range(BOOTSTRAP):
        sample = rng.choice(seeds, size=len(seeds), replace=True)
        goal = statistics.fmean(passive[s][value][-1] for s in sample)
        draws.append(first_reach(*mean_curve([by_seed[s] for s in sample], key, value), goal))
    share = sum(d is not None for d in draws) / len(draws)
    # "Not reached" counts as infinitely many labels, so the interval's top is finite only when at least
    # 97.5% of the resamples reach the target (percentiles without interpolation: no inf - inf).
    ordered = np.array([math.inf if d is None else d for d in draws])
    low, high = (float(np.percentile(ordered, q, method="inverted_cdf")) for q in (2.5, 97.5))
    low = None if math.isinf(low) else low
    passive_labels = statistics.fmean(passive[s][key][-1] for s in seeds)
    return {"target": target, "labels": point, "low": low, "high": None if math.isinf(high) else high,
            "reached_share": share, "passive_labels": passive_labels,
            "share_of_passive": None if point is None else point / passive_labels}


def labels_to_match(arm_runs: list[dict], passive_runs: list[dict]) -> list[dict]:
    """For each round of passive that ends above the start: the labels the arm's mean curve needs to reach
    passive's mean reward there, and their share of passive's labels (the final round is the headline)."""
    labels, reward = mean_curve(passive_runs)
    arm_labels, arm_reward = mean_curve(arm_runs)
    matches = []
    for passive_labels, target in zip(labels[1:], reward[1:]):
        if target <= reward[0]:
            continue  # not above the starting policy: every arm "reaches" it with no label
        needed = first_reach(arm_labels, arm_reward, target)
        matches.append({"passive_labels": passive_labels, "passive_reward": target, "labels": needed,
                        "share_of_passive": None if needed is None else needed / passive_labels})
    return matches


def versus_random(arm_runs: list[dict], random_runs: list[dict], key: str = "labels",
                  value: str = "reward") -> dict | None:
    """Per seed: the arm's held-out reward (`value`) minus random's at equal labels: at random's final count, or
    at the arm's own when it spent fewer (dynamic_filter_early stops early), both curves interpolated."""
    random_by_seed = {r["seed"]: r for r in random_runs}
    differences, points = [], []
    for run in arm_runs:
        other = random_by_seed.get(run["seed"])
        if other is not None:
            at = min(run[key][-1], other[key][-1])
            differences.append(value_at(run[key], run[value], at) - value_at(other[key], other[value], at))
            points.append(at)
    return {"labels": statistics.fmean(points), **mean_interval(differences)} if differences else None


def summarise_arm(runs: list[dict]) -> dict:
    labels, reward = mean_curve(runs)
    tokens, _ = mean_curve(runs, "tokens")
    bands = [mean_interval([r["reward"][i] for r in runs]) for i in range(len(reward))]
    exact = [r["exact"][-1] for r in runs if r["exact"] is not None and r["exact"][-1] is not None]
    tied = [v for r in runs for v in r["tied_share"] if v is not None]
    return {
        "seeds": [r["seed"] for r in runs], "labels": labels, "tokens": tokens, "reward": reward,
        "reward_low": [b["low"] for b in bands], "reward_high": [b["high"] for b in bands],
        "final": bands[-1], "final_exact": mean_interval(exact) if exact else None,
        "tied_share_mean": statistics.fmean(tied) if tied else None,
        "labelled_pvar_mean": finite_mean([v for r in runs for v in r.get("labelled_pvar", [])]),
        "pairs_per_round": statistics.fmean(p for r in runs for p in r["pairs_trained"]),
        "selection_share": finite_mean([v for r in runs for v in r.get("selection_share", [])]),
        "selection_share_last_round": finite_mean([r["selection_share"][-1] for r in runs if r.get("selection_share")]),
        "selector": selector_means(runs),
        "wall_seconds_mean": statistics.fmean(r["wall_seconds"] for r in runs),
    }


def finite_mean(values: list) -> float | None:
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    return statistics.fmean(finite) if finite else None


def selector_means(runs: list[dict]) -> dict:
    """Every numeric field of metrics.json's labelling.selector, averaged over rounds and seeds."""
    values: dict[str, list[float]] = {}
    for run in runs:
        for summary in run["selector"]:
            for key, value in (summary or {}).items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    values.setdefault(key, []).append(float(value))
    return {key: statistics.fmean(v) for key, v in sorted(values.items())}


def headline(runs: list[dict], seed: int = 0) -> dict:
    """Per pool: each arm's summary, labels to reach passive's final, the difference from random."""
    rng = np.random.default_rng(seed)
    arms = {arm: [r for r in runs if r["arm"] == arm] for arm in ARMS}
    arms = {arm: arm_runs for arm, arm_runs in arms.items() if arm_runs}
    result = {arm: summarise_arm(arm_runs) for arm, arm_runs in arms.items()}
    for arm, arm_runs in arms.items():
        if "passive" in arms:
            result[arm]["reach_passive"] = labels_to_reach(arm_runs, arms["passive"], rng)
            result[arm]["match_passive"] = labels_to_match(arm_runs, arms["passive"])
        if "random" in arms and arm not in ("passive", "random"):
            result[arm]["minus_random"] = versus_random(arm_runs, arms["random"])
        if "random_pairs" in arms and arm in PAIR_ARMS and arm != "random_pairs":
            result[arm]["minus_random_pairs"] = versus_random(arm_runs, arms["random_pairs"])
    return {"arms": result, "target": target_verdict(result)}


def target_verdict(result: dict) -> dict | None:
    """The issue's target, reported, never tuned to: the best active arm needs at most a third of passive's
    labels to reach passive's final held-out reward, and beats random at equal labels beyond the interval.
    The best arm is the one that reaches it with the fewest labels, else the one furthest above random."""
    if "passive" not in result:
        return None
    passive = result["passive"]
    gain = passive["reward"][-1] - passive["reward"][0]
    if gain <= 0:
        return {"passive_gain": gain, "defined": False}  # nothing to reach: training did not help passive
    active = {arm: s for arm, s in result.items() if arm not in ("passive", "random", "random_pairs")}
    if not active:
        return None
    shares = {arm: s["reach_passive"]["share_of_passive"] for arm, s in active.items()
              if s["reach_passive"]["share_of_passive"] is not None}
    if shares:
        best = min(shares, key=shares.get)
    else:
        best = max(active, key=lambda arm: (active[arm].get("minus_random") or {}).get("mean", -math.inf))
    versus = result[best].get("minus_random")
    return {"passive_gain": gain, "defined": True, "best_arm": best, "share_of_passive": shares.get(best),
            "at_most_a_third": best in shares and shares[best] <= 1 / 3,
            "beats_random_beyond_interval": bool(versus and versus["low"] is not None and versus["low"] > 0)}


# --- output --------------------------------------------------------------------------------------


def print_table(pool: str, summary: dict) -> None:
    print(f"\n{pool} pool")
    print(f"{'arm':>20} {'labels':>6} {'tokens':>7} {'held-out final':>15} {'exact final':>12} "
          f"{'labels to reach passive [95%]':>32} {'share':>6} {'minus random':>13} {'tied':>5} {'PVar':>5} {'s/run':>6} "
          f"{'choose %':>9}")
    defined = (summary["target"] or {}).get("defined", True)
    for arm, s in summary["arms"].items():
        reach = s.get("reach_passive") or {}
        if not defined:
            reach_text = "no target"
        elif reach.get("labels") is None:
            reach_text = f"not reached ({reach.get('reached_share', 0):.0%} of resamples)" if reach else "-"
        else:
            high = "not reached" if reach["high"] is None else f"{reach['high']:.0f}"
            low = "-" if reach["low"] is None else f"{reach['low']:.0f}"
            reach_text = f"{reach['labels']:.0f} [{low}, {high}]"
        share = "-" if reach.get("share_of_passive") is None or not defined else f"{reach['share_of_passive']:.2f}"
        versus = s.get("minus_random")
        print(f"{arm:>20} {s['labels'][-1]:>6.0f} {s['tokens'][-1]:>7.0f} {fmt(s['final']):>15} "
              f"{fmt(s['final_exact']) if s['final_exact'] else '-':>12} {reach_text:>32} {share:>6} "
              f"{fmt(versus, signed=True) if versus else '-':>13} "
              f"{'-' if s['tied_share_mean'] is None else format(s['tied_share_mean'], '.2f'):>5} "
              f"{'-' if s['labelled_pvar_mean'] is None else format(s['labelled_pvar_mean'], '.3f'):>5} "
              f"{s['wall_seconds_mean']:>6.1f} "
              f"{'-' if s.get('selection_share') is None else format(100 * s['selection_share'], '.1f'):>9}")
    for arm, s in summary["arms"].items():
        if s.get("minus_random_pairs"):
            print(f"{arm} minus random_pairs at equal labels: {fmt(s['minus_random_pairs'], signed=True)}")
    passive = summary["arms"].get("passive", {})
    if passive.get("match_passive"):
        print("labels to reach passive's held-out reward after each of its rounds (share of passive's labels):")
        for arm, s in summary["arms"].items():
            cells = [f"{m['passive_labels']:.0f}: " + ("not reached" if m["labels"] is None else
                     f"{m['labels']:.0f} ({m['share_of_passive']:.2f})") for m in s["match_passive"]]
            print(f"{arm:>20}  " + " | ".join(cells))
    target = summary["target"]
    if target is None:
        return
    if not target["defined"]:
        print(f"passive ends {target['passive_gain'] * 100:+.1f} points from the starting policy: no label target")
        return
    share = "not reached" if target["share_of_passive"] is None else f"{target['share_of_passive']:.2f}"
    print(f"best active arm: {target['best_arm']}, share of passive's labels to reach its final: {share} "
          f"(target <= 0.33: {'met' if target['at_most_a_third'] else 'missed'}); beats random beyond the "
          f"interval: {'yes' if target['beats_random_beyond_interval'] else 'no'}")


def draw_arms(axis, arms: dict, key: str, baseline: str, title: str, dashed: str = "", value: str = "reward",
              ylabel: str = "held-out reward") -> None:
    """Every arm's mean held-out reward (`value`, band `value`_low/_high) against cumulative `key` with its 95%
    band, and the baseline arm's final as a grey line; arms whose name starts with `dashed` are drawn dashed."""
    for arm, s in arms.items():
        style = "--" if dashed and arm.startswith(dashed) else "-"
        line, = axis.plot(s[key], s[value], style, marker="o", markersize=3, label=arm)
        if s[f"{value}_low"][0] is not None:
            axis.fill_between(s[key], s[f"{value}_low"], s[f"{value}_high"], color=line.get_color(), alpha=0.08)
    if baseline in arms:
        axis.axhline(arms[baseline][value][-1], color="grey", linestyle="--", linewidth=0.8)
    axis.set_xlabel("cumulative labels" if key == "labels" else "cumulative generated tokens")
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.grid(alpha=0.3)


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pools = list(report["pools"])
    figure, axes = plt.subplots(2, len(pools), figsize=(6.5 * len(pools), 9), squeeze=False)
    for column, pool in enumerate(pools):
        title = f"{pool} pool ({len(report['settings']['seeds'])} seeds, mean and 95% interval)"
        for row, key in enumerate(("labels", "tokens")):
            # Dashed for the dynamic filters: at its default target dynamic_filter's curve is random's.
            draw_arms(axes[row][column], report["pools"][pool]["arms"], key, "passive", title, dashed="dynamic_filter")
        axes[0][column].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


# --- main ----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--pools", nargs="+", default=list(POOLS), choices=list(POOLS))
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--rounds", type=int, default=4, help="passive's rounds (the configs' 4)")
    parser.add_argument("--active-rounds", type=int, help="rounds of the other arms (default: 2 x --rounds)")
    parser.add_argument("--labels", type=int, help="labels a round of the active arms (default: a quarter of passive's)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "label_efficiency.json"))
    parser.add_argument("--runs-dir", help="keep the run folders here (default: a temporary folder)")
    parser.add_argument("--merge", action="store_true", help="keep the other arms' runs already in --out")
    parser.add_argument("overrides", nargs="*", help="extra key=value overrides for every arm")
    args = parser.parse_args()
    args.active_rounds = args.active_rounds or 2 * args.rounds

    started = time.perf_counter()
    from local_arms import LocalArms  # torch, transformers, Ray's modules and the project: paid once
    from policies.query import registered_queries

    arms = LocalArms(POOLS[args.pools[0]])
    startup = time.perf_counter() - started
    print(f"start-up (imports, task, model, generator): {startup:.1f}s", flush=True)
    missing = [arm for arm in args.arms if ARMS[arm] not in registered_queries()]
    if missing:
        print(f"not registered in this checkout, skipped: {missing}")
    arm_names = [arm for arm in args.arms if arm not in missing]

    pools = {pool: pool_info(pool) for pool in POOLS}
    labels = {pool: args.labels or pools[pool]["passive_labels_per_round"] // 4 for pool in args.pools}
    if len(set(labels.values())) > 1:
        raise SystemExit(f"the pools' default budgets differ ({labels}): pass --labels")
    args.labels = next(iter(labels.values()))

    settings = {"seeds": args.seeds, "rounds": args.rounds, "active_rounds": args.active_rounds,
                "labels_per_round": args.labels, "shared_overrides": SHARED, "overrides": args.overrides}
    out = Path(args.out)
    runs: list[dict] = []
    if args.merge and out.exists():
        previous = json.loads(out.read_text())
        if previous["settings"] != settings:
            raise SystemExit(f"--merge: {out} has settings {previous['settings']}, not {settings}")
        runs = [r for r in previous["runs"] if r["arm"] not in arm_names or r["pool"] not in args.pools]
    with tempfile.TemporaryDirectory(prefix="activedpo-label-efficiency-") as tmp:
        runs += run_arms(arms, Path(args.runs_dir or tmp), args.seeds, {pool: pools[pool] for pool in args.pools},
                         arm_names, lambda arm, seed, info: arm_overrides(arm, seed, info, args))

    measured_on = machine()
    report = {"command": measured_on["command"], "machine": measured_on, "startup_seconds": startup,
              "settings": settings, "pools": {}, "runs": runs}
    for pool in sorted({r["pool"] for r in runs}, key=list(POOLS).index):
        report["pools"][pool] = {**pools[pool], **headline([r for r in runs if r["pool"] == pool])}
        print_table(pool, report["pools"][pool])
    write_results(report, out, plot)


if __name__ == "__main__":
    main()
