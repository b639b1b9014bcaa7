# The paper's two sweeps, behind sweep_minibatch.sh and sweep_env_rollout.sh: their options, the grid of runs and
# their names, the runs already on disk checked against the sweep's flags, the runs grouped into processes, every
# command checked by the training script's own flag checks before anything starts, and the two launchers
# (sweep_launchers.py): local processes (--jobs at a time) or one SLURM job array. The entry scripts run
# `python -m ppo_kl.sweeps minibatch|env_rollout [options] [-- flags for ppo_continuous_kl.py]`; only the standard
# library is imported until the runs are checked, so --help, bad options and the SLURM array tasks start at once.
import io
import json
import os
import pickle
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from contextlib import redirect_stderr
from dataclasses import asdict, dataclass
from typing import NamedTuple

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository
SCRIPT = os.path.join(HERE, "ppo_continuous_kl.py")

# Each sweep's own options with their defaults, then the options both take.
GRIDS = {
    "minibatch": {"--sizes": "50 100 250 500 1000", "--num-envs": "500", "--num-steps": "100"},
    "env_rollout": {"--shapes": "1000x50 500x100 100x500 50x1000", "--minibatch-size": "1000"},
}
COMMON = {"--envs": "Humanoid-v5 HalfCheetah-v5 Ant-v5 Walker2d-v5", "--seeds": "1 2 3 4",
          "--total-timesteps": "5000000",
          # CleanRL's normalisation, one running mean/var per env: what the paper ran, and the script's default
          "--norm-stats": "per-env",
          # every 2 iterations = every 100,000 env steps at the sweeps' 50,000-step batches: all settings alike
          "--eval-every": "2", "--seeds-per-process": "auto", "--runs-dir": None, "--jobs": "",  # runs dir: per sweep
          "--progress-every": "60", "--launcher": "local", "--partition": "", "--time": "", "--cpus-per-task": "1",
          "--gpus": "", "--mem": "", "--requeue-before": "300"}
LOCAL_ONLY = ("--progress-every",)
SLURM_ONLY = ("--partition", "--time", "--cpus-per-task", "--gpus", "--mem", "--requeue-before")
# The training flags that the sweep sets for each run, which the flags after -- must leave alone.
SWEEP_SETS = ("--env-id", "--seed", "--num-seeds", "--num-envs", "--num-steps", "--minibatch-size",
              "--num-minibatches", "--total-timesteps", "--norm-stats", "--eval-every", "--runs-dir", "--run-name")

USAGE = """usage: {prog} [options] [-- extra flags for ppo_continuous_kl.py]

Runs ppo_continuous_kl.py for every {what} x seed.
N processes at a time, each process's output in RUNS_DIR/logs/NAME.log, a progress line as each starts and
ends and every --progress-every seconds. Run names are ENV__{{N_env}}x{{N_rollout}}__mb{{SIZE}}__s{{SEED}}. SIGTERM,
Ctrl-C or SIGHUP stops the sweep: its runs write a checkpoint and exit, and so does the sweep (exit 128 + the
signal's number). A second launch skips runs that completed (their folder holds summary.json),
resumes those that hold a checkpoint.pt and starts again the others. Runs already in RUNS_DIR that ran with
other flags than the sweep's (another --total-timesteps, other flags after --, ...) are neither skipped nor
rerun: the sweep refuses to start, lists them and their flags, and leaves the choice (another --runs-dir, or
delete them to run them again). A failed run does not stop the others; the sweep then exits 1 and lists them.
A bad option, or a run's command that the training script's own checks refuse (dry-run included), ends the
sweep with one line "error: ..." and exit 2 before any run starts.

{grid}
  --envs "A B"            envs (default: {--envs})
  --seeds "1 2"           seeds, integers from 0 (default: {--seeds})
  --total-timesteps N     env steps per run (default: {--total-timesteps}; the paper does not state its own)
  --norm-stats MODE       per-env or shared: the runs' observation/reward normalisation statistics (default:
                          {--norm-stats}, one running mean/var per env as CleanRL keeps them, which is what the paper
                          ran, and the training script's default; shared: one for all of a run's envs)
  --eval-every N          evaluate each run every N iterations and after its last, on separate envs, into
                          eval/episodic_return (default: {--eval-every}, i.e. every 100,000 env steps of the sweeps'
                          50,000-step batches: every setting is evaluated at the same env steps, so their returns
                          compare step for step; 0: no evaluation)
  --seeds-per-process K   train up to K consecutive seeds of a setting in one process, in lockstep (the training
                          script's --num-seeds; the run name is then passed with {{seed}}), into the usual run
                          folders; a relaunch groups only the seeds not completed; a process of seeds A..B logs to
                          ENV__..__sA-B.log. all: every seed of a setting in one process. Default: auto, all when
                          the runs get a GPU (local: nvidia-smi lists one; slurm: --gpus), else 1: on a CPU, a
                          population costs each seed what a single run costs (README, How fast), and single runs
                          spread over the cores
  --runs-dir DIR          where the run folders go (default: {--runs-dir})
  --jobs N                processes at a time (default: one per core, {cores} here, since a run is
                          single-threaded; under slurm: array tasks at a time, default no limit)
  --progress-every S      local: a progress line every S seconds while runs go: runs done, running and left,
                          elapsed, and the time left estimated from the runs' times and progress (default: {progress})
  --launcher local|slurm  local runs them here (default); slurm submits the processes not yet completed as one
                          SLURM job array, one process per task, requeued on preemption and before its time
                          limit, each resuming from its checkpoint. Its scripts go to RUNS_DIR/slurm/
  --partition P           slurm: partition (default: the cluster's)
  --time T                slurm: time limit of each task, as sbatch takes it: MM, HH:MM:SS, D-HH:MM
                          (default: the partition's); a longer run is requeued and resumes
  --cpus-per-task N       slurm: cores per task (default: {--cpus-per-task}; a run is single-threaded)
  --gpus G                slurm: GPUs per task, N or TYPE:N (default: none)
  --mem M                 slurm: memory per task, like 4G (default: the partition's)
  --requeue-before S      slurm: this many seconds before its time limit a run is stopped (it checkpoints) and
                          requeued with a fresh limit (default: {--requeue-before}; longer than one iteration)
  --dry-run               print one command per line (a "#" line before those that resume, for the runs skipped
                          as completed and for a folder deleted to start afresh), run nothing; slurm: the sbatch
                          command, the array script and its command list, submit nothing
  -h, --help              this text"""
GRID_USAGE = {
    "minibatch": ("env x minibatch size", """\
  --sizes "50 1000"       minibatch sizes, each dividing N_env x N_rollout (default: {--sizes})
  --num-envs N            N_env (default: {--num-envs})
  --num-steps N           N_rollout (default: {--num-steps})"""),
    "env_rollout": ("env x (N_env x N_rollout) shape", """\
  --shapes "1000x50 ..."  N_env x N_rollout settings (default: {--shapes})
  --minibatch-size N      the fixed minibatch size (default: {--minibatch-size}, i.e. 50 minibatches of a 50,000
                          batch. The paper does not print it for this study; 1000 is the largest size of its
                          minibatch study, whose 500 x 100 : 50 x 1000 setting this sweep then shares)"""),
}


def usage(grid, prog):
    defaults = {**GRIDS[grid], **COMMON, "--runs-dir": f"runs/{grid}"}
    what, options = GRID_USAGE[grid]
    return USAGE.format(prog=prog, what=what, grid=options.format(**defaults), cores=cores(),
                        progress=defaults["--progress-every"], **defaults)


def cores():
    # One run per core: a run is single-threaded (torch --num-threads 1; the KL worker thread uses the time the
    # update loop leaves), so more runs than cores only slow each other down. With a GPU the env stepping still
    # runs on the CPU, so the cores stay the limit.
    return len(os.sched_getaffinity(0))


def error(message):
    """One line on stderr and exit 2: how every bad option ends, before any run starts."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def say(line, file=None):
    try:
        print(line, file=file or sys.stdout, flush=True)
    except OSError:
        pass  # a terminal gone (SIGHUP) must not stop the sweep


# ---- the options, checked in the order of the messages a user meets

def parse(grid, argv, prog):
    """The options as given (strings, checked by check_options), the ones given, and the flags after --."""
    opts = {**GRIDS[grid], **COMMON, "--runs-dir": f"runs/{grid}", "--dry-run": False}
    given, i = [], 0
    while i < len(argv):
        flag = argv[i]
        if flag in ("-h", "--help"):
            print(usage(grid, prog))
            sys.exit(0)
        if flag == "--":
            return opts, given, argv[i + 1:]
        if flag == "--dry-run":
            opts[flag], i = True, i + 1
            continue
        if flag not in opts:
            error(f"unknown option {flag}; the options are {' '.join(opts)} -h --help (see --help)")
        if i + 1 == len(argv) or argv[i + 1].startswith("--"):
            error(f"{flag} needs a value (see --help)")
        if argv[i + 1] == "":
            error(f"{flag} needs a value, got an empty one (see --help)")
        opts[flag] = argv[i + 1]
        given.append(flag)
        i += 2
    return opts, given, []


def positive_int(flag, text):
    # no sign, no leading zero, at most 18 digits: read alike by the sweep, the training script and a person
    if not re.fullmatch(r"[1-9][0-9]{0,17}", text):
        error(f"{flag} takes positive integers, got '{text}'")
    return int(text)


def split_list(flag, text, what):
    """The words of a list option (separated by spaces or commas): at least one, none twice (two runs of one name)."""
    words = text.replace(",", " ").split()
    if not words:
        error(f"{flag} takes {what}, got none")
    for i, word in enumerate(words):
        if word in words[:i]:
            error(f"{flag} gives '{word}' twice; it takes {what}, each once")
    return words


def check_options(grid, opts, given, extra):
    """Checks every option and fills opts with their values; returns the grid's settings (N_env, N_rollout, size)."""
    if grid == "minibatch":
        num_envs = positive_int("--num-envs", opts["--num-envs"])
        num_steps = positive_int("--num-steps", opts["--num-steps"])
        for size in opts["--sizes"].replace(",", " ").split():
            positive_int("--sizes", size)
        sizes = split_list("--sizes", opts["--sizes"],
                           f"minibatch sizes dividing N_env x N_rollout = {num_envs * num_steps}, like '50 100'")
        settings = [(num_envs, num_steps, int(size)) for size in sizes]
    else:
        size = positive_int("--minibatch-size", opts["--minibatch-size"])
        for shape in opts["--shapes"].replace(",", " ").split():
            if not re.fullmatch(r"[1-9][0-9]{0,8}x[1-9][0-9]{0,8}", shape):
                error(f"--shapes takes N_envxN_rollout like 1000x50 (positive integers), got '{shape}'")
        shapes = split_list("--shapes", opts["--shapes"], "N_envxN_rollout settings, like '1000x50 500x100'")
        settings = [(*map(int, shape.split("x")), size) for shape in shapes]
    check_common_options(opts, given, extra)
    for num_envs, num_steps, size in settings:  # what every run of a setting would fail on
        batch = num_envs * num_steps
        if batch % size:
            error(f"--sizes: {size} does not divide N_env x N_rollout = {batch}" if grid == "minibatch" else
                  f"--minibatch-size {size} does not divide {num_envs}x{num_steps} = {batch}")
        if size < 2 and "--no-norm-adv" not in extra:
            error(f"{'--sizes' if grid == 'minibatch' else '--minibatch-size'} takes sizes of 2 or more (the "
                  f"advantages of a minibatch are normalised by their std; or -- --no-norm-adv), got {size}")
        if opts["--total-timesteps"] < batch:
            error(f"--total-timesteps takes at least one iteration, N_env x N_rollout = {num_envs} x {num_steps} = "
                  f"{batch} steps, got {opts['--total-timesteps']}")
    return settings


def check_common_options(opts, given, extra):
    opts["--total-timesteps"] = positive_int("--total-timesteps", opts["--total-timesteps"])
    opts["--envs"] = split_list("--envs", opts["--envs"], "Gymnasium env ids, like 'Hopper-v5 Ant-v5'")
    for env in opts["--envs"]:
        if "/" in env:
            error(f"--envs takes Gymnasium env ids without '/' (a run's folder is named after its env), got '{env}'")
    seeds = "integers from 0 to 2147483647, like '1 2 3'"
    for seed in opts["--seeds"].replace(",", " ").split():
        # the training script's seeds: env i of seed s gets seed s + i, in [0, 2^32)
        if not re.fullmatch(r"0|[1-9][0-9]{0,9}", seed) or int(seed) >= 2**31:
            error(f"--seeds takes {seeds}, got '{seed}'")
    opts["--seeds"] = [int(seed) for seed in split_list("--seeds", opts["--seeds"], seeds)]
    if opts["--norm-stats"] not in ("shared", "per-env"):
        error(f"--norm-stats takes per-env or shared, got '{opts['--norm-stats']}'")
    if not re.fullmatch(r"0|[1-9][0-9]{0,8}", opts["--eval-every"]):
        error(f"--eval-every takes an integer >= 0 (iterations; 0: no evaluation), got '{opts['--eval-every']}'")
    opts["--eval-every"] = int(opts["--eval-every"])
    spp = opts["--seeds-per-process"]
    if spp not in ("all", "auto") and not re.fullmatch(r"[1-9][0-9]{0,17}", spp):
        error(f"--seeds-per-process takes a positive integer, all or auto, got '{spp}'")
    for word in extra:
        if not word.isprintable():  # a command is one line: of --dry-run, of a SLURM array's command list
            error(f"the flags after -- take printable text, got {word!r}")
        # --flag=value and --flag_name are the same flag to the training script
        if word.split("=")[0].replace("_", "-") in SWEEP_SETS:
            error(f"the flags after -- may not set {word.split('=')[0]}, which the sweep sets for each run (see "
                  "--help for its own options)")
    if opts["--launcher"] == "local":
        if wrong := [flag for flag in given if flag in SLURM_ONLY]:
            error(f"{wrong[0]} needs --launcher slurm (see --help)")
        opts["--jobs"] = positive_int("--jobs", opts["--jobs"] or str(cores()))
        opts["--progress-every"] = positive_int("--progress-every", opts["--progress-every"])
    elif opts["--launcher"] == "slurm":
        if wrong := [flag for flag in given if flag in LOCAL_ONLY]:
            error(f"{wrong[0]} needs --launcher local (see --help)")
        check_slurm_options(opts)
    else:
        error(f"--launcher takes local or slurm, got '{opts['--launcher']}'")
    if spp == "auto":  # a population fills a GPU; on a CPU it costs each seed what a single run costs
        spp = "all" if (opts["--gpus"] if opts["--launcher"] == "slurm" else has_gpu()) else "1"
    opts["--seeds-per-process"] = len(opts["--seeds"]) if spp == "all" else int(spp)
    if opts["--seeds-per-process"] > 1:
        opts["--seeds"].sort()  # consecutive seeds share a process
    check_runs_dir(opts["--runs-dir"])


def has_gpu():
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return any(line.startswith("GPU") for line in out.splitlines())


def check_slurm_options(opts):
    opts["--jobs"] = positive_int("--jobs", opts["--jobs"]) if opts["--jobs"] else None
    opts["--cpus-per-task"] = positive_int("--cpus-per-task", opts["--cpus-per-task"])
    before = opts["--requeue-before"] = positive_int("--requeue-before", opts["--requeue-before"])
    if before > 65535:  # sbatch keeps the --signal lead time in 16 bits
        error(f"--requeue-before takes seconds up to 65535, got '{before}'")
    if opts["--partition"] and not re.fullmatch(r"[A-Za-z0-9_.,-]+", opts["--partition"]):
        error(f"--partition takes a partition name (or a comma-separated list), got '{opts['--partition']}'")
    if limit := opts["--time"]:
        seconds = slurm_seconds(limit)
        if seconds is None:
            error(f"--time takes MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS, got '{limit}'")
        if seconds <= before:  # otherwise the warning comes as the run starts, and it is requeued forever
            error(f"--time {limit} must be longer than --requeue-before ({before} seconds)")
    if opts["--gpus"] and not re.fullmatch(r"([A-Za-z0-9_-]+:)?[1-9][0-9]*", opts["--gpus"]):
        error(f"--gpus takes N or TYPE:N, got '{opts['--gpus']}'")
    if opts["--mem"] and not re.fullmatch(r"[1-9][0-9]*[KMGT]?", opts["--mem"]):
        error(f"--mem takes a size like 4000M or 4G (units K, M, G, T), got '{opts['--mem']}'")
    if not opts["--dry-run"] and not shutil.which("sbatch"):
        error("--launcher slurm needs sbatch, which is not on PATH (run on a SLURM login node, or use --launcher "
              "local)")
    opts["--runs-dir"] = os.path.realpath(opts["--runs-dir"])  # the tasks start on other machines, perhaps elsewhere


def slurm_seconds(limit):
    """The seconds of a SLURM time limit (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS), or None."""
    if m := re.fullmatch(r"([0-9]+)-([0-9]+)(?::([0-9]+)(?::([0-9]+))?)?", limit):
        d, h, mins, s = m.groups()
    elif m := re.fullmatch(r"([0-9]+):([0-9]+):([0-9]+)", limit):
        d, (h, mins, s) = 0, m.groups()
    elif m := re.fullmatch(r"([0-9]+)(?::([0-9]+))?", limit):
        d, h, (mins, s) = 0, 0, m.groups()
    else:
        return None
    return ((int(d) * 24 + int(h)) * 60 + int(mins or 0)) * 60 + int(s or 0)


def check_runs_dir(runs_dir):
    """The runs folder must be a folder this user can write into, or one that can be made (make_runs_dir)."""
    if os.path.exists(runs_dir) and not os.path.isdir(runs_dir):
        error(f"--runs-dir takes a folder, got '{runs_dir}', which is a file")
    found = runs_dir  # the deepest part of the path that exists
    while not os.path.exists(found):
        found = os.path.dirname(found) or "."
    if not os.path.isdir(found):
        error(f"--runs-dir takes a folder, got '{runs_dir}', which lies under the file {found}")
    if not os.access(found, os.W_OK | os.X_OK):
        error(f"--runs-dir takes a folder this user can write into, got '{runs_dir}' ({found} is not writable)")


def make_runs_dir(runs_dir):
    """Makes the runs folder and proves it writable, once every option and command has been checked."""
    try:
        os.makedirs(os.path.join(runs_dir, "logs"), exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=os.path.join(runs_dir, "logs"))
        os.close(fd)
        os.remove(probe)
    except OSError:
        error(f"--runs-dir takes a folder this user can write into, got '{runs_dir}', which cannot be written")


# ---- the runs, their commands, and the runs on disk

class Run(NamedTuple):
    env: str
    num_envs: int
    num_steps: int
    size: int
    seed: int

    @property
    def name(self):
        return run_name(self, self.seed)


def run_name(run, seed):
    """ENV__{N_env}x{N_rollout}__mb{SIZE}__s{SEED}; SEED may be {seed}, the training script's placeholder for the
    seeds of a process, or A-B, the log of a process of seeds A..B."""
    return f"{run.env}__{run.num_envs}x{run.num_steps}__mb{run.size}__s{seed}"


def command(opts, run, num_seeds):
    """The training command of seeds run.seed .. run.seed + num_seeds - 1 of run's setting."""
    argv = [os.environ.get("PYTHON", "python"), SCRIPT, "--env-id", run.env, "--seed", str(run.seed)]
    argv += ["--num-seeds", str(num_seeds)] if num_seeds > 1 else []
    # one core's worth of env threads a run: the local launcher runs one per core, SLURM gives --cpus-per-task
    threads = opts["--cpus-per-task"] if opts["--launcher"] == "slurm" else 1
    return [*argv, "--num-envs", str(run.num_envs), "--num-steps", str(run.num_steps), "--minibatch-size",
            str(run.size), "--total-timesteps", str(opts["--total-timesteps"]), "--norm-stats", opts["--norm-stats"],
            "--eval-every", str(opts["--eval-every"]), "--runs-dir", opts["--runs-dir"], "--env-threads",
            str(threads), "--run-name", run.name if num_seeds == 1 else run_name(run, "{seed}"), *opts["extra"]]


def bash_quote(word):
    """A word as bash's printf %q writes it: a printed command runs as is, and reads as the sweeps always wrote it."""
    if word == "":
        return "''"
    if not word.isprintable():
        return shlex.quote(word)
    quoted = re.sub(r"""([ !"$&'()*,;<>?\[\\\]^`{|}])""", r"\\\1", word)
    quoted = re.sub(r"(^|(?<=[:=]))~", r"\\~", quoted)  # a tilde where bash would expand it
    return "\\" + quoted if quoted.startswith("#") else quoted


def checked_args(argv, name, cache):
    """The training script's Args of a command, parsed and checked by its own code (env ids, sizes, the flags after
    --); a refusal ends the sweep with one line naming the run."""
    if tuple(argv) not in cache:
        try:
            from ppo_kl.flags import resolve_args, parse_flags
            from ppo_continuous_kl import Args
        except ImportError as e:
            error(f"cannot check the sweep's runs: {sys.executable} cannot import the training script ({e}); set "
                  "PYTHON to the Python of its environment")
        if "-h" in argv or "--help" in argv:
            error(f"ppo_continuous_kl.py refuses run {name}: the flags after -- ask for its --help")
        try:
            with redirect_stderr(io.StringIO()):  # what tyro says is in the message parse_flags makes of it
                cache[tuple(argv)] = resolve_args(parse_flags(Args, argv[2:]))
        except SystemExit as e:
            error(f"ppo_continuous_kl.py refuses run {name}: {str(e.code).removeprefix('error: ')}")
    return cache[tuple(argv)]


def has_file(opts, run, name):
    return os.path.isfile(os.path.join(opts["--runs-dir"], run.name, name))


def check_runs_on_disk(opts, runs, checked):
    """The runs already in the runs folder (summary.json or checkpoint.pt) against this sweep's flags, compared as
    the training script compares a resumed run's. Any difference refuses the sweep, with the runs and their flags
    listed. Returns the iteration of each checkpoint, so that only runs cut short at the same iteration resume as
    one process."""
    from ppo_kl.run_folder import describe_flags, differing_flags
    differing, iterations = [], {}
    for run in runs:
        finished = has_file(opts, run, "summary.json")
        if not finished and not has_file(opts, run, "checkpoint.pt"):
            continue
        now = asdict(checked[run]) | {"run_name": run.name}
        try:
            with open(os.path.join(opts["--runs-dir"], run.name, "args.json")) as f:
                before = json.load(f)
        except (OSError, ValueError) as e:
            differing.append(f"{run.name}: no readable args.json ({e})")
            continue
        if keys := differing_flags(before, now):
            differing.append(f"{run.name}: " + describe_flags(keys, before, now, "run"))
        elif not finished:
            import torch
            try:
                iterations[run.name] = int(torch.load(os.path.join(opts["--runs-dir"], run.name, "checkpoint.pt"),
                                                      map_location="cpu", weights_only=False)["iteration"])
            except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, KeyError, TypeError, ValueError):
                iterations[run.name] = run.name  # resumes alone; the training script says what is wrong with it
    if differing:
        runs_dir = opts["--runs-dir"]
        print(f"these runs in {runs_dir} ran with other flags than this sweep's (this sweep's value, then the run's):",
              file=sys.stderr)
        print("".join(f"  {line}\n" for line in differing), end="", file=sys.stderr)
        error(f"{len(differing)} run(s) in {runs_dir} (listed above) ran with other flags than this sweep's; nothing "
              "was started. Launch with their flags, or pick another --runs-dir, or delete those run folders to run "
              "them again with these flags")
    return iterations


# ---- the processes

@dataclass
class Process:
    name: str  # its log's: the run's, or ENV__..__sA-B
    runs: list
    argv: list
    resumes: bool


def plan_processes(opts, runs, iterations):
    """The runs not yet completed, grouped into processes: up to --seeds-per-process consecutive seeds of one
    setting, all starting afresh or all cut short at the same iteration. Returns them and the completed runs."""
    processes, completed, group, key = [], [], [], None

    def add(group):
        first, n = group[0], len(group)
        name = first.name if n == 1 else run_name(first, f"{first.seed}-{group[-1].seed}")
        processes.append(Process(name, group, command(opts, first, n), has_file(opts, first, "checkpoint.pt")))

    for run in runs:
        if has_file(opts, run, "summary.json"):
            completed.append(run)
            continue
        # a checkpoint that appeared since the runs on disk were checked resumes alone, as an unreadable one does
        state = iterations.get(run.name, run.name) if has_file(opts, run, "checkpoint.pt") else "fresh"
        this = (run[:4], state)
        if group and (len(group) >= opts["--seeds-per-process"] or run.seed != group[-1].seed + 1 or this != key):
            add(group)
            group = []
        group.append(run)
        key = this
    if group:
        add(group)
    return processes, completed


def dry_run_notes(opts, completed, processes):
    """The "#" lines of --dry-run (comments, so that its output still runs as is): the runs skipped as completed,
    then before each process's command, whether it resumes or deletes a folder (None where neither)."""
    for run in completed:
        say(f"# skipped, completed already with the same flags: {run.name}")
    notes = []
    for process in processes:
        names = [r.name for r in process.runs]
        fresh = [name for name in names if os.path.exists(os.path.join(opts["--runs-dir"], name))]
        if process.resumes:
            notes.append(f"# resumes from its checkpoint: {' '.join(names)}")
        else:
            notes.append(f"# starts afresh, deleting the folder cut short before its first checkpoint: "
                         f"{' '.join(fresh)}" if fresh else None)
    return notes


def clear_unstarted_runs(runs_dir, runs):
    """Makes way for a process: deletes the folders of its runs that hold neither summary.json nor checkpoint.pt
    (cut short before their first checkpoint, or failed), so that they start afresh."""
    for run in runs:
        folder = os.path.join(runs_dir, run)
        if not any(os.path.isfile(os.path.join(folder, f)) for f in ("summary.json", "checkpoint.pt")):
            shutil.rmtree(folder, ignore_errors=True)


def main(argv, prog=None):
    """The sweep argv[0] (minibatch or env_rollout) with the options argv[1:]; returns its exit status."""
    grid = argv[0]
    opts, given, extra = parse(grid, argv[1:], prog or f"./sweep_{grid}.sh")
    settings = check_options(grid, opts, given, extra)
    opts["extra"] = extra
    runs = [Run(env, *setting, seed) for env in opts["--envs"] for setting in settings for seed in opts["--seeds"]]
    # every run's command through the training script's checks, then the runs on disk against them; a process of
    # several seeds has a command of its own
    cache = {}
    checked = {run: checked_args(command(opts, run, 1), run.name, cache) for run in runs}
    processes, completed = plan_processes(opts, runs, check_runs_on_disk(opts, runs, checked))
    for process in processes:
        checked_args(process.argv, process.name, cache)
    if not opts["--dry-run"]:
        make_runs_dir(opts["--runs-dir"])
    from ppo_kl.sweep_launchers import run_local, submit_slurm_array  # they use this module's helpers

    if opts["--launcher"] == "slurm":
        return submit_slurm_array(opts, grid, processes, completed)
    if not opts["--dry-run"]:
        return run_local(opts, runs, processes, completed)
    for process, note in zip(processes, dry_run_notes(opts, completed, processes)):
        if note:
            say(note)
        say(" ".join(map(bash_quote, process.argv)))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:], os.environ.pop("SWEEP_SCRIPT", None)))
    except KeyboardInterrupt:  # Ctrl-C while the runs are checked: nothing was started
        sys.exit(128 + signal.SIGINT)
