"""The ifeval reward: every checker it uses, offline, against hand-written expectations; strict, loose and
prompt-level values on crafted responses; its extra scored columns; IFEval's four held-out accuracies."""

from __future__ import annotations

import json
import math
import socket
import sys

import numpy as np
import pyarrow as pa
import pytest

from actors.contracts import InputError, Metric, RewardOutput
from actors.rewards.ifeval import InstructionError, build_checker, follows, ifeval_accuracies, loose_variants
from actors.rewards.ifeval_fields import IFEVAL_PROMPT_COLUMNS, IFEVAL_SCORE_FIELDS
from actors.rewards.programmatic import get_reward, register_reward
from actors.scorer import Scorer
from actors.rewards.spec import RewardSpec
from cluster.data.ifeval_prompts import EXCLUDED_IDS, INSTRUCTION_IDS
from round_standins import Generators, runner_for

IDS, KWARGS = IFEVAL_PROMPT_COLUMNS

# id -> (kwargs, a response that follows it, one that does not). Every id the built-in set draws, and
# the two left out of it that still run offline (they score users' own prompts).
CASES = {
    "keywords:existence": ({"keywords": ["salt", "tide"]}, "The tide brings salt.", "The tide is high."),
    "keywords:frequency": ({"keyword": "wave", "frequency": 2, "relation": "at least"}, "A wave, another wave.",
                           "One wave."),
    "keywords:forbidden_words": ({"forbidden_words": ["water"]}, "Salt and a waterfall.", "Water everywhere."),
    "keywords:letter_frequency": ({"letter": "z", "let_frequency": 2, "let_relation": "less than"}, "A lazy cat.",
                                  "Jazz is fun."),
    "length_constraints:number_words": ({"num_words": 5, "relation": "less than"}, "Three short words.",
                                        "This answer has far too many words."),
    "length_constraints:number_paragraphs": ({"num_paragraphs": 2}, "First part.\n***\nSecond part.",
                                             "Just one paragraph."),
    "length_constraints:nth_paragraph_first_word": ({"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "then"},
                                                    "It began.\n\nThen, it ended.", "It began.\n\nIt ended."),
    "detectable_content:number_placeholders": ({"num_placeholders": 2}, "Dear [name], meet me at [place].",
                                               "Dear [name]."),
    "detectable_content:postscript": ({"postscript_marker": "P.S."}, "Hello.\nP.S. See you soon.", "Hello."),
    "detectable_format:number_bullet_lists": ({"num_bullets": 2}, "* one\n* two", "* one\n* two\n* three"),
    "detectable_format:number_highlighted_sections": ({"num_highlights": 2}, "*first* and *second*", "*only one*"),
    "detectable_format:multiple_sections": ({"section_spliter": "Section", "num_sections": 2},
                                            "Section 1\nWaves.\nSection 2\nSand.", "Section 1\nWaves."),
    "detectable_format:json_format": ({}, '```json\n{"sea": "blue"}\n```', "sea: blue"),
    "detectable_format:title": ({}, "<<Sea Song>>\nWaves roll in.", "Sea Song\nWaves roll in."),
    "combination:two_responses": ({}, "Yes, it is.\n******\nNo, it is not.", "Yes.\n******\nYes."),
    "combination:repeat_prompt": ({"prompt_to_repeat": "Write a poem."}, "Write a poem. Roses are red.",
                                  "Roses are red."),
    "startend:end_checker": ({"end_phrase": "Thanks for reading!"}, "Done. Thanks for reading!",
                             "Thanks for reading! Done."),
    "startend:quotation": ({}, '"All of it quoted."', "Not quoted."),
    "change_case:english_capital": ({}, "THIS IS A SHORT ANSWER WRITTEN IN PLAIN ENGLISH.",
                                    "This is not written in capitals."),
    "change_case:english_lowercase": ({}, "this is a short answer written in plain english.",
                                      "This one has a capital letter."),
    "punctuation:no_comma": ({}, "No commas here.", "Well, a comma."),
    "language:response_language": ({"language": "fr"}, "Bonjour, je suis très heureux de vous voir aujourd'hui.",
                                   "Hello, I am very happy to see you here today."),
    "detectable_format:constrained_response": ({}, "My answer is yes.", "Sure thing."),
}


@pytest.fixture
def offline(monkeypatch):
    """No network: any socket connection and any nltk download fails loudly."""
    import nltk

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(nltk, "download", refuse)


def test_the_checker_package_imports_offline_without_nltk_downloads(offline, monkeypatch):
    for name in [m for m in sys.modules if m == "if_verifiable" or m.startswith("if_verifiable.")]:
        monkeypatch.delitem(sys.modules, name)  # restored afterwards
    from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT

    assert set(INSTRUCTION_DICT) == set(INSTRUCTION_IDS) | set(EXCLUDED_IDS)


def test_every_id_the_builtin_set_uses_has_a_case():
    assert set(INSTRUCTION_IDS) <= set(CASES)


@pytest.mark.parametrize("instruction_id", sorted(CASES))
def test_each_checker_passes_and_fails_as_written_offline(instruction_id, offline):
    kwargs, good, bad = CASES[instruction_id]
    checker = build_checker(instruction_id, kwargs)
    assert checker.check_following(good) is True
    assert checker.check_following(bad) is False


@pytest.mark.parametrize("instruction_id", ["length_constraints:number_sentences", "change_case:capital_word_frequency"])
def test_the_nltk_checkers_need_data_this_machine_may_lack(instruction_id, offline):
    import nltk

    kwargs = {"length_constraints:number_sentences": {"num_sentences": 2, "relation": "less than"},
              "change_case:capital_word_frequency": {"capital_frequency": 2, "capital_relation": "at least"}}
    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
    except LookupError:
        with pytest.raises(InstructionError, match="needs nltk tokenizer data that is not installed"):
            build_checker(instruction_id, kwargs[instruction_id])
    else:
        build_checker(instruction_id, kwargs[instruction_id])


def batch(rows: list[tuple[list[str] | None, list[dict] | None, str]]) -> pa.Table:
    """Rollout rows: (instruction ids, kwargs per instruction, response); kwargs as JSON object strings."""
    return pa.table({
        "prompt_id": [f"p{i}" for i in range(len(rows))],
        IDS: pa.array([ids for ids, _, _ in rows], pa.list_(pa.string())),
        KWARGS: pa.array([None if kw is None else [json.dumps(k) for k in kw] for _, kw, _ in rows],
                         pa.list_(pa.string())),
        "response": [response for _, _, response in rows],
    })


THANKS = {"end_phrase": "Thanks for reading!"}
CRAFTED = [
    # A comma breaks no_comma, strictly and loosely; the end phrase is there.
    (["punctuation:no_comma", "startend:end_checker"], [{}, THANKS], "Hi, there. Thanks for reading!"),
    # A preamble line breaks the quotation strictly; without its first line the response is quoted.
    (["startend:quotation", "detectable_format:title"], [{}, {}], 'Sure, here it is:\n"<<Waves>> The sea."'),
    # Markdown bold after the end phrase: loose (asterisks removed) passes.
    (["startend:end_checker"], [THANKS], "Done. **Thanks for reading!**"),
    # An empty response follows nothing, not even 'no commas'.
    (["punctuation:no_comma"], [{}], "   "),
    # No instructions: nothing to score.
    (None, None, "anything"),
    (["punctuation:no_comma"], [{}], "All good here."),
]


def test_strict_loose_and_prompt_level_values_of_crafted_responses():
    out = get_reward("ifeval")(batch(CRAFTED))
    assert isinstance(out, RewardOutput) and out.columns.schema.equals(pa.schema(IFEVAL_SCORE_FIELDS))
    columns = out.columns.to_pydict()
    assert columns["ifeval_strict_pass"] == [[False, True], [False, True], [False], [False], None, [True]]
    assert columns["ifeval_loose_pass"] == [[False, True], [True, True], [True], [False], None, [True]]
    nan = float("nan")
    expected = {
        "ifeval_instruction_strict": [0.5, 0.5, 0.0, 0.0, nan, 1.0],
        "ifeval_instruction_loose": [0.5, 1.0, 1.0, 0.0, nan, 1.0],
        "ifeval_prompt_strict": [0.0, 0.0, 0.0, 0.0, nan, 1.0],
        "ifeval_prompt_loose": [0.0, 1.0, 1.0, 0.0, nan, 1.0],
    }
    for name, values in expected.items():
        np.testing.assert_array_equal(columns[name], values, err_msg=name)
    np.testing.assert_array_equal(out.values, expected["ifeval_instruction_strict"])


def test_loose_forms_drop_the_first_and_last_lines_and_asterisks():
    forms = loose_variants("intro\n**body**\noutro")
    assert forms[0] == "intro\n**body**\noutro"
    assert set(forms) == {"intro\n**body**\noutro", "**body**\noutro", "intro\n**body**", "**body**",
                          "intro\nbody\noutro", "body\noutro", "intro\nbody", "body"}
    assert follows("", [build_checker("punctuation:no_comma", {})]) == ([False], [False])


@register_reward("test_response_length")
def response_length(table: pa.Table) -> np.ndarray:
    return np.array([len(r) for r in table.column("response").to_pylist()], dtype=np.float64)


def test_the_scorer_writes_the_extra_columns_after_the_reward_and_combines_with_other_rewards():
    scorer = Scorer([RewardSpec(kind="programmatic", name="ifeval", weight=2.0),
                     RewardSpec(kind="programmatic", name="test_response_length", weight=0.5)])
    rows = batch(CRAFTED)
    scored = scorer.score(rows)
    extra = [field.name for field in IFEVAL_SCORE_FIELDS]
    assert scored.column_names == [*rows.column_names, "reward_ifeval", *extra, "reward_test_response_length", "reward"]
    assert scorer.columns == scored.column_names[len(rows.column_names):-1]
    assert scored.schema.field("ifeval_strict_pass").type == pa.list_(pa.bool_())
    reward = scored.column("reward").to_pylist()
    assert reward[0] == 2.0 * 0.5 + 0.5 * len(CRAFTED[0][2]) and math.isnan(reward[4])
    # Scoring twice replaces every column, extra ones included.
    assert scorer.score(scored).column_names == scored.column_names


def test_a_reward_returning_other_columns_than_it_declared_is_reported():
    @register_reward("test_undeclared_columns")
    def undeclared(table: pa.Table) -> RewardOutput:
        return RewardOutput(np.zeros(table.num_rows), pa.table({"other": [1.0] * table.num_rows}))

    @register_reward("test_missing_columns", extra_fields=(pa.field("test_extra", pa.float64()),))
    def missing(table: pa.Table) -> np.ndarray:
        return np.zeros(table.num_rows)

    rows = batch(CRAFTED[:1])
    with pytest.raises(ValueError, match="returned extra columns it did not declare"):
        Scorer([RewardSpec(kind="programmatic", name="test_undeclared_columns")]).score(rows)
    with pytest.raises(ValueError, match="declared the extra columns"):
        Scorer([RewardSpec(kind="programmatic", name="test_missing_columns")]).score(rows)


def test_the_reward_names_the_row_of_an_instruction_it_cannot_check():
    with pytest.raises(InputError, match=r"batch row 2: 'punctuation:no_coma' is not an IFEval instruction id"):
        get_reward("ifeval")(batch([CRAFTED[5], (["punctuation:no_coma"], [{}], "x")]))
    with pytest.raises(InputError, match=r"needs column\(s\) \['kwargs'\]"):
        get_reward("ifeval")(batch(CRAFTED).drop_columns([KWARGS]))


def test_the_four_accuracies_count_responses_and_instructions():
    scored = Scorer([RewardSpec(kind="programmatic", name="ifeval")]).score(batch(CRAFTED))
    result = ifeval_accuracies(scored)
    # Five responses with instructions (the sixth row has none), seven instructions among them.
    assert (result["responses"], result["instructions"]) == (5, 7)
    assert result["prompt_strict"] == pytest.approx(1 / 5) and result["prompt_loose"] == pytest.approx(3 / 5)
    # Instruction level is a micro average: 3 of 7 instructions, not the mean of per-response fractions (0.4).
    assert result["instruction_strict"] == pytest.approx(3 / 7)
    assert result["instruction_loose"] == pytest.approx(5 / 7)
    assert result["families"] == {
        "detectable_format": {"instruction_strict": 1.0, "instruction_loose": 1.0, "instructions": 1},
        "punctuation": {"instruction_strict": pytest.approx(1 / 3), "instruction_loose": pytest.approx(1 / 3),
                        "instructions": 3},
        "startend": {"instruction_strict": pytest.approx(1 / 3), "instruction_loose": 1.0, "instructions": 3},
    }
    assert ifeval_accuracies(scored.drop_columns(["ifeval_strict_pass"])) is None
    empty = ifeval_accuracies(scored.slice(4, 1))
    assert empty["responses"] == 0 and empty["prompt_strict"] is None and empty["families"] == {}


class _Generators(Generators):
    """Stands in for the generator actors: the held-out prompts answered with fixed responses."""

    def __init__(self, responses: list[str]):
        self.responses = responses

    def generate(self, prompts: pa.Table, sampling, weights, progress=None) -> pa.Table:
        return prompts.append_column("response", pa.array(self.responses))


def test_the_driver_keeps_the_extra_columns_and_evaluates_ifevals_accuracies(tmp_path):
    from cluster.config import RunConfig
    from cluster.run_setup import score_columns

    config = RunConfig.model_validate({"scoring": {"rewards": [
        {"kind": "programmatic", "name": "ifeval"}, {"kind": "programmatic", "name": "test_response_length", "weight": 0}]}})
    rewards = tuple(config.scoring.rewards)
    scorer = Scorer(list(rewards))
    assert score_columns(rewards) == [*scorer.columns, "reward"]

    rows = batch(CRAFTED)
    runner = runner_for(config, tmp_path, generators=_Generators(rows.column("response").to_pylist()),
                        heldout=rows.drop_columns(["response"]))  # the driver's RoundRunner, no Ray behind it
    result = runner.evaluate()
    # The row without instructions has a NaN reward: dropped and counted, as any invalid reward.
    assert (result[Metric.HELDOUT_SAMPLES], result[Metric.HELDOUT_INVALID]) == (5, 1)
    assert result[Metric.HELDOUT_IFEVAL]["instruction_strict"] == pytest.approx(3 / 7)
    assert result[Metric.HELDOUT_IFEVAL]["prompt_loose"] == pytest.approx(3 / 5)
    assert runner._score(rows.drop_columns(["response"]).append_column("response", rows.column("response"))) \
        .column_names[-len(runner.score_columns):] == runner.score_columns


def test_undetected_language_lines_are_dropped_and_other_errors_kept(caplog):
    """IFEval's language checkers log ERROR lines for text langdetect cannot place (then count it as followed):
    noise a user reads as failures. A response of digits only is such a text."""
    import logging

    from actors.rewards.ifeval import checker_classes

    checker = checker_classes()["language:response_language"]("language:response_language")
    checker.build_description(language="en")
    with caplog.at_level(logging.ERROR):
        assert checker.check_following("12345 67890") is True  # IFEval's rule: counted as followed
        logging.getLogger().error("a real failure")
    assert [r.getMessage() for r in caplog.records] == ["a real failure"]
