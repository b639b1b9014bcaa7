#!/usr/bin/env bash
# Figure 1 (top) and Figure 2: PPO at N_env x N_rollout = 500 x 100 with minibatch sizes 50 ... 1000.
# The sweep is ppo_kl/sweeps.py, run by the Python that runs the training script ($PYTHON, else python); --help lists
# its options.
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SWEEP_SCRIPT=$0 PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}" exec "${PYTHON:-python}" -m ppo_kl.sweeps minibatch "$@"
