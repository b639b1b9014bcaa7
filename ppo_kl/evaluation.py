# Evaluation at equal env steps for ppo_continuous_kl.py: every member's current policy on envs of its own, with
# its training normalisation statistics frozen, one episode per env, all at once.
import numpy as np
import torch

from ppo_kl.vector_envs import get_norm_stats, set_norm_stats


@torch.no_grad()
def evaluate(agent, eval_envs, num_seeds, seeds, deterministic):
    """One episode in each eval env (eval_envs: num_seeds x E of them, member m's policy in its E, their
    normalisation statistics frozen), actions sampled from generators seeded afresh each time (or the means):
    returns and lengths, [S, E] numpy. The training envs, statistics and generators are not touched."""
    on_device = getattr(eval_envs, "on_device", False)
    device = agent.params.device
    per_member = eval_envs.num_envs // num_seeds
    obs, _ = eval_envs.reset(seed=[s + 10_000 + i for s in seeds for i in range(per_member)])
    generators = [torch.Generator(device).manual_seed(s + 10_000) for s in seeds]
    returns, lengths = np.full(eval_envs.num_envs, np.nan), np.zeros(eval_envs.num_envs, dtype=np.int64)
    while np.isnan(returns).any():
        obs = torch.as_tensor(obs, dtype=torch.float32, device=device).view(num_seeds, per_member, -1)
        action = agent.actor_mean(obs) if deterministic else agent.get_action_and_value(obs, generators=generators)[0]
        action = action.flatten(0, 1)
        obs, _, _, _, infos = eval_envs.step(action if on_device else action.cpu().numpy())
        if on_device:
            done = infos["episode_done"].cpu().numpy()
            ended_return, ended_length = infos["episode_return"].cpu().numpy(), infos["episode_length"].cpu().numpy()
        elif "episode" in infos:
            done, ended_return, ended_length = infos["_episode"], infos["episode"]["r"], infos["episode"]["l"]
        else:
            continue
        first = done & np.isnan(returns)  # only each env's first episode counts
        returns[first], lengths[first] = ended_return[first], ended_length[first]
    return returns.reshape(num_seeds, per_member), lengths.reshape(num_seeds, per_member)


def eval_norm_stats(stats, norm_stats, num_seeds, num_envs, eval_per_member):
    """The training statistics laid out for the eval envs: a member's one row each (shared statistics), or for
    eval env j of member m the row of training env m x num_envs + j mod num_envs (per-env statistics)."""
    if norm_stats == "shared":
        return stats
    take = [m * num_envs + j % num_envs for m in range(num_seeds) for j in range(eval_per_member)]
    return {k: v[take] for k, v in stats.items()}


def freeze_training_stats(eval_envs, envs, norm_stats, num_seeds, num_envs):
    """Puts the training envs' current statistics into the eval envs, frozen."""
    per_member = eval_envs.num_envs // num_seeds
    set_norm_stats(eval_envs, eval_norm_stats(get_norm_stats(envs), norm_stats, num_seeds, num_envs, per_member),
                   frozen=True)


def log_evaluation(writers, returns, lengths, global_step):
    """Each member's evaluation into its TensorBoard at the training step it was taken: the mean return and length,
    and every episode's return (several events at one step)."""
    for writer, member_returns, member_lengths in zip(writers, returns, lengths):
        writer.add_scalar("eval/episodic_return", member_returns.mean(), global_step)
        writer.add_scalar("eval/episodic_length", member_lengths.mean(), global_step)
        for episodic_return in member_returns:
            writer.add_scalar("eval/episodic_returns", episodic_return, global_step)
