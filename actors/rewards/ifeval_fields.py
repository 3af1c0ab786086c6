"""The names and columns of the `ifeval` reward (actors/rewards/ifeval.py; docs/ifeval.md): what a prompt
must carry for it, what it writes into the scored table, and the names inside its held-out numbers
(the metrics.json keys that hold them are `Metric.HELDOUT_IFEVAL` and `Metric.HELDOUT_BEFORE_IFEVAL`
in actors/contracts.py, with every other metrics key).

Apart from the reward itself, so that prompt loading, the round, the run store, the report and the
benchmarks can name these columns and keys without importing the checkers. Pure: pyarrow only.
"""

from __future__ import annotations

import pyarrow as pa

# What a prompt must carry for the ifeval reward, as in IFEval's own files: per prompt the
# instruction ids and one kwargs object per instruction. The built-in set (cluster/data/ifeval_prompts.py)
# writes `kwargs` as one JSON object string per instruction, so its type is the same whichever
# checkers appear; IFEval's list<struct> form (unused keys null) is read as well.
IFEVAL_PROMPT_FIELDS = (
    pa.field("instruction_id_list", pa.list_(pa.string())),
    pa.field("kwargs", pa.list_(pa.string())),
)
IFEVAL_PROMPT_COLUMNS = tuple(f.name for f in IFEVAL_PROMPT_FIELDS)
# What the ifeval reward writes besides reward_ifeval (= ifeval_instruction_strict): the four IFEval
# measures of one response, and per instruction (aligned with instruction_id_list) whether it passed.
# Registered as the reward's extra fields (actors/rewards/programmatic.py), so prompt loading rejects
# source columns of these names.
IFEVAL_SCORE_FIELDS = (
    pa.field("ifeval_instruction_strict", pa.float64()),
    pa.field("ifeval_instruction_loose", pa.float64()),
    pa.field("ifeval_prompt_strict", pa.float64()),
    pa.field("ifeval_prompt_loose", pa.float64()),
    pa.field("ifeval_strict_pass", pa.list_(pa.bool_())),
    pa.field("ifeval_loose_pass", pa.list_(pa.bool_())),
)
IFEVAL_STRICT_PASS, IFEVAL_LOOSE_PASS = IFEVAL_SCORE_FIELDS[-2].name, IFEVAL_SCORE_FIELDS[-1].name
# IFEval's four accuracies in the held-out IFEval numbers (Metric.HELDOUT_IFEVAL), in the order tables
# show them (docs/ifeval.md).
IFEVAL_ACCURACIES = ("prompt_strict", "instruction_strict", "prompt_loose", "instruction_loose")
IFEVAL_FAMILIES = "families"  # per constraint family: instruction_strict, instruction_loose, instructions
