"""Wall-time cost of KL profiling: the same run with --kl and with --no-kl, interleaved, side by side.

    python benchmarks/kl_overhead.py [--rounds 3] [--iterations 3] [-- extra flags for the script]

Default setting: HalfCheetah-v5, 64 envs x 100 steps, minibatch size 50 (1,280 updates per iteration).
The time compared is the training loop's own (summary.json's wall_time_s: rollouts, updates, KL, logging),
without interpreter start-up and env construction, which do not depend on the flag.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed_run(runs_dir, name, flags):
    cmd = [sys.executable, os.path.join(ROOT, "ppo_continuous_kl.py"), "--runs-dir", runs_dir, "--run-name", name, *flags]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(runs_dir, name, "summary.json")) as f:
        return json.load(f)["wall_time_s"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="pairs of runs (kl, no-kl), interleaved")
    parser.add_argument("--iterations", type=int, default=3, help="PPO iterations per run")
    parser.add_argument("--env-id", default="HalfCheetah-v5")
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--num-steps", type=int, default=100)
    parser.add_argument("--minibatch-size", type=int, default=50)
    parser.add_argument("extra", nargs="*", help="more flags for ppo_continuous_kl.py (after --)")
    opts = parser.parse_args()
    flags = ["--env-id", opts.env_id, "--num-envs", str(opts.num_envs), "--num-steps", str(opts.num_steps),
             "--minibatch-size", str(opts.minibatch_size),
             "--total-timesteps", str(opts.iterations * opts.num_envs * opts.num_steps), *opts.extra]
    print(f"setting: {' '.join(flags)}")
    ratios = []
    with tempfile.TemporaryDirectory() as runs_dir:
        for r in range(opts.rounds):
            with_kl = timed_run(runs_dir, f"kl{r}", [*flags, "--kl"])
            without = timed_run(runs_dir, f"nokl{r}", [*flags, "--no-kl"])
            ratios.append(with_kl / without)
            print(f"round {r + 1}: --kl {with_kl:.2f} s, --no-kl {without:.2f} s, ratio {ratios[-1]:.3f}", flush=True)
    print(f"kl/no-kl wall-time ratio: median {statistics.median(ratios):.3f} over {opts.rounds} rounds "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f}); target <= 1.10")


if __name__ == "__main__":
    main()
