"""RUN_DIR/report.html: one self-contained page about a run, built from the run folder's files alone.

Every plot is a matplotlib PNG inlined as a base64 data URI; there is no external CSS, script or
font, so the file can be mailed, archived or opened offline. The page says in numbers whether the
run shows what the papers predict (docs/training-dynamics.md): log-likelihood displacement (the chosen response's log-prob
falling while the margin grows, section 3) and the gradient field's asymmetry (the rejected
log-prob moving more than the chosen one, section 4), and "not observed" with the value when not.

Input: config.yaml and, per completed round, metrics.json, prompt_stats.parquet (scored.parquet as
a fallback), eval.json. The page opens with the held-out result before training against after the
last round (headline.py). A measurement config.yaml switched off is one line naming the setting
(switches.py); other keys a run did not record (older runs) show as "not recorded"; a file that exists
but cannot be parsed is an error naming the file.

Matplotlib is driven through Figure + the Agg canvas directly, never pyplot: no global figure
state, no GUI backend, safe to call from the driver after every round.

data.py reads the run folder into numbers, plots.py draws the figures, sections.py, headline.py and
benchmarks.py (official IFEval / IFBench, when the config names them) write the text sections, html.py puts
the page together; `write_report` (in html.py) is the entry point.
"""

from cluster.tools.report.data import NOT_RECORDED, RoundData, load_rounds
from cluster.tools.report.html import build_html, write_report

__all__ = ["NOT_RECORDED", "RoundData", "build_html", "load_rounds", "write_report"]
