"""Ray bring-up: an embedded local cluster on loopback, or joining an existing cluster.

Secure defaults: every port of an embedded cluster binds 127.0.0.1 and Ray's token authentication
stays as Ray configures it (on by default in Ray 2.60) unless the user turned it off in the
environment. Usage statistics are not sent.
"""

from __future__ import annotations

import os

from cluster import ray_console
from cluster.config import RaySection

# Without this Ray 2.60 binds the machine's external address even when told 127.0.0.1.
_LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def start_ray(cfg: RaySection) -> bool:
    """Connect to Ray per the config; returns True when this call started an embedded cluster."""
    for key, value in _LOOPBACK_ENV.items():
        os.environ.setdefault(key, value)
    import ray

    if ray.is_initialized():
        return False
    env_vars = {k: os.environ[k] for k in ("TOKENIZERS_PARALLELISM", "OMP_NUM_THREADS") if k in os.environ}
    env_vars.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Every actor loads a model; a progress bar per actor per load drowns the phase lines.
    env_vars.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    # Busy-waiting OpenMP threads collapse when actors share cores: measured 3-10x slower steps with
    # 2 torch threads on a loaded 2-core machine, and no loss with PASSIVE on an idle one.
    env_vars.setdefault("OMP_WAIT_POLICY", os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
    runtime_env = {"env_vars": env_vars}
    # Inside `ray job submit` the job's cluster is found from the environment.
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, namespace=cfg.namespace, runtime_env=runtime_env, log_to_driver=True)
        ray_console.install()
        return False
    if not cfg.include_dashboard:
        # Ray Train's state actor reconciles runs through the State API, which the dashboard serves:
        # without it every poll fails and prints a urllib traceback into the run's output.
        env_vars.setdefault("RAY_TRAIN_ENABLE_STATE_ACTOR_RECONCILIATION", "0")
    # address="local": always a new cluster, never one that happens to run on this machine already.
    ray.init(
        address="local",
        num_cpus=cfg.num_cpus,
        include_dashboard=cfg.include_dashboard,
        dashboard_host=cfg.dashboard_host,
        dashboard_port=cfg.dashboard_port,
        namespace=cfg.namespace,
        runtime_env=runtime_env,
        log_to_driver=True,
    )
    ray_console.install()  # Ray's internal actors' lines stay in Ray's log files (cluster/ray_console.py)
    return True
