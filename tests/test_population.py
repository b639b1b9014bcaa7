"""--num-seeds: a population of seeds trained in lockstep is S independent runs, each the single run of its seed."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import torch
from torch.distributions import Normal

from conftest import SCRIPT, TINY, load_args, load_kl, run_script
from ppo_continuous_kl import Agent, Args, Batch, minibatch_indices, minibatch_update, ppo_loss
from test_resume import scalars

ARGS = Args(ent_coef=0.01)  # CleanRL's loss coefficients and gradient clipping, with an entropy bonus
LOSS = dict(clip_coef=0.2, norm_adv=True, clip_vloss=True, ent_coef=0.01, vf_coef=0.5)
HOPPER = [*TINY, "--env-id", "Hopper-v5", "--kl-save-snapshots"]  # Hopper falls: members' batches differ in size


def update(agent, batch, mask):
    """One minibatch update, the script's own; returns the losses."""
    optimizer = torch.optim.Adam(agent.parameters(), lr=3e-4, eps=1e-5, fused=True)
    loss, _ = minibatch_update(agent, optimizer, Batch(*batch), mask, ARGS)
    return loss


def random_batch(members, size, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(members, size, *shape, generator=g) for shape in ((17,), (6,), (), (), (), ())]


def test_member_update_equals_the_single_run_update():
    seeds = [4, 5, 6]
    population = Agent(17, 6, [torch.Generator().manual_seed(s) for s in seeds])
    single = Agent(17, 6, [torch.Generator().manual_seed(5)])
    assert torch.equal(population.params[1], single.params[0])  # initialised from the member's own generator
    batch = random_batch(3, 50)
    # the middle member has 37 real samples, padded to 50; the single run sees just those 37
    mask = torch.ones(3, 50)
    mask[1, 37:] = 0
    losses = update(population, batch, mask)
    single_losses = update(single, [x[1:2, :37] for x in batch], None)
    torch.testing.assert_close(losses[1], single_losses[0], rtol=1e-6, atol=1e-7)
    # float32 sums in another order: the parameters agree to a few ulps of their size
    torch.testing.assert_close(population.params[1], single.params[0], rtol=0, atol=2e-6)
    assert not torch.allclose(population.params[0], single.params[0])


def test_loss_is_cleanrls_on_each_member():
    """The written-out Gaussian and masked means against CleanRL's expressions, with torch.distributions, per member."""
    agent = Agent(17, 6, [torch.Generator().manual_seed(s) for s in (1, 2)])
    with torch.no_grad():
        agent.layer("actor_logstd", agent.params).uniform_(-1, 0.5)
    obs, actions, old_logprobs, advantages, returns, old_values = random_batch(2, 40, seed=3)
    loss, stats = ppo_loss(agent, Batch(obs, actions, old_logprobs, advantages, returns, old_values), None, **LOSS)
    for m in range(2):
        with torch.no_grad():
            mean = agent.actor_mean(obs)[m]
            dist = Normal(mean, agent.layer("actor_logstd", agent.params)[m].exp().expand_as(mean))
            value = agent.get_value(obs)[m]
        logratio = dist.log_prob(actions[m]).sum(1) - old_logprobs[m]
        ratio = logratio.exp()
        adv = (advantages[m] - advantages[m].mean()) / (advantages[m].std() + 1e-8)
        pg = torch.max(-adv * ratio, -adv * torch.clamp(ratio, 0.8, 1.2)).mean()
        clipped = old_values[m] + torch.clamp(value - old_values[m], -0.2, 0.2)
        v = 0.5 * torch.max((value - returns[m]) ** 2, (clipped - returns[m]) ** 2).mean()
        entropy = dist.entropy().sum(1).mean()
        torch.testing.assert_close(loss[m].detach(), pg - 0.01 * entropy + 0.5 * v, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(stats["approx_kl"][m], ((ratio - 1) - logratio).mean(), rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(stats["entropy"][m], entropy, rtol=1e-6, atol=1e-6)


def test_minibatches_cut_each_members_permutation_as_a_single_run_does():
    generators = [torch.Generator().manual_seed(s) for s in (1, 2)]
    indices, mask = minibatch_indices([10, 7], 3, 4, generators)
    assert indices.shape == (3, 2, 4) and mask is not None
    for m, (n, seed) in enumerate(((10, 1), (7, 2))):
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        for part, expected in enumerate(perm.tensor_split(3)):
            real = mask[part, m].bool()
            assert torch.equal(indices[part, m][real], expected)
    indices, mask = minibatch_indices([8, 8], 4, 2, generators)
    assert mask is None and indices.shape == (4, 2, 2)
    _, mask = minibatch_indices([8, 8], 4, 3, generators)  # padded to the minibatch size, here larger
    assert mask is not None and mask.sum().item() == 16


def test_population_members_are_the_single_runs_of_their_seeds(tmp_path):
    _, single = run_script(tmp_path, "single", *HOPPER, "--seed", "2")
    run_script(tmp_path, "pop{seed}", *HOPPER, "--seed", "1", "--num-seeds", "2")
    run_script(tmp_path, "other{seed}", *HOPPER, "--seed", "2", "--num-seeds", "2")
    member, shifted = os.path.join(tmp_path, "pop2"), os.path.join(tmp_path, "other2")
    assert load_args(member)["seed"] == 2 and load_args(os.path.join(tmp_path, "pop1"))["seed"] == 1
    first_single, first_member = load_kl(single)[0], load_kl(member)[0]
    # the same rollout states; snapshots equal to float32 rounding of the batched matmuls
    np.testing.assert_array_equal(first_member["states"], first_single["states"])
    np.testing.assert_allclose(first_member["means"], first_single["means"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(first_member["ref_kl"], first_single["ref_kl"], rtol=1e-4, atol=1e-12)
    # a member does not depend on its partners: seed 2 beside seed 1 or beside seed 3, bit for bit
    for a, b in zip(load_kl(member), load_kl(shifted), strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    for name in ("pop1", "pop2"):  # each member's KL files recompute from its own snapshots
        for f in load_kl(os.path.join(tmp_path, name)):
            assert int(f["seed"]) == int(name[-1])
            means, logstds = f["means"].astype(np.float64), f["logstds"].astype(np.float64)
            gap = ((means[1:] - means[:-1]) ** 2).mean(1)
            r = logstds[:-1] - logstds[1:]
            seq = (0.5 * (np.expm1(-2 * r) + 2 * r) + 0.5 * gap * np.exp(-2 * logstds[:-1])).sum(-1)
            np.testing.assert_allclose(f["seq_kl"], seq, rtol=1e-5, atol=1e-13)


def test_population_stopped_and_resumed_equals_uninterrupted(tmp_path):
    flags = [*TINY[:-1], str(6 * 128), "--env-id", "Hopper-v5", "--seed", "1", "--num-seeds", "2"]
    run_script(tmp_path / "straight", "run{seed}", *flags)
    cmd = [sys.executable, SCRIPT, "--runs-dir", str(tmp_path / "stopped"), "--run-name", "run{seed}", *flags]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    kl_dir, deadline = tmp_path / "stopped" / "run2" / "kl", time.time() + 300
    while not (kl_dir.is_dir() and len(os.listdir(kl_dir)) >= 2):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert len(os.listdir(kl_dir)) < 6  # stopped before the end
    run_script(tmp_path / "stopped", "run{seed}", *flags)
    for seed in (1, 2):
        a, b = tmp_path / "straight" / f"run{seed}", tmp_path / "stopped" / f"run{seed}"
        for fa, fb in zip(load_kl(a), load_kl(b), strict=True):
            for key in fa:
                np.testing.assert_array_equal(fa[key], fb[key], err_msg=f"seed {seed} {key}")
        sa, sb = scalars(str(a)), scalars(str(b))
        for tag in ("charts/episodic_return", "losses/value_loss", "kl/seq_kl_mean"):
            assert sa[tag] == sb[tag], (seed, tag)
