"""Arms as data: everything an arm is lives in its `Arm` record, never in its name.

An arm is a config file plus `key=value` overrides (the query selector, the budget, the rewards scored, prices),
the arm it is compared with (`baseline`) and on which cost axes (`axes`), which curve is its held-out result
(`heldout`), and two sentences for the reader: what it does (`description`) and what its selection signal knows
(`signal`). A run of the arm at seed S is `load_config(arm.config, arm.overrides_for(S, shared, after))`.

`reward(name, role)` and `rewards_override(*entries)` write `scoring.rewards` overrides; `missing(arm)` says what
this checkout lacks to run an arm (an unregistered query selector or reward), so a benchmark skips it with a note
instead of failing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from harness.curves import AXES, PRICED

REPO = Path(__file__).resolve().parents[2]
HELDOUT_REWARD = "heldout_reward_mean"  # metrics.json's held-out reward: the label-role rewards' combination
QUICKSTART = "configs/quickstart.yaml"


def reward(name: str, role: str | None = None, kind: str = "programmatic", **fields) -> dict:
    """One `scoring.rewards` entry: {kind, name[, role], ...}; role None is the config's default (label)."""
    return {"kind": kind, "name": name, **({"role": role} if role else {}), **fields}


def rewards_override(*entries: dict | Iterable[dict]) -> str:
    """`scoring.rewards=[...]` from reward entries (or one list of them); JSON is YAML flow syntax."""
    flat = [e for entry in entries for e in ([entry] if isinstance(entry, dict) else entry)]
    return "scoring.rewards=" + json.dumps(flat)


@dataclass(frozen=True)
class Arm:
    """One arm of a benchmark (module docstring). Lists given for `overrides`/`axes` and a dict for `prices`
    are stored as tuples, so an Arm is hashable and compares by value."""

    name: str
    overrides: tuple[str, ...] = ()
    config: str = QUICKSTART  # relative to the repository root, or absolute
    baseline: str | None = None  # the arm it is measured against (reach, difference, break-even price)
    axes: tuple[str, ...] = ("labels",)  # cost axes (curves.AXES) of that comparison
    description: str = ""
    signal: str = ""  # what its selection signal knows, e.g. "the label plus uniform noise ±0.3, free"
    heldout: str = HELDOUT_REWARD  # or an eval-role reward's name/column (metrics.json heldout_columns)
    prices: tuple[tuple[str, float], ...] = ()  # reporting.prices fields this arm sets, e.g. {"label": 0.05}
    proxy_axis: str = "proxy_scores"  # the counter the proxy price applies to ("labels": the labeller is a proxy)
    tags: tuple[str, ...] = field(default=())  # free-form groups a script may select by (e.g. "noise_sweep")

    def __post_init__(self) -> None:
        object.__setattr__(self, "overrides", tuple(self.overrides))
        object.__setattr__(self, "axes", tuple(self.axes))
        object.__setattr__(self, "tags", tuple(self.tags))
        prices = self.prices.items() if isinstance(self.prices, Mapping) else self.prices
        object.__setattr__(self, "prices", tuple(sorted((str(k), float(v)) for k, v in prices)))
        bad = [item for item in self.overrides if "=" not in item]
        if bad:
            raise ValueError(f"arm {self.name}: overrides must be key=value, not {bad}")
        if unknown := [axis for axis in self.axes if axis not in AXES]:
            raise ValueError(f"arm {self.name}: axes {unknown} are not among {list(AXES)}")
        if self.proxy_axis not in PRICED:
            raise ValueError(f"arm {self.name}: proxy_axis {self.proxy_axis!r} is not a priced counter {list(PRICED)}")
        if self.baseline == self.name:
            raise ValueError(f"arm {self.name} cannot be its own baseline")

    @property
    def config_path(self) -> Path:
        path = Path(self.config)
        return path if path.is_absolute() else REPO / path

    def price_overrides(self) -> list[str]:
        return [f"reporting.prices.{key}={value}" for key, value in self.prices]

    def overrides_for(self, seed: int | None = None, shared: Iterable[str] = (), after: Iterable[str] = ()) -> list[str]:
        """A run's overrides: `shared` (every arm's), the arm's own, its prices, `after` (the user's), run.seed."""
        seeded = [] if seed is None else [f"run.seed={seed}"]
        return [*shared, *self.overrides, *self.price_overrides(), *after, *seeded]

    def variant(self, name: str, add: Iterable[str] = (), **changes) -> "Arm":
        """This arm renamed, with `add` appended to its overrides (a later key wins) and any field changed."""
        return replace(self, name=name, overrides=(*self.overrides, *add), **changes)

    def to_json(self) -> dict:
        data = asdict(self)
        data.update(overrides=list(self.overrides), axes=list(self.axes), tags=list(self.tags),
                    prices=dict(self.prices))
        return data


def arm_table(*arms: Arm) -> dict[str, Arm]:
    """{name: arm} in the given order; refuses repeated names and baselines that are not in the table."""
    table: dict[str, Arm] = {}
    for arm in arms:
        if arm.name in table:
            raise ValueError(f"arm {arm.name} is declared twice")
        table[arm.name] = arm
    if orphans := sorted(f"{a.name} -> {a.baseline}" for a in arms if a.baseline and a.baseline not in table):
        raise ValueError(f"baselines not in the table: {orphans}")
    return table


def query_kind(overrides: Iterable[str]) -> str | None:
    """The query selector the overrides set last (`labelling.query=X` or `labelling.query.kind=X`), if any."""
    kind = None
    for item in overrides:
        key, _, value = item.partition("=")
        if key in ("labelling.query", "labelling.query.kind") and value.strip() and value.strip()[0] not in "{[":
            kind = value.strip()
    return kind


def missing(arm: Arm, shared: Iterable[str] = ()) -> str | None:
    """What this checkout lacks to run `arm`: its query selector or a programmatic reward not registered
    (another change adds it); None when it can run. Any other config error is the arm's and is raised."""
    from actors.rewards.programmatic import registered_rewards
    from cluster.config_loading import load_config
    from policies.query import registered_queries

    overrides = arm.overrides_for(0, shared)
    kind = query_kind(overrides)
    if kind is not None and kind not in registered_queries():
        return f"query selector {kind!r} is not registered"
    config = load_config(arm.config_path, overrides)
    known = set(registered_rewards())
    unknown = [spec.name for spec in config.scoring.rewards if spec.kind == "programmatic" and spec.name not in known]
    return f"reward {', '.join(unknown)} not registered" if unknown else None


def available(arms: Iterable[Arm], shared: Iterable[str] = (), log=print) -> list[Arm]:
    """The arms this checkout can run; each one it cannot is named with the reason (`log`)."""
    runnable = []
    for arm in arms:
        reason = missing(arm, list(shared))
        if reason:
            log(f"skipped {arm.name}: {reason} in this checkout")
        else:
            runnable.append(arm)
    return runnable
