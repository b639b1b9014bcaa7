"""Per-seed throughput of S seeds trained in one process (--num-seeds S) against S single runs of the same seeds
launched at once on the same cores, side by side in one invocation.

    python benchmarks/population.py                     # 500 x 100, minibatch 50 and 1000, S = 1 2 4 8, 5 iterations
    python benchmarks/population.py --num-envs 20 --num-steps 50 --iterations 2    # a quick check that all runs

What is measured: our training script on HalfCheetah-v5 at its default flags (mujoco-batch env backend, KL
profiling on, --compile auto, one torch thread), --iterations iterations of num_envs x num_steps steps per seed.
--compile auto counts the updates of one seed, so the population and the single runs decide alike: at 500 x 100
and 5 iterations, compiled at minibatch 50 and eager at 1000 (the population's first line, printed, says which).
For each minibatch size and S:
- population: one process, --num-seeds S (seeds 1..S), from its start to its exit;
- single runs: S processes, --seed 1 .. --seed S, all launched at once (they share this machine's cores, as a
  sweep with one job per seed would, and as it does each gets its share of the cores' env threads:
  --env-threads max(1, cores // S)), from the first start to the last exit.
Per-seed steps/s = S x iterations x num_envs x num_steps / wall seconds; the ratio is the population's per-seed
steps/s over the single runs' (equally: the single runs' wall time over the population's). Peak memory is the
resident set size from each child's rusage: the population's one process, and for the single runs the largest
child and, in brackets, the sum of the S children's peaks (they run at once, so the sum bounds what they hold
together). The runs go in rounds (population, then single runs, for every S and minibatch size, then again), and
the table takes the median over rounds.

Target: at minibatch 50, 4 seeds in one process at least 3x the per-seed throughput of single runs on the same
cores.
"""
import argparse
import os
import statistics
import sys
import tempfile

from processes import ours_command, ours_setting, run_together  # this folder is on the path when the script runs


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-seeds", default="1 2 4 8",
                        help="population sizes S, space-separated (default: %(default)s)")
    parser.add_argument("--minibatch-sizes", default="50 1000",
                        help="minibatch sizes, space-separated, each dividing num_envs x num_steps "
                             "(default: %(default)s)")
    parser.add_argument("--iterations", type=int, default=5, help="PPO iterations per run (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="rounds; the table takes the median (default: %(default)s)")
    parser.add_argument("--num-envs", type=int, default=500, help="envs per seed (default: %(default)s)")
    parser.add_argument("--num-steps", type=int, default=100, help="(default: %(default)s)")
    parser.add_argument("--compile", default="auto", choices=("auto", "on", "off"),
                        help="the script's --compile: auto decides by this benchmark's short runs, on is what a "
                             "full-length run of a small-minibatch job gets (default: %(default)s)")
    opts = parser.parse_args()
    seed_counts = [int(s) for s in opts.num_seeds.split()]
    sizes = [int(s) for s in opts.minibatch_sizes.split()]
    steps = opts.iterations * opts.num_envs * opts.num_steps  # per seed
    if any(opts.num_envs * opts.num_steps % size for size in sizes):
        sys.exit(f"error: each minibatch size must divide num_envs x num_steps = {opts.num_envs * opts.num_steps}")

    print(f"setting: HalfCheetah-v5, {opts.num_envs} envs x {opts.num_steps} steps per seed, {opts.iterations} "
          f"iterations ({steps:,} steps per seed), 10 epochs, default flags, whole process", flush=True)
    population = {(size, S): [] for size in sizes for S in seed_counts}  # (seconds, peak RSS) per round
    singles = {(size, S): [] for size in sizes for S in seed_counts}  # (seconds, [peak RSS of each run]) per round
    with tempfile.TemporaryDirectory() as runs_dir:
        for round_ in range(1, opts.rounds + 1):
            for size in sizes:
                for S in seed_counts:
                    name = f"mb{size}_S{S}_r{round_}"
                    cmd = ours_command(runs_dir, f"pop_{name}_s{{seed}}", opts.num_envs, opts.num_steps, size,
                                       opts.iterations, ["--num-seeds", str(S), "--compile", opts.compile])
                    seconds, peaks = run_together([cmd], runs_dir, [f"pop_{name}.log"])
                    population[size, S].append((seconds, peaks[0]))
                    print(f"round {round_}, minibatch {size}, S = {S}: population {seconds:.1f} s, "
                          f"{S * steps / seconds:,.0f} steps/s per seed", flush=True)
                    if round_ == 1:
                        print(f"  population ran: {ours_setting(os.path.join(runs_dir, f'pop_{name}.log'))}",
                              flush=True)
                    share = ["--env-threads", str(max(1, len(os.sched_getaffinity(0)) // S))]
                    cmds = [ours_command(runs_dir, f"single_{name}_s{seed}", opts.num_envs, opts.num_steps, size,
                                         opts.iterations, ["--seed", str(seed), "--compile", opts.compile] + share)
                            for seed in range(1, S + 1)]
                    seconds, peaks = run_together(cmds, runs_dir, [f"single_{name}_s{seed}.log"
                                                                   for seed in range(1, S + 1)])
                    singles[size, S].append((seconds, peaks))
                    print(f"round {round_}, minibatch {size}, S = {S}: {S} single runs {seconds:.1f} s, "
                          f"{S * steps / seconds:,.0f} steps/s per seed", flush=True)

    print(f"\nper-seed steps/s (S x steps / whole-process wall time), median of {opts.rounds} round(s); peak RSS")
    print("| minibatch | S | population s | single runs s | population steps/s per seed | single runs steps/s per seed "
          "| population : single runs | population peak RSS | single runs peak RSS, max (sum) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size in sizes:
        for S in seed_counts:
            pop_s = statistics.median(s for s, _ in population[size, S])
            single_s = statistics.median(s for s, _ in singles[size, S])
            pop_rss = max(rss for _, rss in population[size, S])
            single_max = max(max(rss) for _, rss in singles[size, S])
            single_sum = max(sum(rss) for _, rss in singles[size, S])
            print(f"| {size} | {S} | {pop_s:.1f} | {single_s:.1f} | {S * steps / pop_s:,.0f} "
                  f"| {S * steps / single_s:,.0f} "
                  f"| {single_s / pop_s:.2f}x | {pop_rss / 2**20:,.0f} MiB | {single_max / 2**20:,.0f} MiB "
                  f"({single_sum / 2**20:,.0f} MiB) |")
    print("target: at minibatch 50, S = 4 in one process >= 3x the per-seed throughput of 4 single runs")


if __name__ == "__main__":
    main()
