"""actors/contracts.py is the one place of the shared facts: schemas, run-folder names, phases.

Its schemas survive Parquet; no other module restates a list of contract columns; the round loop
times exactly the `Phase` members; and the dependency rule between the packages holds.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from actors import contracts
from actors.contracts import PHASE_ORDER, SCHEMAS, Phase, scored_schema
from actors.rewards.ifeval_fields import IFEVAL_PROMPT_FIELDS, IFEVAL_SCORE_FIELDS

REPO = Path(__file__).resolve().parents[1]
SCANNED = ("cluster", "actors", "policies", "benchmarks")
CONTRACTS = "actors/contracts.py"
# The pure leaf modules (nothing of the project imported) that policies/ may import from actors besides
# the contracts.
POLICIES_MAY_IMPORT = {"actors.contracts", "actors.options", "actors.registry"}
# The one import from actors into policies left in place: the rows-by-prompt grouping (numpy, not a
# contract) that the in-process gradient norms share with the policies.
KNOWN_ACTORS_TO_POLICIES = {("actors/kernels/model_probe.py", "policies.grouping")}
# The learned proxy (pvar_learned) embeds with the packaged sentence encoder the embedding reward loads, and the
# prompt text the prompt embeddings use: one loader and one text rule, not copies in policies/.
KNOWN_POLICIES_FROM_ACTORS = {("policies/query/learned.py", "actors.rewards.embedding_similarity"),
                              ("policies/query/learned.py", "actors.kernels.prompt_embeddings")}


def _value(kind: pa.DataType):
    if pa.types.is_list(kind):
        return [_value(kind.value_type)]
    if pa.types.is_string(kind):
        return "x"
    if pa.types.is_boolean(kind):
        return True
    if pa.types.is_integer(kind):
        return 3
    if pa.types.is_floating(kind):
        return 0.5
    raise AssertionError(f"no sample value for {kind}")


# The ifeval reward's columns are not contracts between the packages, but land on disk all the same.
ALL_SCHEMAS = {**SCHEMAS, "scored_with_rewards": scored_schema(["reward_a", "reward_b"]),
               "ifeval_prompts": pa.schema(IFEVAL_PROMPT_FIELDS), "ifeval_scores": pa.schema(IFEVAL_SCORE_FIELDS)}


@pytest.mark.parametrize("name", sorted(ALL_SCHEMAS))
def test_every_schema_round_trips_through_parquet(name, tmp_path):
    schema = ALL_SCHEMAS[name]
    row = {field.name: _value(field.type) for field in schema}
    for table in (schema.empty_table(), pa.Table.from_pylist([row, {k: None for k in row}], schema=schema)):
        path = tmp_path / f"{name}.parquet"
        pq.write_table(table, path)
        read = pq.read_table(path)
        assert read.schema.equals(schema), f"{name}: {read.schema} != {schema}"
        assert read.equals(table)


def test_the_schemas_are_built_from_each_other():
    assert contracts.PROMPT_COLUMNS == ("prompt_id", "prompt", "prompt_text")
    assert contracts.ROLLOUTS_SCHEMA.names[:3] == list(contracts.PROMPT_COLUMNS)
    assert scored_schema(["reward_a"]).names[-2:] == ["reward_a", "reward"]
    for columns in (contracts.PAIR_TOKEN_COLUMNS, contracts.PROMPT_STAT_COLUMNS):
        assert set(columns) <= set(contracts.PAIRS_SCHEMA.names) | set(contracts.PROMPT_STATS_SCHEMA.names)
    for columns in (contracts.SELECTION_COLUMNS, contracts.RESPONSE_TOKEN_COLUMNS, contracts.SCORER_SKIPPED_COLUMNS,
                    contracts.GRADIENT_NORM_COLUMNS, contracts.EMBEDDING_PROMPT_COLUMNS, contracts.GROUPING_COLUMNS):
        assert set(columns) <= set(SCHEMAS["scored"].names)
    assert contracts.is_pipeline_column("reward_x") and contracts.is_pipeline_column("response_token_ids")
    assert not contracts.is_pipeline_column("prompt_id") and not contracts.is_pipeline_column("answer")


def test_run_folder_names():
    assert contracts.round_dir_name(3) == "round_0003"
    assert contracts.partial_dir_name(3) == ".round_0003.partial"
    assert contracts.ROUND_DIR_PATTERN.match(contracts.round_dir_name(12)).group(1) == "0012"
    assert contracts.PARTIAL_DIR_PATTERN.match(contracts.partial_dir_name(12)).group(1) == "0012"
    assert (contracts.ROLLOUTS_FILE, contracts.PROMPT_STATS_FILE, contracts.METRICS_FILE) == (
        "rollouts.parquet", "prompt_stats.parquet", "metrics.json")


def test_every_run_file_has_one_name_which_is_the_file_name():
    files = {name: value for name, value in vars(contracts).items() if name.endswith("_FILE")}
    assert {"ROLLOUTS_FILE", "SCORED_FILE", "PROMPT_HISTORY_FILE", "SCHEDULER_FILE", "EVAL_FILE"} <= set(files)
    assert all(isinstance(v, str) and "." in v for v in files.values()), files
    assert len(set(files.values())) == len(files), f"two *_FILE names for one file: {files}"
    assert not any(callable(getattr(contracts, name, None)) for name in ("parquet_file", "json_file"))


# --- no restated column lists ---------------------------------------------------------------------

CONTRACT_COLUMNS = frozenset(name for schema in ALL_SCHEMAS.values() for name in schema.names)


def restated_column_lists(source: str) -> list[tuple[int, list[str]]]:
    """(line, strings) of every literal tuple or list of strings in `source` that restates contract columns:
    at least two of its strings are contract column names, and they are at least half of it (a long list
    of metric keys that happens to share a name or two with a column is not a column list)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.Tuple, ast.List)) or not node.elts:
            continue
        if not all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
            continue
        strings = [e.value for e in node.elts]
        columns = [s for s in strings if s in CONTRACT_COLUMNS]
        if len(columns) >= 2 and 2 * len(columns) >= len(strings):
            found.append((node.lineno, strings))
    return sorted(found)


def test_the_restatement_check_catches_a_planted_column_list():
    planted = 'def f(table):\n    return table.select(["prompt_id", "prompt_token_ids"])\nCOLS = ("prompt_id", "prompt_token_ids")\n'
    assert restated_column_lists(planted) == [(2, ["prompt_id", "prompt_token_ids"]),
                                              (3, ["prompt_id", "prompt_token_ids"])]
    assert restated_column_lists('x = table.column("reward")\ny = ("prompt_id", other)\nz = ("a", "b")\n') == []
    metric_keys = '("loss", "margin", "chosen_reward", "rejected_reward", "tokens", "steps")'
    assert restated_column_lists(metric_keys) == []


def test_no_module_restates_a_contract_column_list():
    restated = {}
    for folder in SCANNED:
        for path in sorted((REPO / folder).rglob("*.py")):
            name = path.relative_to(REPO).as_posix()
            if name != CONTRACTS and (found := restated_column_lists(path.read_text())):
                restated[name] = found
    assert not restated, f"column lists restated outside {CONTRACTS} (use its constants): {restated}"


# --- phases ---------------------------------------------------------------------------------------


def _phase_arguments(path: Path) -> tuple[set[str], list[str]]:
    """Phase members (`Phase.X`) and string constants passed as a call's first argument to `phase(...)`."""
    members, strings = set(), []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "phase":
            args = node.args[1:] if isinstance(node.func, ast.Attribute) else node.args
            for arg in args[:1]:
                if isinstance(arg, ast.Attribute) and getattr(arg.value, "id", None) == "Phase":
                    members.add(arg.attr)
                elif isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    strings.append(arg.value)
    return members, strings


def test_the_round_runner_times_every_phase_and_only_phases():
    used, strings = set(), []
    for name in ("cluster/round_runner.py", "cluster/diagnostics.py"):
        members, found = _phase_arguments(REPO / name)
        used |= members
        strings += found
    assert not strings, f"phases named by string instead of Phase members: {strings}"
    assert used == {phase.name for phase in Phase}, f"Phase members never timed: {set(Phase.__members__) - used}"


def test_phases_are_plain_strings_in_json_and_text():
    assert PHASE_ORDER == ("eval_before", "generate", "score", "select", "gradient_norms", "train", "sync", "eval",
                           "did", "benchmarks")
    assert json.dumps({Phase.GRADIENT_NORMS: 1.0}) == '{"gradient_norms": 1.0}'
    assert f"{Phase.DID} {Phase.TRAIN!s}" == "did train" and Phase("score") is Phase.SCORE

    from cluster.tools.status import ordered_phases

    assert ordered_phases({"did", "train", "gradient_norms", "new"}) == ["gradient_norms", "train", "did", "new"]


def test_observers_record_phases_by_plain_name(tmp_path):
    from cluster.observers import RunObservers

    observers = RunObservers("t", tmp_path, bars=False)
    with observers.phase(0, Phase.GRADIENT_NORMS):
        pass
    (key,) = observers.seconds_of(0)
    assert type(key) is str and key == "gradient_norms"


# --- the dependency rule --------------------------------------------------------------------------


def _is_module(name: str) -> bool:
    path = REPO.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imported_modules(path: Path) -> set[str]:
    """Every module an import statement names (function-level imports too). `from a import b` names a.b
    when that is a module of the repository, else a."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {f"{node.module}.{alias.name}" if _is_module(f"{node.module}.{alias.name}") else node.module
                      for alias in node.names}
    return names


def _in_package(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_imported_modules_resolves_submodules(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("from actors import contracts\nfrom actors.contracts import Phase\ndef f():\n    import policies.pvar\n")
    assert imported_modules(source) == {"actors.contracts", "policies.pvar"}


def test_policies_import_only_the_contracts_from_actors():
    wrong = {}
    for path in (REPO / "policies").rglob("*.py"):
        where = path.relative_to(REPO).as_posix()
        bad = {m for m in imported_modules(path) if _in_package(m, "actors") and m not in POLICIES_MAY_IMPORT
               and (where, m) not in KNOWN_POLICIES_FROM_ACTORS}
        if bad:
            wrong[path.relative_to(REPO).as_posix()] = sorted(bad)
    assert not wrong, f"policies/ may import only {sorted(POLICIES_MAY_IMPORT)} from actors: {wrong}"


def test_actors_never_import_policies():
    found = {(path.relative_to(REPO).as_posix(), m)
             for path in (REPO / "actors").rglob("*.py") for m in imported_modules(path) if _in_package(m, "policies")}
    found = {(path, m) for path, m in found if not any(path == p and _in_package(m, k) for p, k in KNOWN_ACTORS_TO_POLICIES)}
    assert not found, f"actors/ imports policies: {sorted(found)}"


def test_the_contracts_import_only_pyarrow_and_the_standard_library():
    tops = {name.split(".")[0] for name in imported_modules(REPO / CONTRACTS)}
    assert tops - set(sys.stdlib_module_names) == {"pyarrow"}


@pytest.mark.parametrize("module", ["actors/registry.py", "actors/rewards/ifeval_fields.py",
                                    "cluster/data/pool_fields.py", "actors/options.py"])
def test_the_leaf_modules_import_nothing_of_the_project(module):
    tops = {name.split(".")[0] for name in imported_modules(REPO / module)}
    assert tops - set(sys.stdlib_module_names) <= {"pyarrow", "pydantic"}
