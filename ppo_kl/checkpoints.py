# A run's checkpoint and the files it writes atomically: a population's Adam state split into its members' and
# back, and every random stream an exact resume restores.
import hashlib
import io
import os
import random

import numpy as np
import torch

from ppo_kl.run_record import fail


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
    # serialised in memory first: torch.save into a file that hits a full disk raises a RuntimeError without the
    # errno, where a plain write raises the OSError that says why
    buffer = io.BytesIO()
    torch.save(state, buffer)
    save_atomic(path, lambda f: f.write(buffer.getbuffer()), "the checkpoint")


def member_adam_state(adam_state, m):
    """Member m's part of a population's Adam state_dict, as a single run of its seed holds it: its rows of the
    moments; the step count and the parameter groups are shared by all members."""
    return dict(param_groups=adam_state["param_groups"], state={0: {
        k: (v[m:m + 1].clone() if k != "step" else v) for k, v in adam_state["state"][0].items()}})


def stacked_adam_state(member_states):
    """The population's Adam state_dict from its members' (member_adam_state's inverse)."""
    adam_state = member_states[0]
    if adam_state["state"]:
        adam_state["state"][0] |= {k: torch.cat([s["state"][0][k] for s in member_states])
                                   for k in ("exp_avg", "exp_avg_sq")}
    return adam_state


CHECKPOINT_KEYS = {"args", "iteration", "global_step", "wall_time_s", "agent", "optimizer", "envs", "next_obs",
                   "next_done", "recent_returns", "iteration_wall_s", "rngs"}
def rng_states(kl_generator, member_generator=None):
    """Every random stream an exact resume restores; with the generators' device, whose state is the device's own
    (CPU: Mersenne Twister, CUDA: Philox)."""
    states = dict(python=random.getstate(), numpy=np.random.get_state(), torch=torch.get_rng_state(),
                  kl=kl_generator.get_state(), device=kl_generator.device.type)
    if member_generator is not None:
        states["member"] = member_generator.get_state()
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states, kl_generator, member_generator=None):
    """Restores rng_states. The generators' states of a checkpoint written on another device (--cuda changed, or the
    run moved off or onto a GPU node) do not convert into this device's generators: those are then seeded from the
    saved states instead, the same seeds on every resume of that checkpoint; a run that changes device does not
    repeat bit for bit anyway."""
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    device = states.get("device")
    if device is None:  # checkpoints written before the device was recorded: a CPU state has a size of its own
        device = "cpu" if states["kl"].numel() == torch.Generator().get_state().numel() else "cuda"
    pairs = [(kl_generator, states["kl"])] + ([(member_generator, states["member"])]
                                              if member_generator is not None else [])
    for generator, state in pairs:
        if device == generator.device.type:
            generator.set_state(state)
        else:
            generator.manual_seed(int.from_bytes(hashlib.sha256(state.cpu().numpy().tobytes()).digest()[:8], "little"))
    if device != kl_generator.device.type:
        print(f"note: the checkpoint's generators ran on {device}, this run's on {kl_generator.device.type}: they are "
              "seeded from the saved states, so actions, minibatches and the states the KL profiles are measured on "
              "differ from those of a run that stays on one device", flush=True)
    if "cuda" in states and torch.cuda.is_available():
        # a node with fewer GPUs than the one that wrote the checkpoint gets back the states of those it has
        for index, state in enumerate(states["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(state, index)


def read_checkpoint(path):
    """Reads a checkpoint, refusing one that is unreadable or incomplete: never a silent restart."""
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
    return checkpoint
