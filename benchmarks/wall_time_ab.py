"""Wall-time ratio of two flag sets, or two versions, of ppo_continuous_kl.py on one setting, runs interleaved.

    python benchmarks/wall_time_ab.py                                  # KL profiling: --kl against --no-kl
    python benchmarks/wall_time_ab.py --a="--compile on" --b="--compile off"   # the compiled update against eager
    git worktree add /tmp/before fe01094~1                             # a version without the update anatomy
    python benchmarks/wall_time_ab.py --a= --b= --b-root /tmp/before   # what recording the anatomy costs
    python benchmarks/wall_time_ab.py --num-envs 500 --minibatch-size 1000 --iterations 2
    python benchmarks/wall_time_ab.py --env-id Humanoid-v5 --num-envs 500 --minibatch-size 50 --iterations 3 \
        --rounds 1 --together 2 --a="--kl --env-threads 1" --b="--no-kl --env-threads 1"   # as the study runs

Default setting: HalfCheetah-v5, 64 envs x 100 steps, minibatch size 50 (1,280 updates per iteration).
The time compared is that of iterations 2 on (summary.json's iteration_wall_s: rollout, update, KL, logging):
the first holds one-off costs (a compile, the first allocations), start-up and env construction none of the
flags change. With --together N, each side runs as N copies at once (different seeds), as a study runs its runs
side by side, and its time is the mean of theirs.
"""
import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed_runs(root, runs_dir, name, flags, together):
    """Mean over `together` copies started at once (seeds 1, 2, ...) of the seconds of iterations 2 on."""
    names = [f"{name}_s{seed}" for seed in range(1, together + 1)]
    procs = [subprocess.Popen([sys.executable, os.path.join(root, "ppo_continuous_kl.py"), "--runs-dir", runs_dir,
                               "--run-name", run, "--seed", str(seed), *flags], stdout=subprocess.DEVNULL)
             for seed, run in enumerate(names, 1)]
    if any(proc.wait() for proc in procs):
        sys.exit(f"error: a run of [{' '.join(flags)}] failed")
    seconds = []
    for run in names:
        with open(os.path.join(runs_dir, run, "summary.json")) as f:
            seconds.append(sum(json.load(f)["iteration_wall_s"][1:]))
    return statistics.mean(seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", default="--kl", help="flags of the first run of each pair (the numerator)")
    parser.add_argument("--b", default="--no-kl", help="flags of the second run of each pair (the denominator)")
    parser.add_argument("--rounds", type=int, default=3, help="pairs of runs, interleaved")
    parser.add_argument("--iterations", type=int, default=4, help="PPO iterations per run (the first is not timed)")
    parser.add_argument("--together", type=int, default=1, help="copies of each run started at once (default: 1)")
    parser.add_argument("--env-id", default="HalfCheetah-v5")
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--num-steps", type=int, default=100)
    parser.add_argument("--minibatch-size", type=int, default=50)
    parser.add_argument("--a-root", default=ROOT, help="checkout whose script the first runs use (default: this one)")
    parser.add_argument("--b-root", default=ROOT, help="checkout whose script the second runs use (default: this one)")
    opts = parser.parse_args()
    if opts.iterations < 2:
        sys.exit("error: --iterations must be >= 2 (the first is not timed)")
    for flag, root in (("--a-root", opts.a_root), ("--b-root", opts.b_root)):
        if not os.path.isfile(os.path.join(root, "ppo_continuous_kl.py")):
            sys.exit(f"error: {flag} {root} holds no ppo_continuous_kl.py; give a checkout of this project")
    setting = ["--env-id", opts.env_id, "--num-envs", str(opts.num_envs), "--num-steps", str(opts.num_steps),
               "--minibatch-size", str(opts.minibatch_size),
               "--total-timesteps", str(opts.iterations * opts.num_envs * opts.num_steps)]
    print(f"setting: {' '.join(setting)}; timing iterations 2-{opts.iterations}, {opts.together} run(s) at once; "
          f"a: {opts.a_root}, b: {opts.b_root}")
    ratios = []
    with tempfile.TemporaryDirectory() as runs_dir:
        for r in range(opts.rounds):
            a = timed_runs(opts.a_root, runs_dir, f"a{r}", [*setting, *shlex.split(opts.a)], opts.together)
            b = timed_runs(opts.b_root, runs_dir, f"b{r}", [*setting, *shlex.split(opts.b)], opts.together)
            ratios.append(a / b)
            print(f"round {r + 1}: [{opts.a}] {a:.2f} s, [{opts.b}] {b:.2f} s, ratio {ratios[-1]:.3f}", flush=True)
    print(f"[{opts.a}] / [{opts.b}] wall-time ratio: median {statistics.median(ratios):.3f} over {opts.rounds} rounds "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f})")


if __name__ == "__main__":
    main()
