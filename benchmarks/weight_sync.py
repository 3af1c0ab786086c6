"""Weight sync of SmolLM2-135M-Instruct per transport, against loading the round's checkpoint file into the model.

    python benchmarks/weight_sync.py [--generators 2] [--repeats 3] [--dtype float32]
                                     [--out benchmarks/results/weight_sync.json]

What one round's sync costs on a real embedded Ray cluster: a publisher actor holds the policy (the
learner's rank 0 stand-in: same model, same `publish` call as actors/learner_worker.py) and N real
generator actors (actors/generator.py) receive it. A round's sync time is the publisher's `publish`
plus the driver's `load_weights` call on every generator at once (the round loop's sync phase),
until each generator's model holds the new weights. Each transport is measured on the same actors,
after one warm-up round; the median of the repeats is reported. Writing the round's safetensors
checkpoint is not counted: the learner writes it every round whatever the transport (the run
folder keeps every round), and its time is reported on its own.

The baseline, "disk reload", is the least a system without weight sync must do: each generator
reads the round's safetensors file(s) (`safetensors.torch.load_file`) and `load_state_dict`s them
into its live model, and nothing else: no tokenizer, no generation config, no `from_pretrained`
(`reload_state_dict`; its two phases are timed apart in each generator, `read_seconds` and
`load_state_dict_seconds`). The checkpoint was just written, so its files are in the page cache:
`disk_reload` is the baseline at its most favourable (no disk read at all), `disk_reload_cold` the
same after the files were dropped from the page cache (posix_fadvise DONTNEED, before the timing
starts), as on a node that did not write them. What each arm counts is in the JSON (`counted`,
`not_counted`) and under the table.
Target: the object-store transport at least 3x faster than the disk reload. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import ray
import safetensors.torch
import torch

from cli_runs import machine

from actors.generator import Generator
from actors.kernels.hf_sampling import load_causal_lm
from actors.settings import GeneratorSettings, ModelSection
from actors.weight_sync import make_transport, transport_options
from cluster.config import RaySection
from cluster.tools.prepare import ensure_smollm2

REPO = Path(__file__).resolve().parents[1]
TARGET_SPEEDUP = 3.0
TRANSPORTS = ("object_store", "broadcast", "disk")
BASELINES = ("disk_reload", "disk_reload_cold")
# What each arm's `seconds` counts: from the driver's first call until every generator holds the new weights.
_SYNC = ("the publisher's `publish` ({name}: the state dict handed to the transport) + every generator's "
         "`load_weights` at once (receive the weights, load them into the live model)")
_RELOAD = ("every generator at once: `safetensors.torch.load_file` of the round's checkpoint file(s){cache} + "
           "`model.load_state_dict` into the live model; nothing else (no tokenizer, no generation config, "
           "no from_pretrained)")
COUNTED = {
    **{name: _SYNC.format(name=name) for name in TRANSPORTS},
    "disk_reload": _RELOAD.format(cache=" (in the page cache: just written)"),
    "disk_reload_cold": _RELOAD.format(cache=" (dropped from the page cache before the timing)"),
}
NOT_COUNTED = ("writing the round's safetensors checkpoint (the learner writes it every round whatever the "
               "transport: `checkpoint_save_seconds`, each run's `save_seconds`); the baseline's page-cache eviction")


class Publisher:
    """Holds the policy like the learner's rank 0 and publishes a new version of it per call."""

    def __init__(self, model_path: str, dtype: str, receivers: int):
        torch.set_num_threads(1)
        lm = load_causal_lm(model_path, dtype, False)
        self.model, self.tokenizer = lm.model, lm.tokenizer
        self.receivers = receivers
        self.transports = {}

    def save(self, folder: str) -> float:
        started = time.perf_counter()
        self.model.save_pretrained(folder, safe_serialization=True)
        self.tokenizer.save_pretrained(folder)  # as the learner does: the folder is a loadable model
        return time.perf_counter() - started

    def publish(self, name: str, version: int, checkpoint_dir: str):
        """A new version, saved as the learner saves every round (timed apart), then published."""
        with torch.no_grad():
            next(self.model.parameters()).add_(1e-6)
        save_seconds = self.save(checkpoint_dir)
        if name not in self.transports:
            # The broadcast's own option (the other transports take none): how long it waits for the generators.
            waits = {"timeout_s": 120} if "timeout_s" in transport_options(name).model_fields else {}
            self.transports[name] = make_transport(name, receivers=self.receivers, **waits)
        started = time.perf_counter()
        handle = self.transports[name].publish(self.model.state_dict(), version, checkpoint_dir)
        return handle, time.perf_counter() - started, save_seconds

    @torch.no_grad()
    def first_weight_sum(self) -> float:
        return float(next(self.model.parameters()).double().sum())


def evict_from_page_cache(folder: str) -> None:
    """Drop a folder's files from the OS page cache, so the next read comes from the disk itself."""
    for path in Path(folder).iterdir():
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())  # only clean pages can be dropped
                os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def reload_state_dict(model: torch.nn.Module, folder: str) -> dict[str, float]:
    """The baseline, all of it: read the folder's safetensors file(s) with `safetensors.torch.load_file`,
    then `model.load_state_dict` them into the live model (copied into its parameters in place).
    A tied output head is saved once, as the input embedding; any other missing or unknown name is an error."""
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no .safetensors files in checkpoint folder {folder}")
    started = time.perf_counter()
    state: dict[str, torch.Tensor] = {}
    for path in files:
        state.update(safetensors.torch.load_file(str(path)))
    read = time.perf_counter()
    missing, unexpected = model.load_state_dict(state, strict=False)
    loaded = time.perf_counter()
    tied = getattr(getattr(model, "config", None), "tie_word_embeddings", False)
    missing = [k for k in missing if not (tied and k.endswith("lm_head.weight"))]
    if missing or unexpected:
        raise RuntimeError(f"{folder} does not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return {"read_seconds": read - started, "load_state_dict_seconds": loaded - read}


class BenchGenerator(Generator):
    """A real generator actor plus the baseline: load the round's checkpoint file(s) into its live model."""

    def reload_from_disk(self, folder: str) -> dict[str, float]:
        return reload_state_dict(self._lm.model, folder)

    def evict(self, folder: str) -> None:
        evict_from_page_cache(folder)

    @torch.no_grad()
    def first_weight_sum(self) -> float:
        return float(next(self._lm.model.parameters()).double().sum())


def sync_round(name: str, publisher, generators, version: int, checkpoint: str) -> dict:
    if name.startswith("disk_reload"):
        _, _, save_seconds = ray.get(publisher.publish.remote("disk", version, checkpoint))
        if name == "disk_reload_cold":
            ray.get(generators[0].evict.remote(checkpoint))
        started = time.perf_counter()
        phases = ray.get([g.reload_from_disk.remote(checkpoint) for g in generators])
        return {"seconds": time.perf_counter() - started, "publish_seconds": 0.0, "save_seconds": save_seconds,
                "generator_phases": phases}
    started = time.perf_counter()
    handle, publish_seconds, save_seconds = ray.get(publisher.publish.remote(name, version, checkpoint))
    versions = ray.get([g.load_weights.remote(handle) for g in generators])
    assert versions == [version] * len(generators), versions
    # The save happened inside the timed call: take it out (every transport pays it alike).
    return {"seconds": time.perf_counter() - started - save_seconds, "publish_seconds": publish_seconds,
            "save_seconds": save_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generators", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--checkpoint-dir", default="/tmp/activedpo-weight-sync-bench")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "weight_sync.json"))
    args = parser.parse_args()

    from cluster.ray_runtime import start_ray

    model_dir = str(ensure_smollm2())
    start_ray(RaySection(num_cpus=args.generators + 2, include_dashboard=False))
    publisher = ray.remote(Publisher).options(num_cpus=1).remote(model_dir, args.dtype, args.generators)
    generators = [ray.remote(BenchGenerator).options(num_cpus=1).remote(GeneratorSettings(model_dir, ModelSection(dtype=args.dtype)))
                  for _ in range(args.generators)]  # fmt: skip
    checkpoint = os.path.join(args.checkpoint_dir, "checkpoint")
    os.makedirs(checkpoint, exist_ok=True)
    save_seconds = ray.get(publisher.save.remote(checkpoint))
    parameters = sum(p.numel() for p in load_causal_lm(model_dir, args.dtype, False).model.parameters())

    results, version = {}, 0
    try:
        for name in (*TRANSPORTS, *BASELINES):
            runs = []
            for repeat in range(args.repeats + 1):  # the first is a warm-up
                version += 1
                run = sync_round(name, publisher, generators, version, checkpoint)
                if repeat:
                    runs.append(run)
            # Every generator now holds exactly the publisher's latest weights.
            expected = ray.get(publisher.first_weight_sum.remote())
            assert all(abs(s - expected) < 1e-6 * abs(expected) + 1e-9
                       for s in ray.get([g.first_weight_sum.remote() for g in generators])), name  # fmt: skip
            results[name] = {
                "counted": COUNTED[name],
                "runs": runs,
                "median_seconds": statistics.median(r["seconds"] for r in runs),
                "median_publish_seconds": statistics.median(r["publish_seconds"] for r in runs),
            }
            if name in BASELINES:  # the slowest generator's phases per round, median over rounds
                for phase in ("read_seconds", "load_state_dict_seconds"):
                    results[name][f"median_{phase}"] = statistics.median(
                        max(p[phase] for p in r["generator_phases"]) for r in runs)
    finally:
        ray.shutdown()
    hot, cold = results["disk_reload"]["median_seconds"], results["disk_reload_cold"]["median_seconds"]
    for result in results.values():
        result["speedup_over_disk_reload"] = hot / result["median_seconds"]
        result["speedup_over_disk_reload_cold"] = cold / result["median_seconds"]

    size_mb = parameters * (4 if args.dtype == "float32" else 2) / 1e6
    print(f"SmolLM2-135M-Instruct ({parameters / 1e6:.1f}M parameters, {size_mb:.0f} MB in {args.dtype}) to "
          f"{args.generators} generator actors, median of {args.repeats}; checkpoint save (not counted) "
          f"{save_seconds:.2f} s")
    print(f"{'transport':>16} {'sync s/round':>13} {'of it publish':>14} {'x reload (cached)':>18} {'x reload (cold)':>16}")
    for name, r in results.items():
        print(f"{name:>16} {r['median_seconds']:>13.3f} {r['median_publish_seconds']:>14.3f} "
              f"{r['speedup_over_disk_reload']:>18.2f} {r['speedup_over_disk_reload_cold']:>16.2f}")
    for name in BASELINES:
        r = results[name]
        print(f"{name:>16} of it (slowest generator): load_file {r['median_read_seconds']:.3f} s, "
              f"load_state_dict {r['median_load_state_dict_seconds']:.3f} s")
    print("counted per round:")
    for name, counted in COUNTED.items():
        print(f"  {name}: {counted}")
    print(f"not counted: {NOT_COUNTED}")
    store = results["object_store"]
    print(f"target: object_store >= {TARGET_SPEEDUP:.0f}x faster than the disk reload (measured "
          f"{store['speedup_over_disk_reload']:.2f}x against the page-cached reload, "
          f"{store['speedup_over_disk_reload_cold']:.2f}x against the cold one)")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "model": "smollm2-135m-instruct",
        "parameters": parameters,
        "settings": vars(args),
        "machine": machine(),
        "checkpoint_save_seconds": save_seconds,
        "not_counted": NOT_COUNTED,
        "results": results,
        "target_speedup": TARGET_SPEEDUP,
    }, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
