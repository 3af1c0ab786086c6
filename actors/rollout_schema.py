"""Column names and types of the rollouts table, in a module light enough for the driver to import.

The generator appends ROLLOUT_FIELDS to the prompts table; the scorer then adds `reward_*` columns and
`reward`. Prompt loading rejects source columns with these names, so a user's column can never be
silently overwritten further down the pipeline.
"""

from __future__ import annotations

import pyarrow as pa

PROMPT_COLUMNS = ("prompt_id", "prompt", "prompt_text")

ROLLOUT_FIELDS = (
    pa.field("sample_index", pa.int32()),
    pa.field("response", pa.string()),
    pa.field("prompt_token_ids", pa.list_(pa.int32())),
    pa.field("response_token_ids", pa.list_(pa.int32())),
    pa.field("sampling_logprob", pa.float64()),
    pa.field("token_logprobs", pa.list_(pa.float32())),
    pa.field("finish_reason", pa.string()),
    pa.field("weights_version", pa.int32()),
)


def is_pipeline_column(name: str) -> bool:
    """True for names the generator or scorer writes: rollout columns, `reward` and `reward_*`."""
    return name in {f.name for f in ROLLOUT_FIELDS} or name == "reward" or name.startswith("reward_")
