"""Config loading: YAML + dotted overrides, strict keys with suggestions, resolved dump round-trips."""

from __future__ import annotations

import pytest
import yaml

from actors.contracts import InputError
from cluster.config import RunConfig
from cluster.config_loading import dump_config, load_config, parse_override


def write(tmp_path, text: str):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_yaml_and_overrides_are_applied_in_order(tmp_path):
    path = write(tmp_path, "learner:\n  beta: 0.3\nrun:\n  rounds: 2\n")
    config = load_config(path, ["learner.beta=0.5", "generation.temperature=0.7", "run.name=exp1"])
    assert config.learner.beta == 0.5
    assert config.run.rounds == 2
    assert config.generation.temperature == 0.7
    assert config.run.name == "exp1"


def test_unknown_key_names_the_key_and_suggests_the_nearest(tmp_path):
    path = write(tmp_path, "learner:\n  lerning_rate: 0.1\n")
    with pytest.raises(InputError) as info:
        load_config(path)
    message = str(info.value)
    assert "learner.lerning_rate" in message
    assert "did you mean 'learning_rate'" in message
    assert str(path) in message


def test_unknown_section_and_override_are_rejected():
    with pytest.raises(InputError, match="did you mean 'generation'"):
        load_config(None, ["generaton.temperature=0.5"])


def test_unknown_key_inside_list_of_rewards_is_reported_with_index():
    with pytest.raises(InputError, match=r"scoring.rewards\[0\].wieght.*did you mean 'weight'"):
        load_config(None, ["scoring.rewards=[{kind: programmatic, name: x, wieght: 2}]"])


def test_bad_value_names_key_and_value():
    with pytest.raises(InputError, match=r"learner.beta.*-1"):
        load_config(None, ["learner.beta=-1"])


def test_selection_policy_and_pvar_columns_are_checked_before_the_run():
    with pytest.raises(InputError, match=r"selection.policy.*'pvr'.*Did you mean 'pvar'"):
        load_config(None, ["selection.policy=pvr"])
    with pytest.raises(InputError, match=r"reward_judge.*scoring.rewards.*weight 0"):
        load_config(None, ["selection.pvar_rewards=[reward, reward_judge]"])
    # A selection-only reward: scored (weight 0 keeps it out of the training reward) and named for PVar.
    config = load_config(None, [
        "scoring.rewards=[{kind: programmatic, name: builtin_task}, {kind: programmatic, name: judge, weight: 0}]",
        "selection.pvar_rewards=[reward_judge]",
    ])
    assert config.selection.pvar_rewards == ["reward_judge"]


def test_malformed_override_and_missing_file(tmp_path):
    with pytest.raises(InputError, match="section.key=value"):
        load_config(None, ["learner.beta"])
    with pytest.raises(InputError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = write(tmp_path, "learner: [1, 2\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_config(bad)


def test_parse_override_types():
    assert parse_override("a.b=3") == (["a", "b"], 3)
    assert parse_override("a.b=true") == (["a", "b"], True)
    assert parse_override("a.b=null") == (["a", "b"], None)
    assert parse_override("a.b=hello") == (["a", "b"], "hello")


def test_dump_round_trips_exactly(tmp_path):
    config = load_config(None, ["learner.beta=0.25", "run.rounds=7"], run_dir=str(tmp_path / "r"))
    again = RunConfig.model_validate(yaml.safe_load(dump_config(config)))
    assert again == config
    assert again.run.run_dir == str(tmp_path / "r")


def test_every_field_is_documented():
    def walk(model):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
            annotation = field.annotation
            if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
                walk(annotation)

    walk(RunConfig)


def test_shipped_configs_validate():
    from pathlib import Path

    configs = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))
    assert configs, "no configs shipped"
    for path in configs:
        load_config(path)


def test_config_reference_page_matches_the_schema():
    """docs/config-reference.md is generated from the schema; the assert says how to refresh it."""
    from cluster.config_reference import PAGE, REFRESH, page

    assert PAGE.read_text() == page(), f"docs/config-reference.md differs from the schema: run {REFRESH}"
