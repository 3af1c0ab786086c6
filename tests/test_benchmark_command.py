"""`activedpo benchmark` through the real CLI: official IFEval / IFBench on a model without training (a real
embedded Ray cluster and generator actor, the built-in tiny model, a few prompts), and its bad input."""

from __future__ import annotations

import json
from pathlib import Path

from cli_helpers import QUICKSTART, run_cli
from test_cli_errors import assert_clean_failure


def test_benchmark_writes_both_benchmarks_for_the_configs_model(tmp_path):
    out = tmp_path / "official.json"
    result = run_cli("benchmark", str(QUICKSTART), "--out", str(out), "eval.benchmarks.num_prompts=3",
                     "eval.benchmarks.max_new_tokens=8", "ray.include_dashboard=false")
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(out.read_text())
    assert set(record["benchmarks"]) == {"ifeval-official", "ifbench"}
    for name, of in (("ifeval-official", 541), ("ifbench", 294)):
        result_ = record["benchmarks"][name]
        assert result_["settings"] == {**result_["settings"], "prompts": 3, "of": of, "decoding": "greedy",
                                       "max_new_tokens": 8, "samples_per_prompt": 1}
        assert result_["responses"] == 3 and 0 <= result_["truncated"] <= 3
        assert f"{name}: average" in result.stdout
    assert (Path(record["model"]) / "config.json").is_file() and record["seconds"] > 0


def test_a_model_folder_that_is_not_one_is_named(tmp_path):
    result = run_cli("benchmark", str(QUICKSTART), "--model", str(tmp_path / "nowhere"))
    assert_clean_failure(result, "--model", str(tmp_path / "nowhere"), "config.json")


def test_an_unknown_benchmark_name_is_named():
    result = run_cli("benchmark", str(QUICKSTART), "eval.benchmarks.names=[ifeval]")
    assert_clean_failure(result, "eval.benchmarks.names", "ifeval-official")


def _adapter(folder: Path, base: str) -> Path:
    """A LoRA adapter (random B, so it changes the model) on `base`, saved as a LoRA run's checkpoint is."""
    import torch

    from actors.kernels.hf_model import load_model
    from actors.kernels.lora import add_adapters, adapter_state_dict
    from actors.lora_options import LoraSection

    model = add_adapters(load_model(base, "float32", False), LoraSection(rank=2, alpha=4))
    torch.manual_seed(0)
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.1)
    model.save_pretrained(folder, state_dict=adapter_state_dict(model))
    return folder


def test_a_lora_checkpoint_is_benchmarked_on_its_base_with_the_adapter(tmp_path):
    from cluster.config_loading import load_config
    from cluster.run_setup import resolve_model

    base = resolve_model(load_config(QUICKSTART), sources=())[0]
    adapter = _adapter(tmp_path / "checkpoint", base)
    out = tmp_path / "official.json"
    result = run_cli("benchmark", str(QUICKSTART), "--model", str(adapter), "--out", str(out),
                     "eval.benchmarks.names=[ifbench]", "eval.benchmarks.num_prompts=2",
                     "eval.benchmarks.max_new_tokens=4", "ray.include_dashboard=false")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(out.read_text())
    assert (record["model"], record["base_model"]) == (str(adapter), base)
    assert record["benchmarks"]["ifbench"]["responses"] == 2


def test_an_adapter_whose_base_is_gone_is_named(tmp_path):
    import json as json_

    folder = tmp_path / "checkpoint"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json_.dumps({"r": 2, "lora_alpha": 4, "target_modules": ["q_proj"],
                                                             "base_model_name_or_path": str(tmp_path / "gone")}))
    result = run_cli("benchmark", str(QUICKSTART), "--model", str(folder))
    assert_clean_failure(result, "--model", str(tmp_path / "gone"), "merged/")
