"""Every random sub-stream of a run, derived by name from `run.seed` in this one place.

A run draws from several independent streams: the generators' sampling of each round (and of each
refill batch), the query selector's and the selection policy's choices, the held-out evaluation's
samples and DID's. Each is named by a `Stream`, and `sampling_seed` / `stream_rng` derive it from the run's
seed, the round and the batch. Tests and benchmarks that must reproduce one of the driver's draws ask
these functions, never repeat the arithmetic.

The derivations are the ones the driver has always used, so runs and published benchmark results keep
their numbers: the constants below only keep the streams apart (primes far from each other and from any
round index a run reaches).
"""

from __future__ import annotations

import enum

import numpy as np


class Stream(enum.StrEnum):
    """The named random streams of a run."""

    GENERATE = "generate"    # a round's rollouts (per round and refill batch): a sampling seed
    EVAL = "eval"            # held-out samples, the same every round so rounds compare like for like
    DID = "did"              # DID's samples of the policy on held-out prompts
    QUERY = "query"          # the query selector's rng (per round and refill batch)
    SELECT = "select"        # the selection policy's rng (per round)


# Sampling seeds: run.seed + offset (eval, did), or run.seed * GENERATE_MULTIPLIER + round + REFILL_STRIDE * batch.
_OFFSETS = {Stream.EVAL: 7919, Stream.DID: 104729}
GENERATE_MULTIPLIER = 1_000_003
REFILL_STRIDE = 100_003
# numpy rngs: SeedSequence entropy [run.seed, round, tag] (+ [batch] for a refill batch's query).
_RNG_TAGS = {Stream.QUERY: 29, Stream.SELECT: 17}


def sampling_seed(run_seed: int, stream: Stream, round_index: int = 0, batch: int = 0) -> int:
    """The generators' sampling seed of `stream` (GENERATE, EVAL or DID)."""
    if stream == Stream.GENERATE:
        return run_seed * GENERATE_MULTIPLIER + round_index + REFILL_STRIDE * batch
    if stream in _OFFSETS:
        return run_seed + _OFFSETS[stream]
    raise ValueError(f"stream {stream!r} is an rng stream: use stream_rng")


def stream_rng(run_seed: int, stream: Stream, round_index: int, batch: int = 0) -> np.random.Generator:
    """A numpy Generator for `stream` (QUERY or SELECT) in round `round_index` (and refill `batch`)."""
    if stream not in _RNG_TAGS:
        raise ValueError(f"stream {stream!r} is a sampling stream: use sampling_seed")
    entropy = [run_seed, round_index, _RNG_TAGS[stream]]
    if batch:  # batch 0 keeps the entropy rounds had before refills existed
        entropy.append(batch)
    return np.random.default_rng(entropy)
