"""The KL maths against torch.distributions, computed independently."""
import numpy as np
import pytest
import torch
from torch.distributions import Independent, Normal, kl_divergence

from ppo_kl.agent import Agent
from ppo_kl.kl_profiling import contraction_rate, kl_from_mean_gap, kl_profile


def diag_gaussian_kl(mean_p, logstd_p, mean_q, logstd_q):
    """KL(p || q) of diagonal Gaussians, summed over the action dimension, as the snapshot store computes it."""
    return kl_from_mean_gap((mean_p - mean_q) ** 2, logstd_p, logstd_q)


def reference_kl(mean_p, logstd_p, mean_q, logstd_q):
    p = Independent(Normal(mean_p, logstd_p.exp()), 1)
    q = Independent(Normal(mean_q, logstd_q.exp()), 1)
    return kl_divergence(p, q)


@pytest.mark.parametrize("act_dim", [1, 6, 17])
@pytest.mark.parametrize("logstd_scale", [0.1, 1.0, 5.0])
def test_diag_gaussian_kl_matches_torch(act_dim, logstd_scale):
    g = torch.Generator().manual_seed(act_dim)
    shape = (256, act_dim)
    mean_p = torch.randn(shape, generator=g, dtype=torch.float64) * 3
    mean_q = torch.randn(shape, generator=g, dtype=torch.float64) * 3
    logstd_p = torch.randn(shape, generator=g, dtype=torch.float64) * logstd_scale
    logstd_q = torch.randn(shape, generator=g, dtype=torch.float64) * logstd_scale
    ours = diag_gaussian_kl(mean_p, logstd_p, mean_q, logstd_q)
    assert ours.shape == (256,)
    torch.testing.assert_close(ours, reference_kl(mean_p, logstd_p, mean_q, logstd_q), rtol=1e-9, atol=1e-12)


def test_diag_gaussian_kl_extreme_stds_and_broadcast():
    # std from e^-8 to e^8 and a logstd of shape [A] broadcast over states, as the snapshot store uses it
    mean_p, mean_q = torch.zeros(4, 3, dtype=torch.float64), torch.full((4, 3), 0.5, dtype=torch.float64)
    logstd_p = torch.tensor([-8.0, 0.0, 8.0], dtype=torch.float64)
    logstd_q = torch.tensor([8.0, -8.0, 0.0], dtype=torch.float64)
    ours = diag_gaussian_kl(mean_p, logstd_p, mean_q, logstd_q)
    expected = reference_kl(mean_p, logstd_p.expand(4, 3), mean_q, logstd_q.expand(4, 3))
    torch.testing.assert_close(ours, expected, rtol=1e-9, atol=0.0)
    assert torch.isfinite(ours).all()


def test_diag_gaussian_kl_tiny_divergences_do_not_cancel():
    # consecutive snapshots differ by ~1e-7 in log-std; the naive formula loses this to rounding
    logstd_p = torch.zeros(5, dtype=torch.float64)
    logstd_q = torch.full((5,), 1e-7, dtype=torch.float64)
    ours = diag_gaussian_kl(torch.zeros(5, dtype=torch.float64), logstd_p, torch.zeros(5, dtype=torch.float64),
                            logstd_q)
    # KL = sum_d (r + e^{-2r}/2 - 1/2) = sum_d r^2 (1 - 2r/3 + ...) for log-std gap r
    r = 1e-7
    assert ours.item() == pytest.approx(5 * r**2 * (1 - 2 * r / 3), rel=1e-6)


def test_diag_gaussian_kl_is_zero_on_identical_and_positive_otherwise():
    m, ls = torch.randn(10, 4), torch.randn(4)
    assert torch.equal(diag_gaussian_kl(m, ls, m, ls), torch.zeros(10))
    assert (diag_gaussian_kl(m, ls, m + 0.1, ls) > 0).all()


def test_kl_profile_against_a_loop_over_snapshots():
    g = torch.Generator().manual_seed(0)
    n, states, act_dim = 23, 9, 5
    means = torch.randn(n, states, act_dim, generator=g)
    logstds = torch.randn(n, act_dim, generator=g) * 0.3
    # a chunk of 2 snapshots forces the chunked path, including a last chunk of one
    seq_kl, ref_kl = kl_profile(means, logstds, max_elements=2 * states * act_dim)
    # gaps between float32 means are taken in float32 (exact for nearby snapshots, 6e-8 relative otherwise),
    # then squared and averaged in float64: agreement to 1e-6 relative with an all-float64 computation
    assert seq_kl.shape == (n - 1,) and ref_kl.shape == (n,)
    m, ls = means.double(), logstds.double()
    for i in range(n - 1):
        expected = reference_kl(m[i + 1], ls[i + 1].expand(states, act_dim), m[i], ls[i].expand(states, act_dim)).mean()
        assert seq_kl[i].item() == pytest.approx(expected.item(), rel=1e-6)
    for i in range(n):
        expected = reference_kl(m[-1], ls[-1].expand(states, act_dim), m[i], ls[i].expand(states, act_dim)).mean()
        assert ref_kl[i].item() == pytest.approx(expected.item(), rel=1e-6, abs=1e-15)
    assert ref_kl[-1].item() == 0.0


def test_kl_profile_resolves_nearby_snapshots():
    # snapshots one float32 ulp-scale step apart: the float32 gap is exact, so the KL is too
    means = torch.ones(3, 4, 2) + torch.tensor([0.0, 1e-6, 3e-6]).view(3, 1, 1)
    logstds = torch.zeros(3, 2)
    seq_kl, ref_kl = kl_profile(means, logstds)
    gaps = means[:, 0, 0].double()
    expected_seq = (gaps[1:] - gaps[:-1]) ** 2  # 2 dims x 0.5 x gap^2
    torch.testing.assert_close(seq_kl, expected_seq, rtol=1e-12, atol=0)
    torch.testing.assert_close(ref_kl, (gaps[-1] - gaps) ** 2, rtol=1e-12, atol=0)


def test_contraction_rate_recovers_a_geometric_decay():
    updates = np.arange(0, 101, 5)
    ref_kl = 0.3 * 0.97 ** updates.astype(float)
    ref_kl[-1] = 0.0  # the final snapshot against itself
    assert contraction_rate(ref_kl, updates) == pytest.approx(0.97, rel=1e-9)
    assert np.isnan(contraction_rate(np.array([0.1, 0.0]), np.array([0, 1])))


def test_snapshot_means_are_actor_mean_of_each_snapshot():
    """The snapshot store's batched forward (the first layer of every snapshot as one matmul per member) against
    actor_mean on each snapshot and member alone, on members with states of their own, wide observations
    (Humanoid's 348) and narrow ones, and a block shorter than the store's."""
    for obs_dim, act_dim, members, num_states, n in ((348, 17, 1, 1024, 16), (17, 6, 3, 37, 5)):
        agent = Agent(obs_dim, act_dim, [torch.Generator().manual_seed(s) for s in range(members)])
        states = torch.randn(members, num_states, obs_dim, generator=torch.Generator().manual_seed(7))
        base = agent.params.detach()[:, :agent.actor_size]
        weights = base + 0.01 * torch.randn(n, *base.shape, generator=torch.Generator().manual_seed(8))
        with torch.no_grad():
            got = agent.snapshot_means(states, weights)
            for k in range(n):
                for m in range(members):
                    alone = agent.actor_mean(states[m:m + 1], weights[k, m:m + 1])[0]
                    torch.testing.assert_close(got[k, m], alone, rtol=1e-5, atol=1e-6)


def test_closing_the_snapshot_store_ends_its_worker_and_drops_the_blocks_waiting():
    """A run that stops mid-iteration closes its store: the worker thread finishes the block it is on, skips those
    still queued and ends, so that no torch kernel runs in it while the interpreter exits (which aborts). Closing
    again does nothing."""
    import threading
    import time

    from ppo_kl.kl_profiling import SnapshotStore

    evaluated, started, release = [], threading.Event(), threading.Event()

    def held_means(states, block):  # each block waits for the test's release: no timing assumed
        started.set()
        assert release.wait(30)
        evaluated.append(block.shape[0])
        return torch.zeros(block.shape[0], states.shape[0], states.shape[1], 2)

    store = SnapshotStore(200, 1, 1, 8, torch.zeros(1, 6), 2, held_means)
    store.begin_iteration(torch.zeros(1, 8, 3), [8])
    for update in range(1, 5 * SnapshotStore.block_size):  # 5 full blocks queued
        store.record(update, 0, update)
    assert started.wait(30) and store.worker.is_alive()
    closing = threading.Thread(target=store.close)
    closing.start()
    deadline = time.monotonic() + 30
    while list(store.pending.queue) != [None]:  # the 4 waiting blocks dropped, the stop queued behind the one held
        assert time.monotonic() < deadline, list(store.pending.queue)
        time.sleep(0.01)
    release.set()
    closing.join(30)
    assert not closing.is_alive() and not store.worker.is_alive()
    assert evaluated == [SnapshotStore.block_size] and store.pending.unfinished_tasks == 0
    store.close()
