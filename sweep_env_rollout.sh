#!/usr/bin/env bash
# Figure 1 (bottom) and Figure 3: PPO at N_env x N_rollout = 1000 x 50, 500 x 100, 100 x 500, 50 x 1000
# (a 50,000-step batch each) with one fixed minibatch size.
# The sweep is ppo_kl/sweeps.py, run by the Python that runs the training script ($PYTHON, else python); --help lists
# its options.
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SWEEP_SCRIPT=$0 PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}" exec "${PYTHON:-python}" -m ppo_kl.sweeps env_rollout "$@"
