"""The columns a built-in pool with classes adds to its prompts (cluster/data/builtin_pool.py draws the
pool; docs/builtin-task.md). The round's tied share per class is `Metric.ZERO_VARIANCE_BY_CLASS` in
actors/contracts.py.

Apart from the pool itself (which brings torch), so that the round's diagnostics can name the class
column cheaply. Pure: pyarrow only.
"""

from __future__ import annotations

import pyarrow as pa

# A prompt's class in a non-natural built-in pool: solved, unsolved or mixed (POOL_CLASSES in
# builtin_pool.py), and the starting policy's exact pass rate that put it there.
POOL_CLASS_COLUMN, PASS_RATE_COLUMN = "pool_class", "start_pass_rate"
# The columns such a pool adds to the training split (the natural split keeps its schema); they
# travel with every prompt into the rollouts, scored and selected tables.
POOL_FIELDS = (pa.field(POOL_CLASS_COLUMN, pa.string()), pa.field(PASS_RATE_COLUMN, pa.float64()))
