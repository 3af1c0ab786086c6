"""BPO breadth compression (docs/bpo.md): a few representative prompts instead of many.

Prompt embeddings (all-MiniLM-L6-v2 or the policy's hidden states, computed by the caller) are L2
normalised and clustered with k-means into as many clusters as prompts are to be kept; each
cluster's representative is the member nearest its centroid. Documented choices (the paper leaves
them open):
- cosine geometry: embeddings are normalised first, so k-means groups by direction, the way
  sentence embeddings are compared;
- one representative per cluster, the member nearest the centroid (a medoid-like pick that is
  always a real prompt);
- only prompts that can make at least one pair are clustered: a prompt whose responses all tie
  would spend a representative slot on nothing. Every prompt still gets a cluster id (the nearest
  centroid) so reports can show the clustering of the whole round.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans


@dataclass(frozen=True)
class BreadthClusters:
    representatives: np.ndarray  # int64 prompt codes, one per cluster, ordered by cluster id
    cluster: np.ndarray  # int64 per prompt: nearest centroid


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; all-zero rows stay zero (they carry no direction)."""
    vectors = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def kmeans(points: np.ndarray, n_clusters: int, seed: int) -> KMeans:
    """scikit-learn k-means with a fixed seed and several restarts (a bad start costs a whole round)."""
    return KMeans(n_clusters=n_clusters, n_init=4, random_state=seed).fit(points)


def breadth_representatives(embeddings: np.ndarray, eligible: np.ndarray, n_keep: int, seed: int) -> BreadthClusters:
    """Cluster the eligible prompts into `n_keep` groups and pick one representative of each.

    embeddings: (n_prompts, dim); eligible: bool per prompt. With fewer distinct eligible prompts
    than `n_keep`, every distinct one is kept.
    """
    embeddings = l2_normalise(embeddings)
    candidates = np.flatnonzero(eligible)
    if candidates.size == 0 or n_keep <= 0:
        return BreadthClusters(np.zeros(0, np.int64), np.full(len(embeddings), -1, np.int64))
    points = embeddings[candidates]
    n_clusters = min(n_keep, len(np.unique(points.round(12), axis=0)))
    model = kmeans(points, n_clusters, seed)
    distance = np.linalg.norm(points - model.cluster_centers_[model.labels_], axis=1)
    # Nearest member of each cluster: sort by (cluster, distance) and take each cluster's first row.
    order = np.lexsort((distance, model.labels_))
    firsts = np.flatnonzero(np.r_[True, np.diff(model.labels_[order]) != 0])
    representatives = candidates[order[firsts]]
    return BreadthClusters(representatives.astype(np.int64), model.predict(embeddings).astype(np.int64))
