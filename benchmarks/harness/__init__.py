"""One harness for the benchmarks that compare arms over seeds: arms as data, one run loop, one statistics
module, one results writer.

    arms.py     `Arm` (name, overrides, config, baseline, axes, heldout, prices, signal, description),
                `arm_table`, `reward`/`rewards_override`, `available` (skip what this checkout lacks)
    runs.py     `make_runner("local" | "cli")`, `run_arms` (seeds outermost, one record per run with its
                `machine`), `read_run` (per-point cost and held-out curves), `add_arguments`/`seed_block_of`
                (the shared command line), `SEED_BLOCKS`
    curves.py   `value_at`, `first_reach`, `compare` (at equal labels / total cost / rounds: one function, the
                axis an argument), `break_even` (proxy price), `summarise`, `draw`, `Comparison`
    stats.py    `mean_interval`, `paired_difference`, `mde`, `fmt`/`fmt_difference` (MDE beside every null),
                `reach` (bootstrap cost to reach a target), `fmt_reach`
    results.py  `summarise_arms`, `previous_report`/`merge_runs` (--merge), `combined_runs` (--combine: reports of
                disjoint parts of one seed block, e.g. two processes), `build_report`, `write`

Scripts import it as `harness` (they run from benchmarks/, which Python puts first on sys.path; tests add it).

How to write a benchmark on the harness
---------------------------------------

1. Declare the arms as data, with everything that makes an arm in its record: no logic keyed on names.

       from harness.arms import Arm, arm_table, reward, rewards_override
       SCORED = rewards_override(reward("builtin_task"), reward("builtin_task_exact", role="eval"))
       ARMS = arm_table(
           Arm("passive", [SCORED, "labelling.query=passive"], description="every response labelled"),
           Arm("random", [SCORED, "labelling.query=random", "labelling.labels_per_round=64"],
               baseline="passive", axes=("labels", "total_cost"), signal="none: a seeded random order"))

   `config` (default configs/quickstart.yaml) picks the config file; `heldout` names the held-out curve
   (default metrics.json's `heldout_reward_mean`; an eval-role reward's name when the labeller is not the truth);
   `prices={"label": 0.05}` or a `reporting.prices.*` override prices the arm; `proxy_axis="labels"` when its
   labeller is the proxy; `arm.variant(name, add=[...])` derives an arm.
2. Parse the shared options and run: `add_arguments(parser, ARMS, DEFAULT, OUT)` gives --seeds/--seed-block,
   --arms, --cli, --out, --runs-dir, --merge and key=value overrides; then

       block = seed_block_of(args)
       arms = available([ARMS[a] for a in args.arms], SHARED)          # skips unregistered selectors/rewards
       runner = make_runner("cli" if args.cli else "local", arms[0].config_path, SHARED)
       runs = run_arms(arms, block["seeds"], root, runner, SHARED, args.overrides, columns={"exact": "builtin_task_exact"})

   Each record has per point `labels`, `proxy_scores`, `generated_tokens`, `learner_tokens`, `total_cost`,
   `prompts_rolled_out`, `round`, `heldout` (and `heldout_reward`, `exact`), per round `pairs_trained`,
   `tied_share`, `selector`, `proxy_quality`, and `prices`, `wall_seconds`, `machine`. `extra=fn(run_dir,
   summary)` adds what only your benchmark reads.
3. Summarise and compare: `summarise_arms(ARMS, runs, [Comparison("random", "labels"), ...])` gives each arm's
   curves and finals, its reach/difference/break-even against its baseline on its axes, and each comparison as
   a paired difference with its MDE (print it with `fmt_difference`, reaches with `fmt_reach`).
4. Write: `previous_report(out, settings, arms)` before running when --merge (refuses other settings), then
   `merge_runs`, `build_report(settings, ARMS, runs, summary, seed_block=block, previous=previous)` and
   `write(report, out, plot)`; your `plot(report, path)` draws with `curves.draw` on any axis.
   Keep in the script only the arms, the table and the plot (benchmarks/label_efficiency.py is the example).
"""
