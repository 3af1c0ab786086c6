"""Old name of cluster/remote_model_probe.py, kept while its last importers move (issue 24)."""

# TODO(issue 24): alias for cluster/round_loop.py and benchmarks/local_arms.py, removed when they move
# to cluster.remote_model_probe.
from cluster.remote_model_probe import FEATURES, Feature, RemoteModelProbe

__all__ = ["FEATURES", "Feature", "RemoteModelProbe"]
