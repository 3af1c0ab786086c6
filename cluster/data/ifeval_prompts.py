"""The built-in IFEval-style prompts (`builtin-ifeval`): short writing tasks with verifiable instructions.

`data.train.path: builtin-ifeval` (and the same for `data.heldout`) selects them; the `ifeval` reward
(actors/rewards/ifeval.py) scores them. A task is a topic (24, each with a few words of its own)
put into a task kind (10: a poem, a story, an explanation for a child, ...), written for this project.
Each prompt is a task followed by one to three instructions from IFEval's registry. The instruction
text is what the checker class itself writes, `cls(id).build_description(**kwargs)`, with kwargs
drawn here from a seeded generator (counts small enough for a short answer, keywords from the
topic), so the prompt and the check that scores it always agree.

The split holds out (task kind, instruction id) combinations: for each kind, four instruction ids
(a seeded rotation, so every id is held out for one or two kinds and trained with the others) appear
only in held-out prompts, and held-out prompts use only those. No (task, instruction) combination of
the held-out split appears in training. 480 training prompts (two per topic and kind) and 120 held
out (one for half of the tasks). Everything is drawn from `seed`: the same seed gives the same
table on every machine. Columns: prompt_id, prompt, task, topic, and IFEval's instruction_id_list
and kwargs (one JSON object string per instruction; docs/tables.md).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable

import numpy as np
import pyarrow as pa

from actors.rewards.ifeval import checker_classes, instruction_conflicts
from actors.rewards.ifeval_fields import IFEVAL_PROMPT_COLUMNS, IFEVAL_PROMPT_FIELDS

SOURCE_NAME = "builtin-ifeval"  # what data.*.path names
SPLITS = ("train", "heldout")
SEED = 20250110
TRAIN_PER_TASK = 2
HELDOUT_IDS_PER_KIND = 4
CONSTRAINT_COUNTS, COUNT_WEIGHTS = (1, 2, 3), (0.3, 0.45, 0.25)

SCHEMA = pa.schema([("prompt_id", pa.string()), ("prompt", pa.string()), ("task", pa.string()),
                    ("topic", pa.string()), *IFEVAL_PROMPT_FIELDS])

TASK_KINDS = {
    "poem": "Write a short poem about {topic}.",
    "story": "Tell a very short story in which {topic} plays a part.",
    "explain": "Explain {topic} to a curious ten-year-old.",
    "advert": "Write a short advertisement for a book about {topic}.",
    "note": "Write a brief note to a friend about {topic}.",
    "facts": "Share a few interesting facts about {topic}.",
    "describe": "Describe {topic} as if you were seeing it for the first time.",
    "advice": "Give some practical advice to someone who wants to learn more about {topic}.",
    "blog": "Write the opening of a blog post about {topic}.",
    "dialogue": "Write a short dialogue between two friends talking about {topic}.",
}

# Each topic's own words: keywords to include, to repeat or to avoid. Four letters or more, since
# IFEval's keyword checks match substrings ("ice" would count inside "nice").
TOPICS = {
    "the ocean": ("waves", "salt", "tide", "shore", "deep"),
    "honeybees": ("hive", "pollen", "queen", "flowers", "honey"),
    "a rainy afternoon": ("umbrella", "puddle", "clouds", "window", "thunder"),
    "the moon": ("crater", "orbit", "night", "tides", "silver"),
    "public libraries": ("books", "quiet", "librarian", "shelves", "borrow"),
    "learning to ride a bicycle": ("balance", "pedal", "helmet", "wobble", "brakes"),
    "volcanoes": ("lava", "eruption", "smoke", "magma", "mountain"),
    "chess": ("knight", "checkmate", "board", "pawn", "strategy"),
    "autumn leaves": ("orange", "crunch", "wind", "branches", "golden"),
    "a city park": ("bench", "pigeons", "trees", "joggers", "fountain"),
    "recycling": ("plastic", "bins", "waste", "sorting", "reuse"),
    "trains": ("station", "tracks", "ticket", "carriage", "whistle"),
    "baking bread": ("flour", "dough", "oven", "yeast", "crust"),
    "a mountain hike": ("trail", "summit", "boots", "compass", "view"),
    "dinosaurs": ("fossils", "bones", "reptiles", "museum", "giant"),
    "coffee": ("beans", "roast", "espresso", "aroma", "morning"),
    "a lighthouse": ("beam", "keeper", "rocks", "ships", "storm"),
    "gardening": ("seeds", "soil", "water", "weeds", "sunlight"),
    "the night sky": ("stars", "planets", "telescope", "darkness", "comet"),
    "a snowy morning": ("snowflakes", "cold", "sled", "scarf", "silence"),
    "friendship": ("trust", "laughter", "loyalty", "support", "memories"),
    "the internet": ("website", "connection", "search", "email", "network"),
    "penguins": ("glaciers", "waddle", "colony", "fish", "feathers"),
    "a busy kitchen": ("chef", "pans", "recipe", "steam", "knives"),
}

# No final period: the checker's text puts one after the phrase.
END_PHRASES = ("Is there anything else?", "Thanks for reading!", "Hope this helps!", "Until next time!")
POSTSCRIPT_MARKERS = ("P.S.", "P.P.S")
SECTION_MARKERS = ("Section", "SECTION", "Part", "PART")
FIRST_WORDS = ("first", "then", "finally", "also", "today", "however")
COMMON_LETTERS, RARE_LETTERS = "aeiost", "jqxz"

# Registry ids left out, and why (docs/ifeval.md). They still score user prompts that use them.
EXCLUDED_IDS = {
    "length_constraints:number_sentences": "counts sentences with nltk's punkt data, which needs a download",
    "change_case:capital_word_frequency": "tokenizes with nltk's punkt data, which needs a download",
    "language:response_language": "asks for a language a small English chat model barely writes; "
                                   "langdetect is unreliable on short answers",
    "detectable_format:constrained_response": "its fixed 'My answer is yes/no/maybe' options fit none of the "
                                              "task kinds, and IFEval lets it share a prompt with nothing",
}
# Pairs that IFEval's conflict table allows but that ask for contradictory things here: the case
# checkers need every letter in one case and a section marker may be in the other; a postscript and
# an exact final phrase both claim the end of the response.
EXTRA_CONFLICTS = (
    ("change_case:english_capital", "detectable_format:multiple_sections"),
    ("change_case:english_lowercase", "detectable_format:multiple_sections"),
    ("detectable_content:postscript", "startend:end_checker"),
)
REDRAWS = 20  # attempts at a prompt not drawn before, per draw

Sampler = Callable[[np.random.Generator, list[str]], dict]


def _pick(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


def _words(rng: np.random.Generator, free: list[str], count: int) -> list[str]:
    """`count` of the topic's words not yet used by another instruction of the prompt (they are then used)."""
    chosen = [free.pop(int(rng.integers(len(free)))) for _ in range(min(count, len(free)))]
    return sorted(chosen)


def _frequency(rng, free):
    relation = _pick(rng, ("at least", "less than"))
    return {"keyword": _words(rng, free, 1)[0], "frequency": int(rng.integers(2, 4)), "relation": relation}


def _letters(rng, free):
    if rng.random() < 0.5:
        return {"letter": _pick(rng, COMMON_LETTERS), "let_frequency": int(_pick(rng, (3, 5, 8))), "let_relation": "at least"}
    return {"letter": _pick(rng, RARE_LETTERS), "let_frequency": int(rng.integers(2, 4)), "let_relation": "less than"}


def _number_words(rng, free):
    if rng.random() < 0.5:
        return {"num_words": int(_pick(rng, (10, 15, 20, 30))), "relation": "at least"}
    return {"num_words": int(_pick(rng, (15, 25, 40, 60))), "relation": "less than"}


def _nth_first_word(rng, free):
    paragraphs = int(rng.integers(2, 4))
    return {"num_paragraphs": paragraphs, "nth_paragraph": int(rng.integers(1, paragraphs + 1)),
            "first_word": _pick(rng, FIRST_WORDS)}


# The instruction ids the set draws from, each with how its kwargs are drawn (the topic's unused words
# are `free`). repeat_prompt's kwarg is the prompt itself, filled in when the prompt is put together.
SAMPLERS: dict[str, Sampler] = {
    "keywords:existence": lambda rng, free: {"keywords": _words(rng, free, 2)},
    "keywords:frequency": _frequency,
    "keywords:forbidden_words": lambda rng, free: {"forbidden_words": _words(rng, free, int(rng.integers(1, 3)))},
    "keywords:letter_frequency": _letters,
    "length_constraints:number_words": _number_words,
    "length_constraints:number_paragraphs": lambda rng, free: {"num_paragraphs": int(rng.integers(2, 4))},
    "length_constraints:nth_paragraph_first_word": _nth_first_word,
    "detectable_content:number_placeholders": lambda rng, free: {"num_placeholders": int(rng.integers(1, 4))},
    "detectable_content:postscript": lambda rng, free: {"postscript_marker": _pick(rng, POSTSCRIPT_MARKERS)},
    "detectable_format:number_bullet_lists": lambda rng, free: {"num_bullets": int(rng.integers(2, 5))},
    "detectable_format:number_highlighted_sections": lambda rng, free: {"num_highlights": int(rng.integers(1, 4))},
    "detectable_format:multiple_sections": lambda rng, free: {"section_spliter": _pick(rng, SECTION_MARKERS),
                                                               "num_sections": int(rng.integers(2, 4))},
    "detectable_format:json_format": lambda rng, free: {},
    "detectable_format:title": lambda rng, free: {},
    "combination:two_responses": lambda rng, free: {},
    "combination:repeat_prompt": lambda rng, free: {},
    "startend:end_checker": lambda rng, free: {"end_phrase": _pick(rng, END_PHRASES)},
    "startend:quotation": lambda rng, free: {},
    "change_case:english_capital": lambda rng, free: {},
    "change_case:english_lowercase": lambda rng, free: {},
    "punctuation:no_comma": lambda rng, free: {},
}
INSTRUCTION_IDS = tuple(SAMPLERS)
REPEAT_PROMPT = "combination:repeat_prompt"


def ifeval_prompts(split: str, seed: int = SEED) -> pa.Table:
    """One split ('train' or 'heldout') of the built-in IFEval-style prompts, in a fixed order."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    return all_splits(seed)[split]


@functools.lru_cache(maxsize=4)
def all_splits(seed: int = SEED) -> dict[str, pa.Table]:
    """Both splits, drawn from `seed`; prompts are unique across them."""
    heldout_ids = heldout_instruction_ids(seed)
    rows: dict[str, list[dict]] = {split: [] for split in SPLITS}
    seen: set[str] = set()
    tasks = [(kind, topic) for kind in TASK_KINDS for topic in TOPICS]
    heldout_tasks = set(np.random.default_rng([seed, 1]).permutation(len(tasks))[: len(tasks) // 2].tolist())
    for index, (kind, topic) in enumerate(tasks):
        rng = np.random.default_rng([seed, 2, index])
        trained = [i for i in INSTRUCTION_IDS if i not in heldout_ids[kind]]
        draws = [("train", trained)] * TRAIN_PER_TASK + ([("heldout", list(heldout_ids[kind]))]
                                                         if index in heldout_tasks else [])
        for split, allowed in draws:
            # A prompt drawn before is drawn again (a task with one short instruction repeats easily),
            # so no prompt is in both splits.
            row = next((r for r in (_prompt_row(rng, kind, topic, allowed) for _ in range(REDRAWS))
                        if r["prompt"] not in seen), None)
            if row is not None:
                seen.add(row["prompt"])
                rows[split].append(row)
    return {split: pa.Table.from_pylist(rows[split], schema=SCHEMA) for split in SPLITS}


def heldout_instruction_ids(seed: int = SEED) -> dict[str, tuple[str, ...]]:
    """Per task kind, the instruction ids only its held-out prompts use: consecutive runs of one seeded
    order of the ids, so each id is held out for one or two kinds."""
    order = [INSTRUCTION_IDS[i] for i in np.random.default_rng([seed, 0]).permutation(len(INSTRUCTION_IDS))]
    return {kind: tuple(order[(HELDOUT_IDS_PER_KIND * k + j) % len(order)] for j in range(HELDOUT_IDS_PER_KIND))
            for k, kind in enumerate(TASK_KINDS)}


def conflicting(first: str, second: str) -> bool:
    """True when two instruction ids must not share a prompt (IFEval's table plus EXTRA_CONFLICTS)."""
    table = instruction_conflicts()
    return (second in table.get(first, ()) or first in table.get(second, ())
            or (first, second) in EXTRA_CONFLICTS or (second, first) in EXTRA_CONFLICTS)


def _draw_ids(rng: np.random.Generator, allowed: list[str]) -> list[str]:
    """One to three ids from `allowed`, none conflicting with another (fewer when the options run out)."""
    count = int(rng.choice(CONSTRAINT_COUNTS, p=COUNT_WEIGHTS))
    chosen: list[str] = []
    for _ in range(count):
        options = [i for i in allowed if not any(conflicting(i, c) for c in chosen)]
        if not options:
            break
        chosen.append(_pick(rng, options))
    # repeat_prompt asks for the request before it: it goes last, after the other instructions.
    return sorted(chosen, key=lambda i: i == REPEAT_PROMPT)


def _prompt_row(rng: np.random.Generator, kind: str, topic: str, allowed: list[str]) -> dict:
    task = TASK_KINDS[kind].format(topic=topic)
    free = list(TOPICS[topic])
    ids = _draw_ids(rng, allowed)
    parts, kwargs = [task], []
    classes = checker_classes()
    for iid in ids:
        args = SAMPLERS[iid](rng, free)
        if iid == "keywords:letter_frequency" and args["let_relation"] == "less than":
            # A rare letter the task itself needs (x in 'explain') would make the answer fight the topic.
            args["letter"] = _pick(rng, [c for c in RARE_LETTERS if c not in task.lower()] or list(RARE_LETTERS))
        if iid == REPEAT_PROMPT:
            args = {"prompt_to_repeat": " ".join(parts)}
        parts.append(classes[iid](iid).build_description(**args))
        kwargs.append(json.dumps(args, sort_keys=True))
    prompt = " ".join(parts)
    digest = hashlib.sha256(prompt.encode()).hexdigest()[:10]
    return {"prompt_id": f"ifeval-{kind}-{digest}", "prompt": prompt, "task": kind, "topic": topic,
            **dict(zip(IFEVAL_PROMPT_COLUMNS, (ids, kwargs), strict=True))}
