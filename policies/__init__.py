"""Selection policies and pair building: pure numpy/pyarrow code, no Ray, no torch.

`make_policy(options)` builds a registered policy from the Options the config validated (or from a name
and keyword options: `make_policy(name, top_fraction=0.3)`); `policy.select(scored, pair_budget, rng,
probe=None)` returns a `Selection` (pairs for the learner, per-prompt statistics for the report).
Importing this package registers every built-in policy (pvar, bottom_pvar, random, full, bpo,
uniform_balance) and pair builder.
"""

from policies.base import Selection, SelectionPolicy
from policies.registry import make_policy, policy_options, register_policy, registered_policies

# Imported for their registration side effect.
from policies import baselines, bpo, pvar_policy, random_policy  # noqa: E402,F401  isort: skip

__all__ = ["Selection", "SelectionPolicy", "make_policy", "policy_options", "register_policy", "registered_policies"]
