"""The built-in instruction prompts: short tasks with reference answers, for real chat models.

`data.train.path: builtin-instructions` (and the same for `data.heldout`) selects them. They were
written for this project so that a real pretrained policy (SmolLM2-135M-Instruct) has prompts with
known good answers and no download is needed: arithmetic word problems, unit conversions, capitals,
general facts, yes/no questions, spelling and reversal, short definitions, list sorting and
sentence rewriting, at three difficulty levels.

Every row has `reference` (a full-sentence good answer, what the embedding_similarity reward
compares responses with), `answer` (the short answer a correct response contains, what the
`contains_answer` reward checks), `task` (the kind) and `difficulty` (1 easy .. 3 hard). Facts come
from fixed tables; the other kinds are templates filled with values drawn from a fixed seed, so the
set is the same on every machine and in every process. No prompt shows its own answer (a response
that echoes the prompt never earns `contains_answer`). Prompt ids are content-based
(`<task>-<hash of the prompt>`); within each kind every fifth prompt, after a seeded shuffle, is
held out, so both splits cover every kind.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

import numpy as np
import pyarrow as pa

from actors.rewards.contains_answer import contains_answer

SOURCE_NAME = "builtin-instructions"  # what data.*.path names
SPLITS = ("train", "heldout")
SEED = 20240611
HELDOUT_EVERY = 5  # one prompt in five, per kind, is held out

SCHEMA = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("prompt", pa.string()),
        ("reference", pa.string()),
        ("answer", pa.string()),
        ("task", pa.string()),
        ("difficulty", pa.int32()),
    ]
)

Row = tuple[str, str, str, int]  # prompt, reference, answer, difficulty


def instruction_prompts(split: str) -> pa.Table:
    """One split ('train' or 'heldout') of the built-in instruction prompts, in a fixed order."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    rows = [row for row in all_rows() if row["split"] == split]
    return pa.Table.from_pylist([{k: v for k, v in row.items() if k != "split"} for row in rows], schema=SCHEMA)


def all_rows() -> list[dict]:
    """Every prompt of every kind with its split; prompts are unique across the whole set."""
    rows: list[dict] = []
    seen: set[str] = set()
    for index, (task, make) in enumerate(GENERATORS.items()):
        rng = np.random.default_rng([SEED, index])
        kind_rows = []
        for prompt, reference, answer, difficulty in make(rng):
            # A template may draw the same values twice, or values whose answer the prompt already
            # shows (a list drawn in sorted order): echoing the prompt must never earn contains_answer.
            if prompt in seen or contains_answer(answer, prompt):
                continue
            seen.add(prompt)
            digest = hashlib.sha256(prompt.encode()).hexdigest()[:10]
            kind_rows.append({"prompt_id": f"{task}-{digest}", "prompt": prompt, "reference": reference,
                              "answer": answer, "task": task, "difficulty": difficulty})
        order = np.random.default_rng([SEED, index, 1]).permutation(len(kind_rows))
        for rank, position in enumerate(order):
            kind_rows[position]["split"] = "heldout" if rank % HELDOUT_EVERY == 0 else "train"
        rows.extend(kind_rows)
    return rows


def _pick(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


# --- arithmetic word problems -----------------------------------------------------------------------

NAMES = ["Anna", "Ben", "Carla", "David", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Kemi", "Liam",
         "Maya", "Noah", "Olga", "Pablo", "Rosa", "Sam", "Tara", "Victor"]
ITEMS = ["apples", "books", "pencils", "stickers", "marbles", "cookies", "stamps", "shells", "cards", "eggs"]


def arithmetic(rng: np.random.Generator) -> Iterator[Row]:
    for _ in range(30):  # one step, small numbers
        name, item = _pick(rng, NAMES), _pick(rng, ITEMS)
        a, b = int(rng.integers(3, 20)), int(rng.integers(2, 15))
        if rng.random() < 0.5:
            yield (f"{name} has {a} {item} and gets {b} more. How many {item} does {name} have now?",
                   f"{name} has {a + b} {item} now, because {a} + {b} = {a + b}.", str(a + b), 1)
        else:
            a = a + b
            yield (f"{name} has {a} {item} and gives away {b}. How many {item} are left?",
                   f"{name} has {a - b} {item} left, because {a} - {b} = {a - b}.", str(a - b), 1)
    for _ in range(30):  # two steps
        name, item = _pick(rng, NAMES), _pick(rng, ITEMS)
        boxes, per_box, eaten = int(rng.integers(2, 7)), int(rng.integers(3, 10)), int(rng.integers(1, 5))
        total = boxes * per_box - eaten
        yield (f"{name} buys {boxes} bags with {per_box} {item} in each bag and then loses {eaten} {item}. "
               f"How many {item} does {name} have?",
               f"{name} has {total} {item}: {boxes} x {per_box} = {boxes * per_box}, minus {eaten} is {total}.",
               str(total), 2)
    for _ in range(25):  # larger numbers, money
        name = _pick(rng, NAMES)
        count, price = int(rng.integers(3, 13)), int(rng.integers(12, 60))
        paid = (count * price // 100 + 1) * 100
        change = paid - count * price
        yield (f"{name} buys {count} tickets at {price} dollars each and pays with {paid} dollars. "
               "How much change does " + name + " get?",
               f"{name} gets {change} dollars in change: the tickets cost {count} x {price} = {count * price} "
               f"dollars, and {paid} - {count * price} = {change}.", str(change), 3)


# --- unit conversions -------------------------------------------------------------------------------

CONVERSIONS = [  # (from unit, to unit, factor, difficulty)
    ("kilometers", "meters", 1000, 1), ("meters", "centimeters", 100, 1), ("hours", "minutes", 60, 1),
    ("minutes", "seconds", 60, 1), ("kilograms", "grams", 1000, 1), ("days", "hours", 24, 2),
    ("weeks", "days", 7, 1), ("liters", "milliliters", 1000, 1), ("centimeters", "millimeters", 10, 1),
    ("years", "months", 12, 2), ("dozens", "items", 12, 2),
]


def unit_conversion(rng: np.random.Generator) -> Iterator[Row]:
    for _ in range(60):
        source, target, factor, level = _pick(rng, CONVERSIONS)
        whole = int(rng.integers(1, 20))
        if rng.random() < 0.3 and factor % 2 == 0:  # a half unit makes it harder (kept to whole results)
            value_text, result, level = f"{whole}.5", whole * factor + factor // 2, 3
        else:
            value_text, result = str(whole + 1), (whole + 1) * factor
        phrasing = _pick(rng, ["How many {t} are in {v} {s}?", "Convert {v} {s} to {t}.",
                               "What is {v} {s} in {t}?"])
        yield (phrasing.format(v=value_text, s=source, t=target),
               f"{value_text} {source} is {result} {target}.", str(result), level)


# --- capitals -----------------------------------------------------------------------------------------

CAPITALS = [
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Japan", "Tokyo"),
    ("China", "Beijing"), ("Egypt", "Cairo"), ("Canada", "Ottawa"), ("Australia", "Canberra"),
    ("Russia", "Moscow"), ("the United Kingdom", "London"), ("Portugal", "Lisbon"), ("Greece", "Athens"),
    ("Norway", "Oslo"), ("Sweden", "Stockholm"), ("Finland", "Helsinki"), ("Denmark", "Copenhagen"),
    ("Poland", "Warsaw"), ("Austria", "Vienna"), ("Ireland", "Dublin"), ("Belgium", "Brussels"),
    ("Hungary", "Budapest"), ("the Czech Republic", "Prague"), ("Argentina", "Buenos Aires"), ("Peru", "Lima"),
    ("Chile", "Santiago"), ("Mexico", "Mexico City"), ("Kenya", "Nairobi"), ("India", "New Delhi"),
    ("Thailand", "Bangkok"), ("South Korea", "Seoul"), ("Indonesia", "Jakarta"), ("Iran", "Tehran"),
    ("Cuba", "Havana"), ("Venezuela", "Caracas"), ("the Philippines", "Manila"), ("Vietnam", "Hanoi"),
    ("Turkey", "Ankara"), ("Switzerland", "Bern"), ("Brazil", "Brasilia"), ("Nigeria", "Abuja"),
    ("Morocco", "Rabat"), ("Saudi Arabia", "Riyadh"), ("Pakistan", "Islamabad"), ("New Zealand", "Wellington"),
    ("Ethiopia", "Addis Ababa"), ("Iceland", "Reykjavik"), ("Romania", "Bucharest"),
]
# Capitals people often confuse with a larger city are the harder ones; the best known the easiest.
HARD_CAPITALS = {"Canberra", "Ottawa", "Ankara", "Bern", "Brasilia", "Abuja", "Rabat", "Islamabad", "Wellington"}
EASY_CAPITALS = {"Paris", "Rome", "Tokyo", "Madrid", "London", "Berlin"}


def capitals(rng: np.random.Generator) -> Iterator[Row]:
    for country, capital in CAPITALS:
        phrasing = _pick(rng, ["What is the capital of {c}?", "Name the capital city of {c}.",
                               "Which city is the capital of {c}?"])
        level = 3 if capital in HARD_CAPITALS else 1 if capital in EASY_CAPITALS else 2
        yield phrasing.format(c=country), f"The capital of {country} is {capital}.", capital, level


# --- general facts --------------------------------------------------------------------------------------

FACTS = [  # (question, reference, short answer, difficulty)
    ("How many days are in a week?", "There are 7 days in a week.", "7", 1),
    ("How many legs does a spider have?", "A spider has 8 legs.", "8", 2),
    ("How many legs does an insect have?", "An insect has 6 legs.", "6", 2),
    ("At what temperature in degrees Celsius does water boil at sea level?",
     "At sea level water boils at 100 degrees Celsius.", "100", 1),
    ("At what temperature in degrees Celsius does water freeze?", "Water freezes at 0 degrees Celsius.", "0", 1),
    ("What planet do we live on?", "We live on the planet Earth.", "Earth", 1),
    ("What is the largest planet in the solar system?", "Jupiter is the largest planet in the solar system.",
     "Jupiter", 2),
    ("Which planet is closest to the Sun?", "Mercury is the planet closest to the Sun.", "Mercury", 2),
    ("Which planet is known as the Red Planet?", "Mars is known as the Red Planet.", "Mars", 1),
    ("How many continents are there on Earth?", "There are 7 continents on Earth.", "7", 2),
    ("How many hours are in a day?", "There are 24 hours in a day.", "24", 1),
    ("How many minutes are in an hour?", "There are 60 minutes in an hour.", "60", 1),
    ("How many months are in a year?", "There are 12 months in a year.", "12", 1),
    ("What gas do plants take in from the air to make food?",
     "Plants take in carbon dioxide from the air to make food.", "carbon dioxide", 2),
    ("What gas do people need to breathe to stay alive?", "People need to breathe oxygen to stay alive.",
     "oxygen", 1),
    ("How many sides does a triangle have?", "A triangle has 3 sides.", "3", 1),
    ("How many sides does a hexagon have?", "A hexagon has 6 sides.", "6", 2),
    ("How many sides does an octagon have?", "An octagon has 8 sides.", "8", 2),
    ("What is the chemical symbol for gold?", "The chemical symbol for gold is Au.", "Au", 3),
    ("What is the chemical formula of water?", "The chemical formula of water is H2O.", "H2O", 2),
    ("Who wrote the play Romeo and Juliet?", "William Shakespeare wrote Romeo and Juliet.", "Shakespeare", 2),
    ("What is the largest ocean on Earth?", "The Pacific Ocean is the largest ocean on Earth.", "Pacific", 2),
    ("What is the star at the center of our solar system?", "The Sun is the star at the center of our solar system.",
     "Sun", 1),
    ("What is the largest mammal on Earth?", "The blue whale is the largest mammal on Earth.", "blue whale", 3),
    ("What language is mainly spoken in Brazil?", "The main language spoken in Brazil is Portuguese.",
     "Portuguese", 3),
    ("What do bees make?", "Bees make honey.", "honey", 1),
    ("What is the opposite of hot?", "The opposite of hot is cold.", "cold", 1),
    ("What is the opposite of up?", "The opposite of up is down.", "down", 1),
    ("What color do you get when you mix blue and yellow?", "Mixing blue and yellow gives green.", "green", 2),
    ("What color do you get when you mix red and white?", "Mixing red and white gives pink.", "pink", 2),
    ("How many players are on the field for one team in a soccer match?",
     "A soccer team has 11 players on the field.", "11", 3),
    ("How many strings does a standard violin have?", "A standard violin has 4 strings.", "4", 3),
    ("What is the hardest natural substance?", "Diamond is the hardest natural substance.", "diamond", 3),
    ("Which animal is known as the king of the jungle?", "The lion is known as the king of the jungle.", "lion", 1),
    ("How many bones are in the adult human body?", "The adult human body has 206 bones.", "206", 3),
    ("What is the tallest mountain in the world?", "Mount Everest is the tallest mountain in the world.",
     "Everest", 2),
    ("What is the longest river in South America?", "The Amazon is the longest river in South America.",
     "Amazon", 3),
    ("How many degrees are in a right angle?", "A right angle has 90 degrees.", "90", 2),
    ("How many cents are in one dollar?", "There are 100 cents in one dollar.", "100", 1),
    ("What is the first letter of the English alphabet?", "The first letter of the English alphabet is A.", "A", 1),
]


def facts(rng: np.random.Generator) -> Iterator[Row]:
    yield from FACTS


# --- yes/no questions -----------------------------------------------------------------------------------

YES_NO = [  # (question, True for yes, explanation)
    ("Is the Sun a star?", True, "the Sun is a star"),
    ("Is a whale a fish?", False, "a whale is a mammal, not a fish"),
    ("Can penguins fly?", False, "penguins cannot fly; they swim"),
    ("Is the Moon bigger than the Earth?", False, "the Moon is smaller than the Earth"),
    ("Do plants need sunlight to grow?", True, "plants need sunlight to make their food"),
    ("Is ice colder than boiling water?", True, "ice is colder than boiling water"),
    ("Is a tomato a fruit in botany?", True, "botanically a tomato is a fruit"),
    ("Is Paris in Germany?", False, "Paris is in France"),
    ("Do spiders have six legs?", False, "spiders have eight legs"),
    ("Is the Pacific Ocean larger than the Atlantic Ocean?", True, "the Pacific is the largest ocean"),
    ("Is a square a kind of rectangle?", True, "a square is a rectangle with four equal sides"),
    ("Do fish breathe with gills?", True, "fish breathe with gills"),
    ("Is copper a metal?", True, "copper is a metal"),
    ("Is a bat a bird?", False, "a bat is a mammal"),
    ("Does the Earth orbit the Sun?", True, "the Earth orbits the Sun"),
    ("Is Mount Everest in Africa?", False, "Mount Everest is in Asia, in the Himalayas"),
]


def yes_no(rng: np.random.Generator) -> Iterator[Row]:
    for question, yes, why in YES_NO:
        word = "Yes" if yes else "No"
        yield question, f"{word}, {why}.", word, 1
    for _ in range(20):  # parity
        n = int(rng.integers(11, 500))
        even = n % 2 == 0
        yield (f"Is {n} an even number?", f"{'Yes' if even else 'No'}, {n} is {'even' if even else 'odd'}.",
               "Yes" if even else "No", 1)
    for _ in range(20):  # primality
        n = int(rng.integers(10, 100))
        prime = all(n % d for d in range(2, int(n**0.5) + 1))
        explanation = f"{n} is a prime number" if prime else f"{n} is not prime, it is divisible by " + str(
            next(d for d in range(2, n) if n % d == 0))
        yield f"Is {n} a prime number?", f"{'Yes' if prime else 'No'}, {explanation}.", "Yes" if prime else "No", 3
    for _ in range(15):  # comparison
        a, b = (int(x) for x in rng.choice(np.arange(10, 1000), size=2, replace=False))
        bigger = a > b
        yield (f"Is {a} greater than {b}?",
               f"{'Yes' if bigger else 'No'}, {a} is {'greater' if bigger else 'less'} than {b}.",
               "Yes" if bigger else "No", 2)


# --- spelling and reversal ------------------------------------------------------------------------------

WORDS = ["cat", "dog", "sun", "tree", "book", "house", "garden", "planet", "window", "river", "music", "pencil",
         "yellow", "orange", "rabbit", "silver", "castle", "bottle", "winter", "summer", "kitchen", "monkey",
         "library", "elephant", "computer", "mountain", "umbrella", "butterfly", "chocolate", "dinosaur"]


def spelling(rng: np.random.Generator) -> Iterator[Row]:
    for word in WORDS:
        level = 1 if len(word) <= 4 else 2 if len(word) <= 6 else 3
        kind = int(rng.integers(3))
        if kind == 0:
            backwards = word[::-1]
            yield (f"Spell the word '{word}' backwards.", f"The word '{word}' spelled backwards is '{backwards}'.",
                   backwards, level)
        elif kind == 1:
            spelled = "-".join(word.upper())
            yield (f"Spell the word '{word}' letter by letter, in capital letters separated by dashes.",
                   f"The word '{word}' spelled letter by letter is {spelled}.", spelled, level)
        else:
            yield (f"How many letters are in the word '{word}'?", f"The word '{word}' has {len(word)} letters.",
                   str(len(word)), level)
        # Every word also gets a first-letter question: short answers at the easy end.
        yield (f"What is the first letter of the word '{word}'?",
               f"The first letter of the word '{word}' is '{word[0]}'.", word[0], 1)


# --- short definitions ----------------------------------------------------------------------------------

DEFINITIONS = [  # (word, definition, a key word the definition rests on, difficulty)
    ("ancient", "Ancient means very old, from a time long ago.", "old", 2),
    ("enormous", "Enormous means very large.", "large", 1),
    ("tiny", "Tiny means very small.", "small", 1),
    ("rapid", "Rapid means very fast or quick.", "fast", 1),
    ("fragile", "Fragile means easily broken or damaged.", "broken", 2),
    ("generous", "Generous means willing to give more money, time or help than is expected.", "give", 2),
    ("brave", "Brave means ready to face danger or pain without fear.", "fear", 1),
    ("silent", "Silent means making no sound at all.", "sound", 1),
    ("transparent", "Transparent means clear enough that you can see through it.", "see through", 2),
    ("nocturnal", "Nocturnal means active at night.", "night", 3),
    ("herbivore", "A herbivore is an animal that eats only plants.", "plants", 2),
    ("carnivore", "A carnivore is an animal that eats meat.", "meat", 2),
    ("synonym", "A synonym is a word that means the same as another word.", "same", 2),
    ("antonym", "An antonym is a word that means the opposite of another word.", "opposite", 2),
    ("island", "An island is a piece of land surrounded by water.", "water", 1),
    ("peninsula", "A peninsula is a piece of land almost surrounded by water but joined to a larger land area.",
     "water", 3),
    ("thermometer", "A thermometer is an instrument that measures temperature.", "temperature", 2),
    ("biography", "A biography is the story of a person's life written by someone else.", "life", 3),
    ("vacation", "A vacation is a period of rest away from work or school, often spent travelling.", "rest", 1),
    ("recipe", "A recipe is a set of instructions for cooking a dish.", "cooking", 1),
    ("predator", "A predator is an animal that hunts and eats other animals.", "hunts", 2),
    ("evaporate", "To evaporate means to turn from a liquid into a gas.", "gas", 3),
    ("democracy", "Democracy is a system of government in which the people choose their leaders by voting.",
     "voting", 3),
    ("orchestra", "An orchestra is a large group of musicians who play instruments together.", "musicians", 2),
    ("telescope", "A telescope is an instrument that makes distant objects look closer and larger.", "distant", 2),
]


def definitions(rng: np.random.Generator) -> Iterator[Row]:
    for word, definition, key, level in DEFINITIONS:
        phrasing = _pick(rng, ["What does the word '{w}' mean?", "Define '{w}' in one sentence.",
                               "Give a short definition of the word '{w}'."])
        yield phrasing.format(w=word), definition, key, level


# --- list sorting -----------------------------------------------------------------------------------------

SORT_WORDS = ["apple", "banana", "cherry", "grape", "lemon", "mango", "orange", "peach", "pear", "plum", "kiwi",
              "melon", "zebra", "tiger", "horse", "eagle", "otter", "koala", "panda", "whale"]


def list_sorting(rng: np.random.Generator) -> Iterator[Row]:
    for _ in range(25):
        length = int(rng.integers(3, 8))
        numbers = [int(x) for x in rng.choice(np.arange(1, 100), size=length, replace=False)]
        ascending = rng.random() < 0.7
        result = ", ".join(map(str, sorted(numbers, reverse=not ascending)))
        order = "smallest to largest" if ascending else "largest to smallest"
        yield (f"Sort these numbers from {order}: {', '.join(map(str, numbers))}.",
               f"From {order} the numbers are {result}.", result, 1 if length <= 4 else 2 if length <= 5 else 3)
    for _ in range(15):
        length = int(rng.integers(3, 6))
        words = [str(w) for w in rng.choice(SORT_WORDS, size=length, replace=False)]
        result = ", ".join(sorted(words))
        yield (f"Put these words in alphabetical order: {', '.join(words)}.",
               f"In alphabetical order the words are {result}.", result, 2 if length <= 4 else 3)
    for _ in range(15):
        numbers = [int(x) for x in rng.choice(np.arange(1, 100), size=int(rng.integers(3, 7)), replace=False)]
        if rng.random() < 0.5:
            yield (f"How many numbers are in this list: {', '.join(map(str, numbers))}?",
                   f"There are {len(numbers)} numbers in the list.", str(len(numbers)), 1)
        else:
            yield (f"What is the sum of these numbers: {', '.join(map(str, numbers))}?",
                   f"The sum of the numbers is {sum(numbers)}.", str(sum(numbers)), 3)


# --- rewriting ---------------------------------------------------------------------------------------------

PAST_TENSE = [
    ("I walk to school.", "I walked to school."), ("She plays the piano.", "She played the piano."),
    ("We eat dinner at seven.", "We ate dinner at seven."), ("They go to the park.", "They went to the park."),
    ("He writes a letter.", "He wrote a letter."), ("The dog runs fast.", "The dog ran fast."),
    ("I see a bird.", "I saw a bird."), ("She drinks tea every morning.", "She drank tea every morning."),
    ("We swim in the lake.", "We swam in the lake."), ("He buys fresh bread.", "He bought fresh bread."),
    ("The baby sleeps well.", "The baby slept well."), ("They sing a song.", "They sang a song."),
("The sun rises early.", "The sun rose early."),
    ("She teaches math.", "She taught math."), ("We build a sandcastle.", "We built a sandcastle."),
]
PLURALS = [("The cat sleeps on the sofa.", "The cats sleep on the sofa."),
           ("The child plays outside.", "The children play outside."),
           ("A mouse eats the cheese.", "Mice eat the cheese."),
           ("The box is heavy.", "The boxes are heavy."),
           ("The woman is tall.", "The women are tall."),
           ("My foot hurts.", "My feet hurt.")]
SENTENCES = ["the quick brown fox jumps", "good morning everyone", "ray runs on many machines",
             "small models learn fast", "rain falls in april", "music makes people happy",
             "the library opens at nine", "cats like warm places"]


def rewriting(rng: np.random.Generator) -> Iterator[Row]:
    for present, past in PAST_TENSE:
        yield (f"Rewrite this sentence in the past tense: '{present}'", f"In the past tense: '{past}'",
               past.rstrip("."), 2)
    for singular, plural in PLURALS:
        yield (f"Rewrite this sentence in the plural: '{singular}'", f"In the plural: '{plural}'",
               plural.rstrip("."), 3)
    for sentence in SENTENCES:
        # Word order, not letter case: the contains_answer check ignores case.
        reversed_words = " ".join(sentence.split()[::-1])
        yield (f"Rewrite this text with its words in reverse order: '{sentence}'",
               f"With its words in reverse order: '{reversed_words}'", reversed_words, 2)


GENERATORS: dict[str, Callable[[np.random.Generator], Iterator[Row]]] = {
    "arithmetic": arithmetic,
    "unit_conversion": unit_conversion,
    "capital": capitals,
    "fact": facts,
    "yes_no": yes_no,
    "spelling": spelling,
    "definition": definitions,
    "list_sorting": list_sorting,
    "rewriting": rewriting,
}
