"""Evaluate a model saved by ppo_continuous_kl.py --save-model: its policy with the observation/reward
normalisation statistics it trained with, frozen, for N episodes at once, optionally recording videos of the first.

    python -m ppo_kl.evaluate runs/<run>/ppo_continuous_kl.pt                # 10 episodes, actions sampled
    python -m ppo_kl.evaluate runs/<run>/ppo_continuous_kl.pt --episodes 3 --deterministic --capture-video

With --seed at the run's seed and --episodes at its --eval-episodes, the returns are those the run printed after
saving (the same envs, seeds and action draws).
"""
import json
import os
from dataclasses import dataclass
from typing import Annotated, Optional

import numpy as np
import torch
import tyro

from ppo_kl.agent import Agent
from ppo_kl.evaluation import eval_norm_stats, evaluate
from ppo_kl.flags import parse_flags
from ppo_kl.run_record import fail
from ppo_kl.vector_envs import make_envs, quiet_mujoco, set_norm_stats


@dataclass
class EvalArgs:
    """Evaluate a model saved by ppo_continuous_kl.py --save-model."""

    model: tyro.conf.Positional[str]
    """the saved model: <run folder>/ppo_continuous_kl.pt"""
    episodes: int = 10
    """episodes, played at once on as many envs"""
    seed: Annotated[Optional[int], tyro.conf.arg(
        metavar="INT", help_behavior_hint="(default: the run's seed)")] = None
    """seeds the envs and the action draws"""
    deterministic: bool = False
    """act with the policy's mean instead of sampling as it trained"""
    capture_video: bool = False
    """record the first episode's video into --video-dir (renders with Gymnasium's envs; needs `pip install moviepy`)"""
    video_dir: str = "videos"
    """folder that receives the videos"""


def load_model(path):
    """The saved dict, refused in one line when it is missing or not a --save-model file."""
    if not os.path.isfile(path):
        fail(f"model {path} does not exist; ppo_continuous_kl.py --save-model writes <run folder>/ppo_continuous_kl.pt")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises several types for files that are not its own
        fail(f"model {path} is not a readable model file ({type(e).__name__}: {e})")
    if not isinstance(saved, dict) or not {"agent", "obs_dim", "act_dim", "norm_stats", "args"} <= set(saved):
        fail(f"model {path} is not a model saved by ppo_continuous_kl.py --save-model (it lacks the agent, its "
             "dimensions, normalisation statistics or args)")
    return saved


def main():
    opts = parse_flags(EvalArgs, prog="python -m ppo_kl.evaluate")
    if opts.episodes < 1:
        fail(f"--episodes takes a positive integer, got {opts.episodes}")
    saved = load_model(opts.model)
    args = saved["args"]
    seed = args["seed"] if opts.seed is None else opts.seed
    # video needs a renderer: Gymnasium's envs, the same transitions as mujoco-batch's bit for bit
    backend = "gymnasium" if opts.capture_video or args["env_backend"] == "warp" else args["env_backend"]
    quiet_mujoco()
    envs = make_envs(args["env_id"], opts.episodes, args["gamma"], args["norm_stats"], opts.capture_video,
                     opts.video_dir, backend if backend != "auto" else "gymnasium")
    if (envs.single_observation_space.shape[0], envs.single_action_space.shape[0]) != (saved["obs_dim"],
                                                                                        saved["act_dim"]):
        fail(f"model {opts.model} was trained on {saved['obs_dim']} observations and {saved['act_dim']} actions, "
             f"{args['env_id']} has {envs.single_observation_space.shape[0]} and {envs.single_action_space.shape[0]}")
    set_norm_stats(envs, eval_norm_stats(saved["norm_stats"], args["norm_stats"], 1, args["num_envs"], opts.episodes),
                   frozen=True)
    agent = Agent(saved["obs_dim"], saved["act_dim"])
    with torch.no_grad():
        agent.params.copy_(saved["agent"]["params"])
    returns, lengths = evaluate(agent, envs, 1, [seed], opts.deterministic)
    envs.close()
    returns, lengths = returns[0], lengths[0]
    print(json.dumps(dict(model=opts.model, env_id=args["env_id"], episodes=opts.episodes, seed=seed,
                          deterministic=opts.deterministic, returns=returns.tolist(), lengths=lengths.tolist())))
    print(f"{args['env_id']}: return {returns.mean():.1f} +- {returns.std():.1f} over {opts.episodes} episodes "
          f"(mean length {np.mean(lengths):.0f})" + (f"; video in {opts.video_dir}" if opts.capture_video else ""))


if __name__ == "__main__":
    main()
