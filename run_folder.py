# The run's folder on disk for ppo_continuous_kl.py: a new run's folder or the checkpoint of an unfinished one, KL files
# and checkpoints written atomically, the free space a run needs, the RNG states an exact resume restores, and
# SIGTERM/SIGINT turned into a flag the run checks at safe points.
import json
import os
import random
import signal
import sys
from dataclasses import asdict

import numpy as np
import torch


def fail(message: str):
    """Stops with one line on stderr: how bad input and unrecoverable conditions end a run."""
    sys.exit(f"error: {message}")


def save_atomic(path, write, what):
    """Writes a file through write(f) under a temporary name, flushed to disk, then renamed into place: a kill or a
    full disk mid-write leaves the previous file (or none), never a half-written one."""
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        fail(f"cannot write {what} {path} ({e.strerror or e}); the run is stopped. Its folder holds everything logged "
             "so far and its last checkpoint; free space and rerun the same command to resume")


def save_npz_atomic(path, **arrays):
    save_atomic(path, lambda f: np.savez(f, **arrays), "the KL file")


def save_checkpoint(path, state):
    save_atomic(path, lambda f: torch.save(state, f), "the checkpoint")


CHECKPOINT_KEYS = {"format", "args", "iteration", "global_step", "wall_time_s", "agent", "optimizer", "envs", "next_obs",
                   "next_done", "recent_returns", "iteration_wall_s", "rngs"}
# Flags that do not change what the run computes (or only how fast), so a resumed run may set them anew.
RESUMABLE_CHANGES = {"resume", "checkpoint_every", "runs_dir", "cuda", "num_threads", "compile", "env_threads", "save_model",
                     "eval_episodes", "track", "wandb_project_name", "wandb_entity"}


def rng_states(kl_generator):
    states = dict(python=random.getstate(), numpy=np.random.get_state(), torch=torch.get_rng_state(),
                  kl=kl_generator.get_state())
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states, kl_generator):
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    kl_generator.set_state(states["kl"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def load_checkpoint(path, args, run_name):
    """Reads a checkpoint, refusing one that is unreadable or was written with other flags."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        reason = (str(e).strip().splitlines() or [""])[0]
        fail(f"checkpoint {path} is unreadable, probably truncated or corrupt ({type(e).__name__}: {reason}); "
             "restore it or delete the run folder to start the run over")
    missing = CHECKPOINT_KEYS - set(checkpoint) if isinstance(checkpoint, dict) else CHECKPOINT_KEYS
    if missing:
        fail(f"checkpoint {path} is not a complete checkpoint of this script (missing: {', '.join(sorted(missing))}); "
             "restore it or delete the run folder to start the run over")
    saved, now = checkpoint["args"], asdict(args) | {"run_name": run_name}
    derived = {"batch_size", "num_iterations"}  # differ only when the flags they come from do
    differing = [k for k in sorted((saved.keys() | now.keys()) - RESUMABLE_CHANGES - derived) if saved.get(k) != now.get(k)]
    if differing:
        fail(f"cannot resume {os.path.dirname(path)} with other flags than its checkpoint's: "
             + ", ".join(f"--{k.replace('_', '-')} {now.get(k)} (checkpoint: {saved.get(k)})" for k in differing))
    return checkpoint


def open_run_folder(args, run_name, run_dir):
    """Makes a new run's folder, or returns the checkpoint of the unfinished run in it."""
    checkpoint_path = os.path.join(run_dir, "checkpoint.pt")
    if os.path.exists(os.path.join(run_dir, "summary.json")):
        fail(f"run folder {run_dir} holds a finished run (summary.json); pick another --run-name or --runs-dir, or delete it")
    if os.path.exists(checkpoint_path):
        return load_checkpoint(checkpoint_path, args, run_name)
    if args.resume:
        fail(f"--resume: {run_dir} holds no checkpoint.pt to resume from")
    if os.path.exists(os.path.join(run_dir, "args.json")):
        fail(f"run folder {run_dir} already holds a run, without a checkpoint to resume it from; pick another "
             "--run-name or --runs-dir, or delete it")
    try:
        os.makedirs(os.path.join(run_dir, "kl") if args.kl else run_dir, exist_ok=True)
        with open(os.path.join(run_dir, "args.json"), "w") as f:
            json.dump(asdict(args) | {"run_name": run_name}, f, indent=2)
    except OSError as e:
        fail(f"cannot write into --runs-dir {args.runs_dir}: {e}")
    return None


def disk_need_bytes(args, iterations_left, obs_dim, act_dim, checkpoint_bytes):
    """About what the run will write from here on: a checkpoint being replaced, plus one KL file per iteration."""
    kept = args.update_epochs * args.num_minibatches // args.kl_every + 2
    states = args.kl_num_states or args.batch_size
    kl_file = 4096 + 40 * kept + (4 * states * (obs_dim + kept * act_dim) if args.kl_save_snapshots else 0)
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
