"""benchmarks/ifeval_arms.py without a model: its budgets follow from the config as its docstring says, its arms
differ only where they should, it reads IFEval's accuracies as the held-out curve, and its comparisons and MDE
seeds are the harness's on that curve."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PRICES = {"label": 1.0, "proxy_call": 0.05, "generated_kilotokens": 0.2, "learner_kilotokens": 0.2}
sys.path.insert(0, str(REPO / "benchmarks"))  # the benchmarks import the harness as scripts do

from harness.results import summarise_arms  # noqa: E402
from harness.stats import mde  # noqa: E402
from ifeval_arms import (  # noqa: E402
    COMPARISONS,
    CONFIG,
    DEFAULT_ARMS,
    LOCAL,
    TARGET_MDE,
    TINY,
    add_accuracy_comparisons,
    arms_for,
    ifeval_curves,
    seeds_for,
    sizes,
    table_rows,
)


def setting(arm, key: str) -> str | None:
    """The last value the arm's overrides give `key`."""
    values = [item.partition("=")[2] for item in arm.overrides if item.partition("=")[0] == key]
    return values[-1] if values else None


def test_budgets_follow_what_passive_trains():
    from policies.candidates import kept_prompt_count

    local = sizes(CONFIG, LOCAL)
    assert (local["prompts_per_round"], local["kept_prompts"], local["labels_per_round"]) == (16, 8, 32)
    assert sizes(CONFIG, [])["labels_per_round"] == 64 and sizes(CONFIG, [])["kept_prompts"] == 16
    for scale in ([], LOCAL, [*LOCAL, *TINY]):
        size = sizes(CONFIG, scale)
        assert kept_prompt_count(size["lean_prompts"], size["lean_top_fraction"]) == size["kept_prompts"]
        arms = arms_for(size)
        # passive_sized labels every response of as many prompts as passive trains: the label arms' budget.
        sized = arms["passive_sized"]
        assert int(setting(sized, "data.prompts_per_round")) * size["samples_per_prompt"] == size["labels_per_round"]
        budgets = {setting(arms[name], "labelling.labels_per_round") for name in DEFAULT_ARMS if name != "passive_sized"}
        assert budgets == {str(size["labels_per_round"])}


def test_default_arms_differ_only_in_their_selection():
    arms = arms_for(sizes(CONFIG, LOCAL))
    assert set(DEFAULT_ARMS) <= set(arms)
    for name in DEFAULT_ARMS:
        arm = arms[name]
        assert setting(arm, "scoring.rewards") is None, f"{name} scores a proxy it does not use"
        assert setting(arm, "selection.policy.top_fraction") == "1.0"
        assert (setting(arm, "labelling.query.responses_per_group") == "2") == name.endswith("_pairs")
        assert not arm.tags
    assert setting(arms["pvar_implicit_pairs"], "labelling.query.initial") == "random"
    assert setting(arms["pvar_learned_pairs"], "labelling.query.kind") == "pvar_learned"
    for name in ("pvar_proxy", "pvar_proxy_pairs", "passive_proxy"):  # the proxy arms score it, as a proxy
        rewards = json.loads(setting(arms[name], "scoring.rewards"))
        assert [(r["name"], r.get("role")) for r in rewards] == [("ifeval", None), ("ifeval_proxy", "proxy")]
    assert {a.baseline for n, a in arms.items() if n in DEFAULT_ARMS} == {"passive", "passive_sized"}


def test_the_heldout_curve_is_instruction_level_loose(tmp_path):
    accuracies = lambda loose: {"prompt_strict": loose / 4, "instruction_strict": loose / 2,  # noqa: E731
                                "prompt_loose": loose / 3, "instruction_loose": loose}
    rows = [{"round": 0, "heldout_before_ifeval": accuracies(0.3), "heldout_ifeval": accuracies(0.4)},
            {"round": 1, "heldout_ifeval": accuracies(0.5)}]
    for row, scheduling in zip(rows, ({"skipped": 2, "examined": 16}, None)):
        (tmp_path / f"round_{row['round']:04d}").mkdir()
        (tmp_path / f"round_{row['round']:04d}" / "metrics.json").write_text(json.dumps({"scheduling": scheduling}))
    curves = ifeval_curves(tmp_path, {"rounds": rows})
    assert curves["heldout"] == curves["instruction_loose"] == [0.3, 0.4, 0.5]
    assert curves["prompt_strict"] == pytest.approx([0.075, 0.1, 0.125])
    assert curves["scheduling"] == [{"skipped": 2}, {}]
    with pytest.raises(SystemExit, match="heldout_before_ifeval"):
        ifeval_curves(tmp_path, {"rounds": rows[1:]})


def test_seeds_for_the_target_mde():
    for sd in (0.02, 0.055, 0.1):
        n = seeds_for(sd)
        assert mde(sd, n) <= TARGET_MDE < mde(sd, n - 1) if n > 2 else mde(sd, n) <= TARGET_MDE
    assert seeds_for(None) is None and seeds_for(1.0, most=10) is None
    assert 15 <= seeds_for(0.055) <= 19  # the earlier label arms' spread: about 17 seeds


def run(arm: str, seed: int, labels: list[float], loose: list[float]) -> dict:
    rounds = len(loose) - 1
    zero = [0.0] * len(loose)
    return {"arm": arm, "seed": seed, "round": list(range(rounds + 1)), "heldout": loose, "instruction_loose": loose,
            "prompt_strict": [v / 2 for v in loose], "labels": labels, "proxy_scores": zero, "generated_tokens": zero,
            "learner_tokens": zero, "total_cost": labels, "prompts_rolled_out": [16 * i for i in range(rounds + 1)],
            "pairs_trained": [8] * rounds, "tied_share": [0.4] * rounds, "selector": [None] * rounds,
            "proxy_quality": [None] * rounds, "wall_seconds": 1.0, "prices": PRICES}


def test_comparisons_on_both_accuracies():
    arms = arms_for(sizes(CONFIG, LOCAL))
    runs = []
    for s in range(3):
        runs += [run("passive_sized", s, [0, 32, 64], [0.3, 0.33, 0.36 + 0.01 * s]),
                 run("random", s, [0, 32, 64], [0.3, 0.32, 0.34 + 0.02 * s]),
                 run("random_pairs", s, [0, 32, 64], [0.3, 0.35, 0.40 - 0.01 * s])]
    summary = summarise_arms(arms, runs, COMPARISONS, extra=("prompt_strict",), resamples=20)
    add_accuracy_comparisons(summary, runs)
    pairs = summary["random_pairs"]
    assert pairs["versus"]["random@labels"]["mean"] == pytest.approx(0.39 - 0.36)
    assert pairs["versus_prompt_strict"]["random@labels"]["mean"] == pytest.approx((0.39 - 0.36) / 2)
    assert pairs["instruction_loose_change"]["mean"] == pytest.approx(0.09)
    assert pairs["seeds_for_target_mde"]["random@labels"] == seeds_for(pairs["versus"]["random@labels"]["sd"])
    assert "passive@round" not in pairs["versus"]  # passive did not run
    rows = table_rows(summary, tuple(c for c in COMPARISONS if c.against in summary))
    assert [r["arm"] for r in rows] == ["passive_sized", "random", "random_pairs"]
    assert rows[2]["minus random at equal labels"].startswith("+3.0")
    assert rows[2]["baseline"] == "passive_sized"
