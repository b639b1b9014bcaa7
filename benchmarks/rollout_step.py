"""Where one env step of the rollout goes at CleanRL's default job (HalfCheetah-v5, 1 env, mujoco-batch, per-env
statistics, one torch thread): microseconds per step of the whole rollout and of its parts, each timed alone with
the functions the rollout calls.

    python benchmarks/rollout_step.py                  # 4 rollouts of 2,048 steps per part, the first not timed

- rollout: collect_rollout, the script's own loop;
- acting: Agent.acting_step's act() on the rollout's observations (forward of actor and critic, sampling,
  log-prob, written into the storage);
- envs.step: the wrapped envs' step, split into the physics (mujoco.batch's step), the env model around it
  (MujocoBatchEnv.step less the physics: reward, observation, resets, time limit) and the wrappers (the rest:
  episode statistics, action clipping, observation and reward normalisation);
- the rest of the rollout: its loop, storage writes and conversions (rollout less acting less envs.step).
Each part is the best of its timed repetitions, in process time (this process's CPU), so a busy second core does
not count; run it on an idle machine all the same.
"""
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ppo_continuous_kl import Agent, Rollout, collect_rollout  # noqa: E402
from ppo_kl.vector_envs import make_envs, quiet_mujoco  # noqa: E402

ENV_ID, STEPS, REPS = "HalfCheetah-v5", 2048, 4


def per_step_us(run):
    """Best of REPS - 1 timed calls of run() (one untimed first), in microseconds per env step."""
    run()
    times = []
    for _ in range(REPS - 1):
        start = time.process_time_ns()
        run()
        times.append(time.process_time_ns() - start)
    return min(times) / STEPS / 1e3


def main():
    torch.set_num_threads(1)
    quiet_mujoco()
    generators = [torch.Generator().manual_seed(1)]
    envs = make_envs(ENV_ID, 1, 0.99, "per-env", backend="mujoco-batch", env_threads=1)
    obs_dim, act_dim = envs.single_observation_space.shape[0], envs.single_action_space.shape[0]
    agent = Agent(obs_dim, act_dim, generators)
    shape = (STEPS, 1, 1)
    rollout = Rollout(obs=torch.zeros(shape + (obs_dim,)), actions=torch.zeros(shape + (act_dim,)),
                      logprobs=torch.zeros(shape), rewards=torch.zeros(shape), dones=torch.zeros(shape),
                      values=torch.zeros(shape))
    state = dict(obs=torch.as_tensor(envs.reset(seed=[1])[0], dtype=torch.float32).view(1, 1, -1),
                 done=torch.zeros(1, 1))

    def whole_rollout():
        state["obs"], state["done"], _ = collect_rollout(envs, agent, rollout, state["obs"], state["done"],
                                                         generators)

    def acting():
        with torch.no_grad():
            act = agent.acting_step(generators)
            for step in range(STEPS):
                act(rollout.obs[step], rollout.actions[step], rollout.logprobs[step], rollout.values[step])

    actions = rollout.actions.numpy().reshape(STEPS, 1, -1).copy()
    inner = envs.env

    def stepping(step):
        return lambda: [step(actions[i]) for i in range(STEPS)]

    parts = {"rollout": per_step_us(whole_rollout), "acting": per_step_us(acting),
             "envs.step": per_step_us(stepping(envs.step)), "model": per_step_us(stepping(inner.step))}
    frame_skip = inner.reference.frame_skip
    parts["physics"] = per_step_us(lambda: [inner.batch.step(ids=None, nstep=frame_skip) for _ in range(STEPS)])
    print(f"{ENV_ID}, 1 env, mujoco-batch, per-env statistics, one torch thread; us per env step (process time, "
          f"best of {REPS - 1} rollouts of {STEPS} steps)")
    rows = [("acting (forward, sampling, log-prob, into the storage)", parts["acting"]),
            ("physics (mujoco.batch step)", parts["physics"]),
            ("env model (reward, observation, resets, time limit)", parts["model"] - parts["physics"]),
            ("wrappers (episode statistics, clipping, normalisation)", parts["envs.step"] - parts["model"]),
            ("loop, storage writes, conversions", parts["rollout"] - parts["acting"] - parts["envs.step"]),
            ("rollout, whole", parts["rollout"])]
    for name, us in rows:
        print(f"  {name:58s} {us:7.1f}")
    envs.close()


if __name__ == "__main__":
    main()
