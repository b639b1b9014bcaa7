"""A machine's first compiled run against a warm one: whole-process wall time with an empty compile cache, then
again with the cache that run left.

    python benchmarks/cold_start.py                       # HalfCheetah-v5, 500 x 100, minibatch 50, 5 iterations
    python benchmarks/cold_start.py --iterations 2 --env="TORCHINDUCTOR_COMPILE_THREADS=1"
    python benchmarks/cold_start.py --compiler-times      # also what each C++ compilation of the cold run cost

Each round gives the update's compile cache (TORCHINDUCTOR_CACHE_DIR) a new empty folder, runs our script once
into it (cold) and once more (warm), one program at a time; --compile on, every other flag at its default. The
ratio is cold over warm (target: at most 1.2x). The first iteration's seconds (summary.json) hold the compile;
the rest of the difference is the start-up. --compiler-times puts a wrapper in front of the C++ compiler (CXX)
that logs each call's seconds, and sums the cold run's calls by what they build: the update's kernels (each its
own library), Inductor's precompiled header, and its probes of the CPU's vector instruction sets.
"""
import argparse
import json
import os
import shlex
import shutil
import statistics
import tempfile
from collections import defaultdict

from processes import ours_command, run_one  # this folder is on the path when the script runs


def first_iteration_s(runs_dir, name):
    with open(os.path.join(runs_dir, name, "summary.json")) as f:
        return json.load(f)["iteration_wall_s"][0]


def timing_compiler(folder):
    """A CXX wrapper that runs the real compiler and appends "<seconds> <its arguments>" to folder/cxx.log."""
    cxx = shutil.which(os.environ.get("CXX", "g++")) or "g++"
    path, log = os.path.join(folder, "cxx"), os.path.join(folder, "cxx.log")
    with open(path, "w") as f:
        f.write(f"""#!/usr/bin/env bash
start=$(date +%s.%N); {shlex.quote(cxx)} "$@"; rc=$?
echo "$(echo "$(date +%s.%N) - $start" | bc) $*" >> {shlex.quote(log)}; exit $rc
""")
    os.chmod(path, 0o755)
    return path, log


def compiler_times(log):
    """The compiler calls of log (timing_compiler's), by what each built: [(kind, calls, seconds, longest)]."""
    kinds = defaultdict(list)
    with open(log) as f:
        for line in f:
            seconds, *argv = line.split()
            source = next((a for a in argv if a.endswith((".cpp", ".h", ".hpp"))), "")
            kind = ("a kernel of the update" if source.endswith(".main.cpp") else
                    "the precompiled header" if "-x" in argv and "c++-header" in argv else
                    "a version query" if source == "" else "an instruction-set probe or helper")
            kinds[kind].append(float(seconds))
    return [(kind, len(t), sum(t), max(t)) for kind, t in sorted(kinds.items())]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=5, help="PPO iterations per run (default: %(default)s)")
    parser.add_argument("--num-envs", type=int, default=500)
    parser.add_argument("--num-steps", type=int, default=100)
    parser.add_argument("--minibatch-size", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=1, help="rounds of cold then warm (default: %(default)s)")
    parser.add_argument("--env", default="", help="extra environment for both runs, NAME=VALUE ... after =")
    parser.add_argument("--compiler-times", action="store_true",
                        help="log the seconds of each C++ compiler call of the cold runs and sum them by kind")
    opts = parser.parse_args()
    extra_env = dict(item.split("=", 1) for item in shlex.split(opts.env))
    if opts.compiler_times and not shutil.which("bc"):
        parser.error("--compiler-times needs bc (the wrapper's clock arithmetic)")
    print(f"setting: HalfCheetah-v5, {opts.num_envs} x {opts.num_steps}, minibatch {opts.minibatch_size}, "
          f"{opts.iterations} iterations, --compile on, whole process{', ' + opts.env if opts.env else ''}")
    seconds = {"cold": [], "warm": []}
    with tempfile.TemporaryDirectory() as runs_dir:
        for r in range(1, opts.rounds + 1):
            env = {**os.environ, **extra_env, "TORCHINDUCTOR_CACHE_DIR": os.path.join(runs_dir, f"cache{r}")}
            if opts.compiler_times:
                env["CXX"], log = timing_compiler(tempfile.mkdtemp(dir=runs_dir))
            for state in ("cold", "warm"):
                name = f"{state}{r}"
                cmd = ours_command(runs_dir, name, opts.num_envs, opts.num_steps, opts.minibatch_size,
                                   opts.iterations, ["--compile", "on"])
                s, _ = run_one(cmd, runs_dir, f"{name}.log", env)
                seconds[state].append(s)
                print(f"round {r}: {state} {s:.1f} s, of which the first iteration "
                      f"{first_iteration_s(runs_dir, name):.1f} s", flush=True)
                if opts.compiler_times and state == "cold" and os.path.exists(log):
                    for kind, calls, total, longest in compiler_times(log):
                        print(f"  compiler calls, {kind}: {calls}, {total:.1f} s in all, longest {longest:.2f} s")
    cold, warm = statistics.median(seconds["cold"]), statistics.median(seconds["warm"])
    print(f"median of {opts.rounds} round(s): cold {cold:.1f} s, warm {warm:.1f} s, cold / warm {cold / warm:.2f}x "
          "(target: at most 1.2x)")


if __name__ == "__main__":
    main()
