"""Shared fixtures: one real local Ray cluster for the whole session (starting one costs ~6 s)."""

from __future__ import annotations

import os

import pytest

# Loopback-only ports and no telemetry; token auth is off only for these local test clusters.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def ray_cluster():
    """A new real local Ray cluster with 4 logical CPUs; address="local" never joins a leftover one."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=4, include_dashboard=False, namespace="activedpo-tests", log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def restore_torch_threads():
    """An in-process Generator sets torch's thread count for the whole test process: give it back after."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
