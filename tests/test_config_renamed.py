"""Every config key that moved stops a run with its new name (cluster/config/renamed.py): in a YAML file and on
the command line, through the real CLI with exit code 2 and no traceback; and the new key is a key the config
really has, so the message never sends a user to a key that fails in turn."""

from __future__ import annotations

import pytest
import yaml

from actors.contracts import InputError
from cli_helpers import QUICKSTART, run_cli
from cluster.config import RunConfig
from cluster.config.renamed import RENAMED, replacement
from cluster.config_loading import load_config

# A value each moved key accepts in its new place: what a user who follows the message would write.
NEW_VALUES = {"labelling.query": "random", "labelling.query.responses_per_group": 2, "labelling.query.heads": 4,
              "labelling.query.hidden": 8, "labelling.query.anchor": 0.5, "labelling.query.rule": "thompson",
              "labelling.query.refit_every": 2, "labelling.query.hashed_features": 512,
              "reporting.progress": "lines", "reporting.wandb_project": None, "reporting.wandb_entity": None,
              "selection.policy.pvar_source": "reward", "selection.policy.pvar_rewards": ["reward"],
              "selection.policy.pvar_ensemble": "mean_variance", "selection.policy.pvar_mode": "threshold",
              "selection.policy.pair_builder": "max_random", "selection.policy.depth_pair_builder": "max_min",
              "selection.policy.allocation": "uniform", "selection.policy.within_prompt": "sample",
              "data.scheduler.neighbour_source": "ngrams", "data.scheduler.pool_bounds": [0.5, 1.0],
              "data.scheduler.pool_weights": [1.0, 1.0], "probe.embedding": "policy",
              "probe.gradient_modules": "last_block", "generation.backend.python": None,
              "labelling.labels_per_round": 8, "selection.policy.pvar_threshold": 0.1, "data.scheduler.p_start": 0.5}
# The kind that reads each option group, set beside the option when the test follows a message.
KIND_OF = {"selection.policy.bottom_fraction": "bottom_pvar", "selection.policy.pairs_per_prompt": "bpo",
           "selection.policy.depth_pair_builder": "bpo", "selection.policy.depth_clusters": "bpo",
           "selection.policy.allocation": "bpo", "selection.policy.within_prompt": "bpo",
           "data.scheduler.pool_bounds": "pools", "data.scheduler.pool_weights": "pools",
           "data.scheduler.p_start": "history",
           "generation.backend.block_size": "vllm"}
QUERY_KINDS = {"labelling.query.responses_per_group": "random", "labelling.query.heads": "ensemble",
               "labelling.query.hidden": "ensemble", "labelling.query.anchor": "ensemble",
               "labelling.query.rule": "ensemble", "labelling.query.refit_every": "ensemble",
               "labelling.query.hashed_features": "ensemble"}


def old_overrides(old: str) -> list[str]:
    """An override that sets `old` (a key, or a key beneath an old section)."""
    new = RENAMED[old]
    leaf = old if old not in {"selection.query_options", "selection.query_options.ensemble", "selection.features",
                              "data.scheduling", "generation.vllm"} else f"{old}.{_first_leaf(new)}"
    return [f"{leaf}=1"]


def _first_leaf(section: str) -> str:
    return {"labelling.query": "heads", "probe": "projection_dim", "data.scheduler": "p_start",
            "generation.backend": "block_size"}[section]


@pytest.mark.parametrize("old", sorted(RENAMED))
def test_every_old_key_fails_with_its_new_name(old):
    overrides = old_overrides(old)
    key = overrides[0].split("=")[0]
    with pytest.raises(InputError) as error:
        load_config(None, overrides)
    assert f"'{key}' is now '{replacement(key)}'" in str(error.value)


@pytest.mark.parametrize("old", sorted(RENAMED))
def test_every_new_name_is_a_key_of_the_config(old):
    key = old_overrides(old)[0].split("=")[0]
    new = replacement(key)
    value = NEW_VALUES.get(new, 1 if not new.endswith(("tie_tolerance", "anchor", "tau", "fraction")) else 0.5)
    kind = KIND_OF.get(new) or QUERY_KINDS.get(new)
    section = new.rsplit(".", 1)[0]
    overrides = [f"{section}.kind={kind}"] if kind and section.endswith(("policy", "query", "scheduler", "backend")) \
        else []
    if new == "labelling.labels_per_round":  # a budget needs a selector that chooses
        overrides = ["labelling.query=random"]
    if new == "labelling.query":
        overrides = [f"labelling.query={value}"]
    else:
        overrides.append(f"{new}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}")
    config = load_config(None, overrides)  # no InputError: the new key exists and takes the value
    assert isinstance(config, RunConfig)


def test_a_config_file_with_old_keys_lists_each_with_its_new_name(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump({"selection": {"query": "pvar_proxy", "labels_per_round": 64, "top_fraction": 0.3},
                                    "data": {"scheduling": {"tie_tolerance": 0.1, "p_start": 0.4}}}))
    with pytest.raises(InputError) as error:
        load_config(path)
    message = str(error.value)
    assert str(path) in message
    for old, new in [("selection.query", "labelling.query"), ("selection.labels_per_round", "labelling.labels_per_round"),
                     ("selection.top_fraction", "selection.policy.top_fraction"),
                     ("data.scheduling.tie_tolerance", "labelling.tie_tolerance"),
                     ("data.scheduling.p_start", "data.scheduler.p_start")]:
        assert f"'{old}' is now '{new}'" in message


def test_the_pvar_bottom_mode_says_it_is_a_policy_of_its_own():
    with pytest.raises(InputError, match="bottom_pvar"):
        load_config(None, ["selection.pvar_mode=bottom"])


@pytest.mark.slow
def test_an_old_key_on_the_command_line_exits_2_without_a_traceback(tmp_path):
    result = run_cli("run", str(QUICKSTART), "--run-dir", str(tmp_path), "selection.query=random",
                     "data.refill_batches=1")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "'selection.query' is now 'labelling.query'" in result.stderr
    assert "'data.refill_batches' is now 'labelling.refill_batches'" in result.stderr
