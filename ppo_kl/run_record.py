# What a run folder records and how two runs' flags compare, shared by the training script's run management and
# by plot_kl.py, with no heavier import than json: the plots never import training.
import json
import sys

# Flags that change how fast a run goes, where it writes, who watches it and how its folder is named or resumed,
# never what it computes; batch_size and num_iterations follow from other flags, and a seed's run is the same in a
# population (--num-seeds) as alone
BOOKKEEPING = frozenset({"resume", "checkpoint_every", "runs_dir", "run_name", "cuda", "num_threads", "compile",
                         "env_threads", "track", "wandb_project_name", "wandb_entity", "num_seeds", "code_version",
                         "batch_size", "num_iterations"})

# What sets the size of one minibatch update, recorded per update beside the KL profile: the gradient's global
# and actor norms before clipping, the clipping factor, the L2 norm of the actor's change, and the minibatch's
# approximate KL and clip fraction
ANATOMY = ("grad_norm", "actor_grad_norm", "clip_scale", "actor_step", "approx_kl", "clipfrac")


def fail(message):
    """Stops with one line on stderr: how bad input and unrecoverable conditions end a program here."""
    sys.exit(f"error: {message}")


def warn(message):
    print(f"warning: {message}", file=sys.stderr)


def hms(seconds):
    """A duration as the progress lines print it: 1:02:03, 0:00:05."""
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def read_json(path, required=False):
    """A JSON file's content; when it is missing or unreadable, None, or with `required` a one-line stop."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        if required:
            fail(f"{path} is not readable JSON ({e}); rerun the run or move its folder out")
        return None
