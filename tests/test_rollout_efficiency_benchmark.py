"""The rollout-efficiency benchmark's arms (benchmarks/rollout_efficiency.py) resolve to what its docstring says:
one arm per pool and scheduler, compared with the pool's uniform at equal generated tokens."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))  # the benchmarks import each other as scripts do

import rollout_efficiency as bench  # noqa: E402
from harness.arms import available  # noqa: E402


def test_every_scheduler_runs_on_every_pool_against_that_pools_uniform():
    from cluster.config_loading import load_config

    assert list(bench.ARMS) == [f"{pool}-{s}" for pool in bench.POOLS for s in bench.SCHEDULERS]
    assert available(bench.ARMS.values(), bench.SHARED) == list(bench.ARMS.values())
    for name, arm in bench.ARMS.items():
        pool = arm.tags[0]
        assert arm.baseline == (None if name.endswith("-uniform") else f"{pool}-uniform")
        assert arm.axes == ("generated_tokens",) and arm.config == bench.POOLS[pool][0]
        config = load_config(arm.config_path, arm.overrides_for(0, bench.SHARED))
        roles = {spec.name: spec.role for spec in config.scoring.rewards}
        labeller = bench.POOLS[pool][1]
        assert roles[labeller] == "label" and roles["builtin_task_exact"] in ("label", "eval")
        # Only the arm that chooses labels by the proxy scores it (and pays for it).
        assert ("builtin_task_proxy" in roles) == (bench.scheduler_of(name) == "history_pvar")
    pvar = load_config(bench.ARMS["natural-history_pvar"].config_path, bench.ARMS["natural-history_pvar"].overrides_for(0))
    passive_labels = pvar.data.prompts_per_round * pvar.generation.samples_per_prompt
    assert pvar.labelling.labels_per_round == passive_labels // 4  # a quarter of passive's labels
    lean = load_config(bench.ARMS["realistic-history_nn_lean"].config_path,
                       bench.ARMS["realistic-history_nn_lean"].overrides_for(0))
    assert lean.data.prompts_per_round == 40 and lean.data.scheduler.kind == "history"


def test_scheduling_means_average_what_the_scheduler_did():
    runs = [{"scheduling": [{"skipped": 2, "audit_judged": 4, "audit_informative": 1}, None]},
            {"scheduling": [{"skipped": 4, "audit_judged": 0, "audit_informative": 0}]}]
    means = bench.scheduling_means(runs)
    assert means["skipped"] == 3.0 and means["audit_judged"] == 2.0 and means["tied_share"] is None
