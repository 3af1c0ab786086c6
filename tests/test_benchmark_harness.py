"""The benchmark harness (benchmarks/harness/): its statistics, curves, break-even prices, merging and arms say
what they claim, and one small in-process run records what the label benchmark reads."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))  # the benchmarks import the harness as scripts do

from harness.arms import Arm, arm_table, available, missing, reward, rewards_override  # noqa: E402
from harness.curves import Comparison, break_even, compare, first_reach, fmt_break_even, value_at  # noqa: E402
from harness.results import merge_runs, previous_report, summarise_arms  # noqa: E402
from harness.stats import fmt_difference, mde, mean_interval, paired_difference, reach  # noqa: E402

PRICES = {"label": 1.0, "proxy_call": 0.05, "generated_kilotokens": 0.2, "learner_kilotokens": 0.2}


def run(arm: str, seed: int, heldout: list[float], labels: list[float], proxy: list[float] | None = None,
        generated: list[float] | None = None, learner: list[float] | None = None, total: list[float] | None = None,
        prices: dict | None = None) -> dict:
    """A run record as runs.read_run writes it, with the costs given (the rest zero) and total_cost priced."""
    zero = [0.0] * len(heldout)
    prices = prices or PRICES
    proxy, generated, learner = proxy or zero, generated or zero, learner or zero
    if total is None:
        total = [l * prices["label"] + p * prices["proxy_call"] + g / 1000 * prices["generated_kilotokens"]
                 + t / 1000 * prices["learner_kilotokens"] for l, p, g, t in zip(labels, proxy, generated, learner)]
    rounds = len(heldout) - 1
    return {"arm": arm, "seed": seed, "round": list(range(rounds + 1)), "heldout": heldout, "labels": labels,
            "proxy_scores": proxy, "generated_tokens": generated, "learner_tokens": learner, "total_cost": total,
            "prompts_rolled_out": [64 * i for i in range(rounds + 1)], "pairs_trained": [8] * rounds,
            "tied_share": [0.1] * rounds, "selector": [None] * rounds, "proxy_quality": [None] * rounds,
            "wall_seconds": 1.0, "prices": prices, "machine": {"commit": "abc", "cpus": 2}}


# --- stats ---------------------------------------------------------------------------------------


def test_mean_interval_is_student_t():
    stats = mean_interval([1.0, 2.0, 3.0])
    # t_{0.975, 2} = 4.302653 by hand from tables; sd 1, n 3.
    assert stats["mean"] == 2.0 and stats["half_width"] == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    assert mean_interval([0.4])["half_width"] is None


def test_mde_by_hand_and_by_its_power():
    # (t_{0.975,4} + t_{0.80,4}) / sqrt(5) = (2.776445 + 0.940965) / 2.236068, from tables.
    assert mde(1.0, 5) == pytest.approx((2.776445 + 0.940965) / math.sqrt(5), rel=1e-5)
    assert mde(2.0, 5) == pytest.approx(2 * mde(1.0, 5))
    assert mde(1.0, 1) is None
    from scipy.stats import nct
    from scipy.stats import t as student_t

    for n in (5, 10, 20):  # the exact power of the two-sided paired t-test at a true effect of one MDE: 0.8
        critical, shift = student_t.ppf(0.975, n - 1), mde(1.0, n) * math.sqrt(n)
        power = 1 - nct.cdf(critical, n - 1, shift) + nct.cdf(-critical, n - 1, shift)
        assert power == pytest.approx(0.8, abs=0.012), n  # 1.96 + 0.84 in place of t's would give 0.56 at n 5
    from scipy.stats import ttest_1samp

    rng = np.random.default_rng(7)  # and by simulation: paired differences of sd 1.3 around one MDE
    n, sd = 8, 1.3
    samples = rng.normal(mde(sd, n), sd, size=(4000, n))
    rejected = np.mean(ttest_1samp(samples, 0.0, axis=1).pvalue < 0.05)
    assert rejected == pytest.approx(0.8, abs=0.025)


def test_paired_difference_pairs_by_seed():
    a = {0: 0.5, 1: 0.6, 2: 0.7, 9: 1.0}
    b = {0: 0.4, 1: 0.4, 2: 0.4, 5: 0.0}
    d = paired_difference(a, b)
    assert d["seeds"] == [0, 1, 2] and d["n"] == 3
    assert d["mean"] == pytest.approx(0.2) and d["sd"] == pytest.approx(0.1)
    assert d["mde"] == pytest.approx(mde(0.1, 3)) and d["low"] < d["mean"] < d["high"]
    assert paired_difference({0: 1.0}, {1: 1.0}) is None


def test_fmt_difference_names_the_mde_beside_every_null():
    null = paired_difference({0: 0.01, 1: 0.03, 2: -0.01}, {0: 0.0, 1: 0.0, 2: 0.0})
    assert null["low"] < 0 < null["high"]
    assert fmt_difference(null) == f"+1.0 ± {null['half_width'] * 100:.1f} (MDE {null['mde'] * 100:.1f})"
    shown = paired_difference({0: 0.05, 1: 0.06, 2: 0.04}, {0: 0.0, 1: 0.0, 2: 0.0})
    assert "MDE" not in fmt_difference(shown) and fmt_difference(shown).startswith("+5.0 ± ")
    assert fmt_difference(None) == "-"


def test_reach_bootstraps_paired_seeds_and_says_when_there_is_nothing_to_reach():
    passive = [run("passive", s, [0.2, 0.3, 0.4 + 0.01 * s], [0, 100, 200]) for s in range(3)]  # target 0.41
    fast = [run("fast", s, [0.2, 0.35, 0.5 + 0.01 * s], [0, 25, 50]) for s in range(3)]
    slow = [run("slow", s, [0.2, 0.21, 0.22], [0, 25, 50]) for s in range(3)]
    found = reach(fast, passive, "labels", rng=np.random.default_rng(0), resamples=300)
    # Mean curve 0.2, 0.35, 0.51: 0.41 is reached 0.06 / 0.16 of the way from 25 to 50 labels.
    assert found["at"] == pytest.approx(25 + 25 * 0.06 / 0.16) and found["defined"]
    assert found["share_of_baseline"] == pytest.approx(found["at"] / 200) and found["reached_share"] == 1.0
    assert found["low"] <= found["at"] <= found["high"]
    never = reach(slow, passive, "labels", resamples=300)
    assert never["at"] is None and never["reached_share"] == 0.0 and never["high"] is None
    falling = [run("passive", s, [0.3, 0.29, 0.28], [0, 100, 200]) for s in range(3)]
    assert reach(fast, falling, "labels", resamples=50)["defined"] is False


# --- curves --------------------------------------------------------------------------------------


def test_value_at_and_first_reach_interpolate():
    assert value_at([0, 10, 20], [0.0, 1.0, 3.0], 15) == pytest.approx(2.0)
    assert value_at([0, 10], [0.0, 1.0], 11) is None
    assert first_reach([0, 10, 20], [0.1, 0.3, 0.5], 0.4) == pytest.approx(15.0)
    assert first_reach([0, 10, 20], [0.1, 0.5, 0.2], 0.45) == pytest.approx(8.75)  # the first crossing counts
    assert first_reach([0, 10], [0.1, 0.2], 0.3) is None


def test_compare_at_equal_labels_total_cost_and_rounds():
    # The arm labels 64 a round with 256 proxy calls; the other labels 256 a round. Two seeds, same shape.
    arm = [run("arm", s, [0.5, 0.6, 0.7 + 0.01 * s], [0, 64, 128], proxy=[0, 256, 512]) for s in (0, 1)]
    other = [run("other", s, [0.5, 0.55, 0.6], [0, 256, 512]) for s in (0, 1)]
    labels = compare(arm, other, "labels")
    # At 128 labels (the arm's final) the other's curve is half way to its first round: 0.525.
    assert labels["at"] == 128 and labels["mean"] == pytest.approx(0.705 - 0.525) and labels["n"] == 2
    cost = compare(arm, other, "total_cost")
    # The arm's final total cost: 128 + 512 x 0.05 = 153.6; the other's curve there: 0.5 + 0.05 x 153.6 / 256.
    assert cost["at"] == pytest.approx(153.6)
    assert cost["mean"] == pytest.approx(0.705 - (0.5 + 0.05 * 153.6 / 256))
    rounds = compare(arm, other, "round")
    assert rounds["at"] == 2 and rounds["mean"] == pytest.approx(0.705 - 0.6)
    assert compare(arm, [run("other", 7, [0.5, 0.5, 0.5], [0, 1, 2])], "labels") is None  # no shared seed


def test_break_even_price_on_a_hand_made_curve():
    arm = [run("arm", s, [0.2, 0.3, 0.5], [0, 64, 128], proxy=[0, 256, 512], generated=[0, 1000, 2000],
               learner=[0, 2000, 4000]) for s in (0, 1)]
    passive = [run("passive", s, [0.2, 0.35, 0.4], [0, 256, 512], total=[0, 260, 520]) for s in (0, 1)]
    result = break_even(arm, passive, PRICES)
    # Passive's final 0.4 is reached half way through the arm's second round: 96 labels, 384 proxy calls,
    # 1,500 generated and 3,000 learner tokens; without the proxy that costs 96 + 0.3 + 0.6 = 96.9, so the
    # proxy calls may cost (520 - 96.9) / 384 each before the arm spends passive's 520.
    assert result["at_round"] == pytest.approx(1.5)
    assert result["amounts"] == pytest.approx({"labels": 96, "proxy_scores": 384, "generated_tokens": 1500,
                                               "learner_tokens": 3000})
    assert result["other_cost"] == pytest.approx(96.9)
    assert result["price"] == pytest.approx((520 - 96.9) / 384) and result["saves_at_prices"] is True
    assert fmt_break_even(result) == f"{(520 - 96.9) / 384:.3f}"
    # At those amounts and that price the arm's cost is passive's: the definition, checked by pricing it.
    from cluster.config.evaluation import Prices
    from cluster.costs import total_cost

    priced = Prices(**{**PRICES, "proxy_call": result["price"]})
    assert total_cost(result["amounts"], priced) == pytest.approx(520)
    # Identical seeds: the bootstrap interval is the point.
    boot = break_even(arm, passive, PRICES, resamples=50)
    assert boot["low"] == pytest.approx(boot["price"]) and boot["high"] == pytest.approx(boot["price"])
    # An arm whose labeller is the proxy prices its labels instead (proxy_axis "labels").
    labels_axis = break_even(arm, passive, {**PRICES, "label": 0.05}, proxy_axis="labels")
    assert labels_axis["price"] == pytest.approx((520 - (384 * 0.05 + 0.3 + 0.6)) / 96)
    never = break_even([run("arm", s, [0.2, 0.25, 0.3], [0, 64, 128], proxy=[0, 256, 512]) for s in (0, 1)],
                       passive, PRICES)
    assert never["price"] is None and never["reason"] == "not reached" and fmt_break_even(never) == "not reached"
    free = break_even([run("arm", s, [0.2, 0.3, 0.5], [0, 64, 128]) for s in (0, 1)], passive, PRICES)
    assert free["price"] is None and free["reason"] == "saves at any price"


def test_at_equal_reward_prices_the_baselines_way_to_the_arms_result():
    from harness.curves import at_equal_reward

    arm = [run("arm", s, [0.2, 0.3, 0.35], [0, 64, 128], proxy=[0, 256, 512], generated=[0, 1000, 2000],
               learner=[0, 2000, 4000]) for s in (0, 1)]
    passive = [run("passive", s, [0.2, 0.3, 0.4], [0, 256, 512], total=[0, 260, 520]) for s in (0, 1)]
    found = at_equal_reward(arm, passive, PRICES)
    # The arm ends at 0.35, which passive's curve reaches half way through its second round: 390 of cost.
    arm_cost = 128 + 512 * PRICES["proxy_call"] + 2 * PRICES["generated_kilotokens"] + 4 * PRICES["learner_kilotokens"]
    assert found["reward"] == pytest.approx(0.35) and found["baseline_cost"] == pytest.approx(390)
    assert found["arm_cost"] == pytest.approx(arm_cost) and found["ratio"] == pytest.approx(arm_cost / 390)
    assert found["price"] == pytest.approx((390 - (arm_cost - 512 * PRICES["proxy_call"])) / 512)
    better = at_equal_reward(arm, [run("passive", s, [0.2, 0.25, 0.3], [0, 256, 512], total=[0, 260, 520])
                                   for s in (0, 1)], PRICES)
    assert better["baseline_cost"] is None and better["price"] is None  # passive never gets there


def test_summarise_arms_compares_each_arm_with_its_baseline_and_the_table():
    arms = arm_table(Arm("passive", ["labelling.query=passive"]),
                     Arm("random", ["labelling.query=random"], baseline="passive", axes=("labels", "total_cost")))
    runs = [run("passive", s, [0.2, 0.35, 0.4], [0, 256, 512]) for s in range(3)]
    runs += [run("random", s, [0.2, 0.3, 0.38 + 0.01 * s], [0, 64, 128]) for s in range(3)]
    summary = summarise_arms(arms, runs, [Comparison("passive", "round")], resamples=50)
    assert "reach" not in summary["passive"] and summary["passive"]["versus"] == {}
    random = summary["random"]
    assert set(random["reach"]) == {"labels", "total_cost"} and random["baseline"] == "passive"
    assert random["versus"]["passive@round"]["mean"] == pytest.approx(0.39 - 0.4)
    assert random["final"]["mean"] == pytest.approx(0.39) and random["totals"]["labels"]["mean"] == 128
    assert random["break_even"]["reason"] == "not reached"


# --- results -------------------------------------------------------------------------------------


def test_merge_keeps_each_runs_machine_and_refuses_other_settings(tmp_path):
    arm = Arm("random", ["labelling.query=random"])
    earlier = [{**run("random", s, [0.2, 0.3], [0, 64]), "machine": {"commit": "old", "cpus": 2}} for s in (0, 1)]
    out = tmp_path / "report.json"
    settings = {"rounds": 1, "seed_block": "explicit"}
    out.write_text(json.dumps({"command": "python x.py", "settings": settings, "arms": {"random": arm.to_json()},
                               "runs": earlier}))
    previous = previous_report(out, settings, [arm])
    now = [{**run("random", s, [0.2, 0.4], [0, 64]), "machine": {"commit": "new", "cpus": 16}} for s in (1, 2)]
    merged = merge_runs(previous["runs"], now)
    assert [(r["seed"], r["machine"]["commit"]) for r in merged] == [(0, "old"), (1, "new"), (2, "new")]
    assert merged[0] == earlier[0]  # untouched, its machine included
    with pytest.raises(SystemExit, match="rounds"):
        previous_report(out, {**settings, "rounds": 2}, [arm])
    with pytest.raises(SystemExit, match="arm random's definition"):
        previous_report(out, settings, [arm.variant("random", ["labelling.labels_per_round=32"])])
    assert previous_report(tmp_path / "none.json", settings, [arm]) is None


# --- arms ----------------------------------------------------------------------------------------


def test_combined_runs_take_disjoint_parts_of_one_block_with_the_same_settings(tmp_path):
    from harness.results import combined_runs

    settings = {"pool": "natural", "rounds": 8, "seed_block": "fresh"}
    parts = []
    for name, seeds in (("a", [1, 2]), ("b", [3])):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"command": f"python x --seeds {seeds}", "settings": {**settings, "seed_block": "explicit"},
                                    "runs": [{"arm": "random", "seed": s, "machine": {"commit": name}} for s in seeds]}))
        parts.append(path)
    runs, commands = combined_runs(parts, settings, [1, 2, 3])
    assert [r["machine"]["commit"] for r in runs] == ["a", "a", "b"] and len(commands) == 2
    with pytest.raises(SystemExit, match="cover seeds"):
        combined_runs(parts, settings, [1, 2, 3, 4])
    with pytest.raises(SystemExit, match="share an"):
        combined_runs([parts[0], parts[0]], settings, [1, 2])
    with pytest.raises(SystemExit, match="settings"):
        combined_runs(parts, {**settings, "rounds": 4}, [1, 2, 3])


def test_arm_overrides_compose_as_data():
    base = Arm("pairs", ["a=1", "b=2"], baseline="passive", prices={"label": 0.05})
    assert base.overrides_for(3, shared=["s=0"], after=["u=9"]) == ["s=0", "a=1", "b=2", "reporting.prices.label=0.05",
                                                                     "u=9", "run.seed=3"]
    derived = base.variant("pairs_more", ["b=3"], signal="more")
    assert derived.overrides == ("a=1", "b=2", "b=3") and derived.baseline == "passive" and derived.signal == "more"
    assert Arm(**base.to_json()) == base and hash(base) == hash(Arm(**base.to_json()))
    with pytest.raises(ValueError, match="declared twice"):
        arm_table(base, base)
    with pytest.raises(ValueError, match="baselines not in the table"):
        arm_table(base)
    with pytest.raises(ValueError, match="key=value"):
        Arm("bad", ["no equals sign"])
    assert rewards_override(reward("builtin_task"), [reward("p", role="proxy")]) == (
        'scoring.rewards=[{"kind": "programmatic", "name": "builtin_task"}, '
        '{"kind": "programmatic", "name": "p", "role": "proxy"}]')


def test_label_arms_resolve_to_what_they_say():
    """What an arm is comes from its overrides: the resolved configs, not the names, differ as described."""
    from label_efficiency import ARMS, DEFAULT_ARMS, SHARED

    from cluster.config_loading import load_config

    def config(name: str, arm: Arm | None = None):
        arm = arm or ARMS[name]
        return load_config(arm.config_path, arm.overrides_for(0, SHARED))

    def roles(cfg) -> dict:
        return {spec.name: spec.role for spec in cfg.scoring.rewards}

    assert set(DEFAULT_ARMS) <= set(ARMS)
    assert roles(config("passive")) == {"builtin_task": "label", "builtin_task_exact": "eval"}  # no proxy charged
    pairs = config("pvar_proxy_pairs")
    assert pairs.labelling.query.kind == "pvar_proxy" and pairs.labelling.query.responses_per_group == 2
    assert pairs.labelling.labels_per_round == 64 and roles(pairs)["builtin_task_proxy"] == "proxy"
    assert config("passive_sized").data.prompts_per_round == config("passive").selection.pair_budget == 32
    assert roles(config("pvar_proxy_pairs_noise060"))["builtin_task_proxy_noise060"] == "proxy"
    implicit = config("pvar_implicit_pairs")
    assert implicit.labelling.query.kind == "pvar_implicit" and "builtin_task_proxy" not in roles(implicit)
    zero = config("zero_label")
    assert roles(zero) == {"builtin_task_proxy": "label", "builtin_task": "eval", "builtin_task_exact": "eval"}
    assert zero.reporting.prices.label == zero.reporting.prices.proxy_call == 0.05
    assert ARMS["zero_label"].heldout == "builtin_task" and ARMS["zero_label"].proxy_axis == "labels"
    # A renamed arm is the same arm: nothing is read from the name.
    assert config("x", ARMS["random_pairs"].variant("renamed")) == config("random_pairs")
    assert all(arm.baseline == "passive" for name, arm in ARMS.items() if name != "passive")


def test_arms_this_checkout_cannot_run_are_skipped_with_a_reason():
    unknown_query = Arm("q", ["labelling.query.kind=not_a_selector"])
    unknown_reward = Arm("r", [rewards_override(reward("builtin_task"), reward("not_a_reward", role="proxy"))])
    assert "not_a_selector" in missing(unknown_query) and "not_a_reward" in missing(unknown_reward)
    notes = []
    assert available([Arm("passive", []), unknown_query], log=notes.append) == [Arm("passive", [])]
    assert len(notes) == 1 and "skipped q" in notes[0]


# --- one real run --------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_small_in_process_benchmark_records_costs_proxy_calls_and_machine(tmp_path, restore_torch_threads):
    """1 seed x 2 arms x 1 round of the quickstart shrunk (16 prompts, 16 held-out prompts): every record carries
    the priced costs, no proxy call for passive (it scores no proxy), proxy calls and their quality for
    pvar_proxy_pairs, the exact-match curve and the machine it ran on; the report keeps them."""
    from cli_helpers import SMALL_RUN
    from label_efficiency import ARMS, COMPARISONS, SHARED

    from harness.results import build_report, write
    from harness.runs import make_runner, run_arms

    shared = [*SHARED, *SMALL_RUN, "run.rounds=1"]
    arms = [ARMS["passive"], ARMS["pvar_proxy_pairs"]]
    runner = make_runner("local", arms[0].config_path, shared)
    runs = run_arms(arms, [0], tmp_path / "runs", runner, shared, columns={"exact": "builtin_task_exact"})
    passive, pairs = runs
    for record in runs:
        assert len(record["total_cost"]) == 2 and record["total_cost"][1] > 0 and record["round"] == [0, 1]
        assert record["exact"] is not None and len(record["heldout"]) == 2
        assert record["machine"]["cpus"] and "torch" in record["machine"]["libraries"] and "commit" in record["machine"]
    assert passive["labels"][1] == 16 * 4 and passive["proxy_scores"][1] == 0
    assert pairs["proxy_scores"][1] == 16 * 4 and pairs["labels"][1] == 32  # 16 groups of 2 under a 64-label budget
    assert pairs["total_cost"][1] > pairs["labels"][1]  # the proxy calls and tokens are priced in
    assert pairs["proxy_quality"][0]["signal"]["pairs"] > 0
    summary = summarise_arms({arm.name: arm for arm in arms}, runs, COMPARISONS, resamples=20)
    out = tmp_path / "report.json"
    write(build_report({"rounds": 1}, {arm.name: arm for arm in arms}, runs, summary), out)
    written = json.loads(out.read_text())
    assert [r["machine"]["cpus"] for r in written["runs"]] == [passive["machine"]["cpus"]] * 2
    assert written["summary"]["pvar_proxy_pairs"]["totals"]["proxy_scores"]["mean"] == 64
