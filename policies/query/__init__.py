"""Query selection: which of a round's responses the labellers see. Pure numpy/pyarrow, no Ray, no torch.

A query selector is registered by name (`@register_query("random")`), declares its own options
(`Options`, what `labelling.query: {kind: random, ...}` may set) and is built from them and the run's
context (`make_query(name, settings, **options)`); `selector.select(rollouts, max_responses, rng, probe=None)` returns a
boolean mask over the rollouts' rows, True for the responses to label. `rollouts` holds every generated
response with the proxy rewards' columns (role `proxy`) already scored; `probe` is the round's
`ModelProbe` (implicit reward, embeddings), free to ask like the proxies. Importing this package
registers the built-in selectors: `passive` and `random` (selectors.py), `pvar_proxy` and `pvar_implicit`
(ranked.py), `dynamic_filter` (dynamic_filter.py), `ensemble` (ensemble.py),
`pvar_learned` (learned.py).

Labels come in whole prompt groups (`take_groups` in policies/query/groups.py), so labelled responses
form pairs; docs/labels.md states the rule.
"""

from policies.query.base import (
    QuerySelector,
    QuerySettings,
    make_query,
    query_options,
    register_query,
    registered_queries,
)
from policies.query.groups import prompt_groups, take_groups

# Imported for their registration side effect.
from policies.query import dynamic_filter, ensemble, learned, ranked, selectors  # noqa: E402,F401  isort: skip

__all__ = ["QuerySelector", "QuerySettings", "make_query", "prompt_groups", "query_options",
           "register_query", "registered_queries", "take_groups"]
