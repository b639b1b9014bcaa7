"""A machine's first compiled run against a warm one: whole-process wall time with an empty compile cache, then
again with the cache that run left.

    python benchmarks/cold_start.py                       # HalfCheetah-v5, 500 x 100, minibatch 50, 5 iterations
    python benchmarks/cold_start.py --iterations 2 --env="TORCHINDUCTOR_COMPILE_THREADS=1"

Each round gives the update's compile cache (TORCHINDUCTOR_CACHE_DIR) a new empty folder, runs our script once
into it (cold) and once more (warm), one program at a time; --compile on, every other flag at its default. The
ratio is cold over warm (target: at most 1.2x). The first iteration's seconds (summary.json) hold the compile;
the rest of the difference is the start-up.
"""
import argparse
import json
import os
import shlex
import statistics
import tempfile

from processes import ours_command, run_one  # this folder is on the path when the script runs


def first_iteration_s(runs_dir, name):
    with open(os.path.join(runs_dir, name, "summary.json")) as f:
        return json.load(f)["iteration_wall_s"][0]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=5, help="PPO iterations per run (default: %(default)s)")
    parser.add_argument("--num-envs", type=int, default=500)
    parser.add_argument("--num-steps", type=int, default=100)
    parser.add_argument("--minibatch-size", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=1, help="rounds of cold then warm (default: %(default)s)")
    parser.add_argument("--env", default="", help="extra environment for both runs, NAME=VALUE ... after =")
    opts = parser.parse_args()
    extra_env = dict(item.split("=", 1) for item in shlex.split(opts.env))
    print(f"setting: HalfCheetah-v5, {opts.num_envs} x {opts.num_steps}, minibatch {opts.minibatch_size}, "
          f"{opts.iterations} iterations, --compile on, whole process{', ' + opts.env if opts.env else ''}")
    seconds = {"cold": [], "warm": []}
    with tempfile.TemporaryDirectory() as runs_dir:
        for r in range(1, opts.rounds + 1):
            env = {**os.environ, **extra_env, "TORCHINDUCTOR_CACHE_DIR": os.path.join(runs_dir, f"cache{r}")}
            for state in ("cold", "warm"):
                name = f"{state}{r}"
                cmd = ours_command(runs_dir, name, opts.num_envs, opts.num_steps, opts.minibatch_size,
                                   opts.iterations, ["--compile", "on"])
                s, _ = run_one(cmd, runs_dir, f"{name}.log", env)
                seconds[state].append(s)
                print(f"round {r}: {state} {s:.1f} s, of which the first iteration "
                      f"{first_iteration_s(runs_dir, name):.1f} s", flush=True)
    cold, warm = statistics.median(seconds["cold"]), statistics.median(seconds["warm"])
    print(f"median of {opts.rounds} round(s): cold {cold:.1f} s, warm {warm:.1f} s, cold / warm {cold / warm:.2f}x "
          "(target: at most 1.2x)")


if __name__ == "__main__":
    main()
