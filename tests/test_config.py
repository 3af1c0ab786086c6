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


def test_an_option_beneath_a_plain_value_is_refused_and_beneath_a_choices_name_is_set(tmp_path):
    """A bare name takes options only where the key is a choice (`policy: bpo` means `{kind: bpo}`)."""
    with pytest.raises(InputError, match=r"data\.train\.path is not a section, cannot set data\.train\.path\.y"):
        load_config(None, ["data.train.path=x", "data.train.path.y=1"])
    config = load_config(None, ["selection.policy=bpo", "selection.policy.pairs_per_prompt=2"])
    assert (config.selection.policy.kind, config.selection.policy.pairs_per_prompt) == ("bpo", 2)
    config = load_config(write(tmp_path, "selection:\n  policy: pvar\n"), ["selection.policy.top_fraction=0.25"])
    assert (config.selection.policy.kind, config.selection.policy.top_fraction) == ("pvar", 0.25)


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
        load_config(None, ["selection.policy.pvar_rewards=[reward, reward_judge]"])
    # A selection-only reward: scored (weight 0 keeps it out of the training reward) and named for PVar.
    config = load_config(None, [
        "scoring.rewards=[{kind: programmatic, name: builtin_task}, {kind: programmatic, name: judge, weight: 0}]",
        "selection.policy.pvar_rewards=[reward_judge]",
    ])
    assert config.selection.policy.pvar_rewards == ("reward_judge",)


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


def test_the_backend_the_transport_and_the_learner_strategy_take_their_options_beside_the_kind():
    config = load_config(None, ["generation.backend=vllm", "generation.backend.block_size=64",
                                "weight_sync.transport=broadcast", "weight_sync.transport.timeout_s=90",
                                "learner.strategy=ddp"])
    assert (config.generation.backend.kind, config.generation.backend.block_size) == ("vllm", 64)
    assert (config.weight_sync.transport.kind, config.weight_sync.transport.timeout_s) == ("broadcast", 90)
    assert config.learner.strategy.kind == "ddp"
    # An option without a kind is the default kind's: 'auto' takes broadcast's options, since it may become it.
    defaults = load_config(None, ["weight_sync.transport.timeout_s=90"])
    assert (defaults.weight_sync.transport.kind, defaults.weight_sync.transport.timeout_s) == ("auto", 90)
    assert (defaults.generation.backend.kind, defaults.learner.strategy.kind) == ("hf", "ddp")


@pytest.mark.parametrize("overrides, key", [
    (["generation.backend=hf", "generation.backend.kv_cache_space_gib=2"], "generation.backend.kv_cache_space_gib"),
    (["weight_sync.transport=disk", "weight_sync.transport.timeout_s=60"], "weight_sync.transport.timeout_s"),
    (["weight_sync.transport=object_store", "weight_sync.transport.timeout_s=60"], "weight_sync.transport.timeout_s"),
    (["learner.strategy.bucket_mb=25"], "learner.strategy.bucket_mb"),
])
def test_an_option_of_another_kind_is_refused_naming_the_key(overrides, key):
    with pytest.raises(InputError, match=f"unknown key '{key}'"):
        load_config(None, overrides)


@pytest.mark.parametrize("override, nearest", [
    ("generation.backend=vlm", "vllm"), ("weight_sync.transport=brodcast", "broadcast"),
    ("learner.strategy=dpp", "ddp"), ("learner.strategy=deepspeed", None),
])
def test_an_unknown_kind_is_refused_naming_the_nearest(override, nearest):
    key, name = override.split("=")
    with pytest.raises(InputError, match=f"{key}: unknown .*'{name}'") as error:
        load_config(None, [override])
    if nearest:
        assert f"Did you mean '{nearest}'?" in str(error.value)


def test_a_config_file_with_the_old_vllm_and_timeout_keys_lists_each_with_its_new_name(tmp_path):
    """The keys beneath an old section of a YAML file (tests/test_config_renamed.py covers each on the
    command line)."""
    old = {"generation": {"backend": "vllm", "vllm": {"python": None, "block_size": None}},
           "weight_sync": {"transport": "broadcast", "timeout_s": 900}}
    with pytest.raises(InputError) as error:
        load_config(write(tmp_path, yaml.safe_dump(old)))
    message = str(error.value)
    for old_key, new_key in [("generation.vllm.python", "generation.backend.python"),
                             ("generation.vllm.block_size", "generation.backend.block_size"),
                             ("weight_sync.timeout_s", "weight_sync.transport.timeout_s")]:
        assert f"'{old_key}' is now '{new_key}'" in message
