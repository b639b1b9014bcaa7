# The run's folder on disk for ppo_continuous_kl.py: which folder a command's run lives in (the one --run-name
# names, the latest unfinished one of the same flags, or a new one), whether the code and flags of a run on disk
# match this command's, the free space a run needs, the TensorBoard layout, and SIGTERM/SIGINT turned into a flag
# the run checks at safe points. The checkpoint itself is in checkpoints.py.
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict


from ppo_kl.checkpoints import read_checkpoint
from ppo_kl.run_record import BOOKKEEPING, fail, read_json


# A resumed run may set these anew: bookkeeping, and what only the final or periodic evaluation reads (the training
# is the same); a folder renamed by hand resumes under its new name
NOT_COMPARED = BOOKKEEPING | {"save_model", "eval_episodes"}
CODE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository: the script and ppo_kl/


def code_version():
    """The code this process runs: the git commit of the script's checkout, with "-dirty" when its tracked files
    differ from that commit; outside a git checkout, a hash of the script's and the package's .py files."""
    def git(*argv):
        return subprocess.run(["git", "-C", CODE_ROOT, *argv], capture_output=True, text=True, timeout=30,
                              check=True).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        return commit + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.SubprocessError):
        digest = hashlib.sha256()
        names = [os.path.join(folder, f) for folder in ("", "ppo_kl")
                 for f in os.listdir(os.path.join(CODE_ROOT, folder)) if f.endswith(".py")]
        for name in sorted(names):
            with open(os.path.join(CODE_ROOT, name), "rb") as f:
                digest.update(name.encode() + b"\0" + f.read())
        return "sha256:" + digest.hexdigest()[:16]


def differing_flags(saved, now):
    """The flags in which a run on disk (its args.json or checkpoint) and this command differ."""
    return [k for k in sorted((saved.keys() | now.keys()) - NOT_COMPARED) if saved.get(k) != now.get(k)]


def describe_flags(keys, saved, now, whose):
    return ", ".join(f"--{k.replace('_', '-')} {now.get(k)} ({whose}: {saved.get(k)})" for k in keys)


# Run names. A run folder is one plain folder inside --runs-dir: '..' would put the run into the runs folder's
# parent, '.' spread it over the runs folder itself, a separator or an absolute name put it anywhere.
NAME_RULE = ("a run name is one folder inside --runs-dir: not empty, '.' or '..', without '/' or '\\', a leading '~' "
             "or control characters (NUL, newline, ...), at most 255 bytes")


def name_problem(name):
    """What makes `name` no plain folder name, or None."""
    if not name:
        return "is empty"
    if name in (".", ".."):
        return "names the runs folder itself" if name == "." else "names the parent of the runs folder"
    if "/" in name or "\\" in name:
        return "is a path, not a folder name"
    if name.startswith("~"):
        return "starts with '~', which a shell reads as a home folder"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "holds a control character"
    if len(name.encode("utf-8", "surrogatepass")) > 255:
        return f"is {len(name.encode('utf-8', 'surrogatepass'))} bytes long"
    return None


def default_run_name(args, unix_time, seed=None):
    """CleanRL's {env_id}__{exp_name}__{seed}__{unix time}, with path separators (namespaced env ids such as
    dm_control/cheetah-run-v0) turned into '-', so that it stays one folder."""
    seed = args.seed if seed is None else seed
    return f"{args.env_id}__{args.exp_name}__{seed}__{unix_time}".replace("/", "-").replace("\\", "-")


def seeds_of(args):
    return range(args.seed, args.seed + getattr(args, "num_seeds", 1))


def check_paths(args):
    """Refuses a --run-name or --runs-dir that cannot hold a run, before anything is written. A leading '~' of
    --runs-dir is expanded, as the shell does unless the flag is quoted or written --runs-dir=~/..."""
    args.runs_dir = os.path.expanduser(args.runs_dir)
    if not args.runs_dir or any(ord(c) < 32 or ord(c) == 127 for c in args.runs_dir):
        fail(f"--runs-dir {args.runs_dir!r}: give the path of a folder (created if missing), "
             "without control characters")
    if os.path.exists(args.runs_dir) and not os.path.isdir(args.runs_dir):
        fail(f"--runs-dir {args.runs_dir} is a file, not a folder; give a folder (it is created if missing)")
    for seed in seeds_of(args):
        if args.run_name is not None and (problem := name_problem(args.run_name.replace("{seed}", str(seed)))):
            fail(f"--run-name {args.run_name!r} {problem}; {NAME_RULE}")
        if args.run_name is None and (problem := name_problem(default_run_name(args, int(time.time()), seed))):
            fail(f"--exp-name {args.exp_name!r} makes a default run name that {problem}; {NAME_RULE}")


# Which process a run folder belongs to: the fds whose lock this process holds until it exits (the OS then drops it).
_held = {}


def hold_run_folder(run_dir):
    """Locks run_dir for this process, so that two processes never write one run: a command for a run that is going
    on elsewhere is refused, and one without --run-name passes over it. False when another process holds it. On a
    file system without flock (some network file systems) the run goes on without the lock."""
    key = os.path.realpath(run_dir)
    if key in _held:
        return True
    try:
        fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        fail(f"cannot open run folder {run_dir} ({e.strerror or e}); give a folder this user can read and write")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    except OSError:
        pass
    _held[key] = fd
    return True


def release_run_folder(run_dir):
    fd = _held.pop(os.path.realpath(run_dir), None)
    if fd is not None:
        os.close(fd)  # which drops the lock


def logged_iterations(run_dir):
    """Whether the folder shows an iteration that finished: a KL file, or a scalar in its TensorBoard events (all a
    run with --no-kl shows between checkpoints)."""
    kl_dir = os.path.join(run_dir, "kl")
    if os.path.isdir(kl_dir) and any(f.endswith(".npz") for f in os.listdir(kl_dir)):
        return True
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    for name in os.listdir(run_dir):
        if name.startswith("events.out.tfevents."):
            try:
                for event in EventFileLoader(os.path.join(run_dir, name)).Load():
                    if any(v.HasField("simple_value") or v.metadata.plugin_data.plugin_name == "scalars"
                           for v in event.summary.value):
                        return True
            except Exception:
                return True  # unreadable: kept, as if it held iterations
    return False


def clear_failed_start(run_dir):
    """Removes what a start that finished no iteration left (its flags, first checkpoint, empty kl/, events,
    videos), so that it does not block the run name; other files stay."""
    removed = []
    try:
        for name in sorted(os.listdir(run_dir)):
            path = os.path.join(run_dir, name)
            if name in ("args.json", "checkpoint.pt", "checkpoint.pt.tmp") or name.startswith("events.out.tfevents."):
                os.remove(path)
            elif name in ("kl", "videos") and os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                continue
            removed.append(name)
    except OSError as e:
        fail(f"cannot clear {run_dir}, whose earlier start finished no iteration ({e.strerror or e}); delete it")
    if removed:
        print(f"starting {run_dir} over: its earlier start finished no iteration (removed: {', '.join(removed)})",
              flush=True)


def finished_runs(members, run_names, run_dirs):
    """Finished runs given again: nothing to do when their flags are this command's (a sweep launched again skips
    them); one line naming the flags otherwise, so that a sweep never mixes runs of old and new flags under one
    name. Returns only when none of the folders holds a finished run."""
    finished = [d for d in run_dirs if os.path.exists(os.path.join(d, "summary.json"))]
    if not finished:
        return
    if len(finished) < len(run_dirs):
        fail(f"of the run folders {', '.join(run_dirs)}, only {', '.join(finished)} hold a finished run "
             "(summary.json); resume the others as single runs (--num-seeds 1), or delete them")
    for member, run_name, run_dir in zip(members, run_names, run_dirs):
        saved, now = read_json(os.path.join(run_dir, "args.json")), asdict(member) | {"run_name": run_name}
        if not isinstance(saved, dict):
            fail(f"run folder {run_dir} holds a finished run (summary.json) whose args.json is missing or unreadable; "
                 "pick another --run-name or --runs-dir")
        if differing := differing_flags(saved, now):
            fail(f"run folder {run_dir} holds a finished run (summary.json) of other flags: "
                 f"{describe_flags(differing, saved, now, 'finished run')}; pick another --run-name or --runs-dir")
    print(f"{', '.join(run_dirs)} hold{'s' if len(run_dirs) == 1 else ''} this run, finished already (summary.json): "
          "nothing to do", flush=True)
    sys.exit(0)


def open_run_folder(args, run_name, run_dir, code):
    """Takes the run folder for this process and returns the checkpoint of the unfinished run in it, or None for a
    new run, whose args.json and kl/ it writes. A finished run ends the script here (see finished_runs). A folder
    whose earlier start finished no iteration (it failed building the envs, at a non-finite first loss, or was
    stopped in its first iteration) holds nothing to keep: unless it resumes with the same flags, it starts over."""
    checkpoint_path = os.path.join(run_dir, "checkpoint.pt")
    if os.path.lexists(run_dir) and not os.path.isdir(run_dir):
        fail(f"--run-name {run_name}: {run_dir} is a file, not a run folder; pick another --run-name")
    if (args.resume and not os.path.exists(checkpoint_path)
            and not os.path.exists(os.path.join(run_dir, "summary.json"))):
        fail(f"--resume: {run_dir} holds no checkpoint.pt to resume from")
    try:
        os.makedirs(run_dir, exist_ok=True)
    except OSError as e:
        fail(f"cannot write into --runs-dir {args.runs_dir} ({e.strerror or e}); give a folder this user can write")
    if not hold_run_folder(run_dir):
        fail(f"run folder {run_dir} is in use: its run is going on in another process; wait for that to end, or pick "
             "another --run-name")
    finished_runs([args], [run_name], [run_dir])
    if not os.access(run_dir, os.W_OK):
        fail(f"cannot write into --runs-dir {args.runs_dir} (run folder {run_dir} is read-only); give a folder this "
             "user can write")
    now = asdict(args) | {"run_name": run_name, "code_version": code}
    if os.path.exists(checkpoint_path):
        checkpoint = read_checkpoint(checkpoint_path)
        differing = differing_flags(checkpoint["args"], now)
        if not differing:
            before = checkpoint["args"].get("code_version", "unknown (written before runs recorded it)")
            if before != now["code_version"]:
                print(f"note: {run_dir} was started under code {before} and resumes under {now['code_version']}; "
                      "summary.json records both", flush=True)
            return checkpoint
        if args.resume or checkpoint["iteration"] > 0 or logged_iterations(run_dir):
            fail(f"cannot resume {run_dir} with other flags than its checkpoint's: "
                 + describe_flags(differing, checkpoint["args"], now, "checkpoint"))
    elif logged_iterations(run_dir):
        fail(f"run folder {run_dir} already holds a run, without a checkpoint to resume it from; pick another "
             "--run-name or --runs-dir, or delete it")
    clear_failed_start(run_dir)
    try:
        os.makedirs(os.path.join(run_dir, "kl") if args.kl else run_dir, exist_ok=True)
        with open(os.path.join(run_dir, "args.json"), "w") as f:
            json.dump(now, f, indent=2)
    except OSError as e:
        fail(f"cannot write into --runs-dir {args.runs_dir} ({e.strerror or e}); give a folder this user can write")
    return None


def open_run_folders(members, run_names, run_dirs, code):
    finished_runs(members, run_names, run_dirs)
    return run_names, run_dirs, [open_run_folder(m, name, d, code) for m, name, d in zip(members, run_names, run_dirs)]


def continuable(run_dir, member, resume):
    """When run_dir holds an unfinished run of member's flags that a command without --run-name continues, the
    time it was last written (else None): a checkpoint to resume, or, unless --resume, a start that finished no
    iteration, to start over in place."""
    saved = read_json(os.path.join(run_dir, "args.json"))
    if (not isinstance(saved, dict) or os.path.exists(os.path.join(run_dir, "summary.json"))
            or differing_flags(saved, asdict(member)) or saved.get("num_seeds", 1) != getattr(member, "num_seeds", 1)):
        return None
    try:
        if os.path.exists(os.path.join(run_dir, "checkpoint.pt")):
            return os.path.getmtime(os.path.join(run_dir, "checkpoint.pt"))
        if not resume and not logged_iterations(run_dir):
            return os.path.getmtime(os.path.join(run_dir, "args.json"))
    except OSError:  # gone meanwhile
        pass
    return None


def unfinished_runs(args, members):
    """The unix times in the default names of the unfinished runs in --runs-dir that this command, given without
    --run-name, continues, latest first: every seed's folder named by default, of these flags, continuable."""
    prefix, found = default_run_name(members[0], ""), []
    try:
        names = os.listdir(args.runs_dir)
    except OSError:
        return []
    for name in names:
        stamp = name[len(prefix):]
        if not (name.startswith(prefix) and stamp.isdigit()):
            continue
        times = [continuable(os.path.join(args.runs_dir, default_run_name(m, stamp)), m, args.resume) for m in members]
        if None not in times:
            found.append((max(times), int(stamp)))
    return [stamp for _, stamp in sorted(found, reverse=True)]


def resolve_runs(args, members, code=None):
    """Which runs this command is, before any env is built: (run_names, run_dirs, checkpoints), one each per member
    (the args of each seed's run; one for a single run). --run-name names them ({seed} in it replaced by each seed).
    Without it the command continues the latest unfinished run of the same flags that was started without a name in
    --runs-dir, and says which: rerunning the command a run was started with resumes it, as for a named run. With
    none, --resume fails, and otherwise a new run is named as CleanRL does. code: this process's code_version()."""
    check_paths(args)
    code = code or code_version()
    if args.run_name is not None:
        names = [args.run_name.replace("{seed}", str(m.seed)) for m in members]
        return open_run_folders(members, names, [os.path.join(args.runs_dir, name) for name in names], code)
    candidates = unfinished_runs(args, members)
    for stamp in candidates:
        names = [default_run_name(m, stamp) for m in members]
        dirs = [os.path.join(args.runs_dir, name) for name in names]
        held = [d for d in dirs if hold_run_folder(d)]
        if len(held) == len(dirs):
            more = f" ({len(candidates) - 1} more; --run-name picks one)" if len(candidates) > 1 else ""
            print(f"no --run-name: continuing {', '.join(dirs)}, the latest unfinished run of these flags in "
                  f"{args.runs_dir}{more}", flush=True)
            return open_run_folders(members, names, dirs, code)
        for d in held:  # going on in another process
            release_run_folder(d)
    if args.resume:
        going_on = f" ({len(candidates)} going on in other processes)" if candidates else ""
        fail(f"--resume: {args.runs_dir} holds no unfinished run of these flags to resume{going_on}; runs started "
             f"without --run-name are named {default_run_name(args, '<unix time>')}, give --run-name to resume another")
    stamp = int(time.time())
    while True:
        names = [default_run_name(m, stamp) for m in members]
        dirs, made = [os.path.join(args.runs_dir, name) for name in names], []
        try:
            os.makedirs(args.runs_dir, exist_ok=True)
            for d in dirs:
                os.mkdir(d)
                made.append(d)
            break
        except FileExistsError:  # a run started in the same second: the next second's name
            for d in made:
                os.rmdir(d)
            stamp += 1
        except OSError as e:
            fail(f"cannot write into --runs-dir {args.runs_dir} ({e.strerror or e}); give a folder this user can write")
    return open_run_folders(members, names, dirs, code)


def resume_hint(args, run_names):
    """The stop message's way back: the same command; for runs named by default also the command with their name,
    which resumes them even once a later run of the same flags is unfinished too."""
    if args.run_name is not None:
        return "rerun the same command to resume it"
    name = run_names[0] if len(run_names) == 1 else default_run_name(args, run_names[0].rsplit("__", 1)[1], "{seed}")
    python = os.path.basename(sys.executable)
    if shutil.which(python) != sys.executable:
        python = sys.executable
    return f"rerun the same command to resume it, or this one: {shlex.join([python, *sys.argv, '--run-name', name])}"


def discard_kl_after(run_dir, iteration):
    """Removes the KL files of iterations after `iteration`, and half-written ones, before a resume from that
    iteration's checkpoint redoes them: TensorBoard drops what the stopped session logged for them (purge step), so
    kl/ follows and holds only the trajectory the run took, also where the redone iterations differ (another device,
    --num-threads or --compile, or a checkpoint older than the last iteration)."""
    kl_dir = os.path.join(run_dir, "kl")
    if not os.path.isdir(kl_dir):
        return []
    removed = []
    try:
        for name in sorted(os.listdir(kl_dir)):
            match = re.fullmatch(r"iter_(\d+)\.npz(\.tmp)?", name)
            if match and (match.group(2) or int(match.group(1)) > iteration):
                os.remove(os.path.join(kl_dir, name))
                removed.append(name)
    except OSError as e:
        fail(f"cannot remove the KL files after iteration {iteration} from {kl_dir} ({e.strerror or e})")
    if removed:
        print(f"{kl_dir}: removed {len(removed)} file(s) of iterations after the checkpoint's ({', '.join(removed)}); "
              "they are written again as the iterations are redone", flush=True)
    return removed


def write_tensorboard_layout(writer):
    """Groups the run's scalars on TensorBoard's Custom Scalars dashboard: returns, the KL profile, its contraction,
    the anatomy of the minibatch updates, the losses. Each chart's tags are regular expressions matched from the tag's
    start, hence the '$'."""
    def chart(*tags):
        return ["Multiline", [f"^{re.escape(tag)}$" for tag in tags]]
    writer.add_custom_scalars({
        "returns": {
            "episodic return: training, evaluation": chart("charts/episodic_return", "eval/episodic_return"),
            "saved model's evaluation (x: episode)": chart("eval/saved_model_episodic_return"),
        },
        "KL": {
            "seq_kl: mean KL between consecutive minibatch updates": chart("kl/seq_kl_mean"),
            "ref_kl at the first update: KL(last policy || first)": chart("kl/ref_kl_start"),
        },
        "contraction": {
            "gamma_D: contraction rate of ref_kl per update": chart("kl/gamma_D"),
            "gamma_D per 1% of the iteration's updates (compares settings)": chart("kl/gamma_D_per_pct"),
            "fraction of updates that decrease ref_kl": chart("kl/ref_kl_decrease_frac"),
        },
        "update": {
            "gradient norm before clipping: global, actor (mean, max over the iteration's updates)": chart(
                "update/grad_norm_mean", "update/grad_norm_max", "update/actor_grad_norm_mean",
                "update/actor_grad_norm_max"),
            "clipping factor of the gradient (1: not clipped)": chart(
                "update/clip_scale_mean", "update/clip_scale_max"),
            "L2 norm of the actor's change in one update": chart("update/actor_step_mean", "update/actor_step_max"),
            "minibatch's approximate KL and clip fraction": chart(
                "update/approx_kl_mean", "update/approx_kl_max", "update/clipfrac_mean", "update/clipfrac_max"),
        },
        "losses": {
            "policy and value loss": chart("losses/policy_loss", "losses/value_loss"),
            "approximate KL": chart("losses/approx_kl", "losses/old_approx_kl"),
            "clip fraction": chart("losses/clipfrac"),
            "entropy": chart("losses/entropy"),
            "explained variance": chart("losses/explained_variance"),
        },
    })


def write_hparams(writer, args):
    """The run's flags on TensorBoard's HParams tab, beside its final returns (the tab reads those scalars), in the
    run's own event file: numbers and booleans as they are, anything else (None, strings) as text."""
    from torch.utils.tensorboard.summary import hparams
    flags = {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in vars(args).items()}
    for summary in hparams(flags, {"eval/episodic_return": 0.0, "charts/episodic_return": 0.0}):
        writer.file_writer.add_summary(summary)


def disk_need_bytes(args, iterations_left, obs_dim, act_dim, checkpoint_bytes):
    """About what the run will write from here on: a checkpoint being replaced, plus one KL file per iteration (its
    profile, and six float32 numbers per update: the anatomy)."""
    updates = args.update_epochs * args.num_minibatches
    kept = updates // args.kl_every + 2
    states = args.kl_num_states or args.batch_size
    snapshot_bytes = 4 * states * (obs_dim + kept * act_dim) if args.kl_save_snapshots else 0
    kl_file = 4096 + 40 * kept + 24 * updates + snapshot_bytes
    return 2 * checkpoint_bytes + (iterations_left * kl_file if args.kl else 0)


def stop_on_signals():
    """SIGTERM (what SLURM sends on preemption, requeue and time limit) and SIGINT only set a flag, which the run
    checks at safe points; a second one stops at once."""
    received = []

    def handler(signum, frame):
        if received:
            raise KeyboardInterrupt
        received.append(signal.Signals(signum))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)
    return received
