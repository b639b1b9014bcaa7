# KL profiling for ppo_continuous_kl.py: the paper's sequential and reference KL within one iteration, from the
# policy snapshotted after every minibatch update of every member of the population.
import queue
import threading

import numpy as np
import torch

from ppo_kl.checkpoints import save_npz_atomic


def kl_from_mean_gap(sq_gap, logstd_p, logstd_q):
    """The diagonal-Gaussian KL(p || q) from the squared gap between the means. It is linear in the gap, so the
    mean KL over states is this of the mean squared gap. expm1 keeps the tiny divergences between consecutive
    snapshots from drowning in cancellation."""
    r = logstd_q - logstd_p
    return (0.5 * (torch.expm1(-2 * r) + 2 * r) + 0.5 * sq_gap * torch.exp(-2 * logstd_q)).sum(-1)


def mean_sq_gap(means_p, means_q):
    """E_s (mu_p(s) - mu_q(s))^2 per action dim: [k, S, A] against [k or 1, S, A] -> [k, A], summed in float64."""
    return torch.linalg.vector_norm(means_p - means_q, dim=1, dtype=torch.float64) ** 2 / means_p.shape[1]


def kl_profile(means, logstds, max_elements=2**22):
    """For snapshots 0..n-1 (means [n, S, A] on S states, logstds [n, A]): seq_kl[i] = E_s KL(pi_{i+1} || pi_i)
    and ref_kl[i] = E_s KL(pi_{n-1} || pi_i), in float64, in chunks that bound temporary memory."""
    n, num_states, act_dim = means.shape
    chunk = max(1, max_elements // (num_states * act_dim))
    ref_gap = torch.empty(n, act_dim, dtype=torch.float64, device=means.device)
    seq_gap = torch.empty(n - 1, act_dim, dtype=torch.float64, device=means.device)
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        ref_gap[lo:hi] = mean_sq_gap(means[-1:], means[lo:hi])
        top = min(hi, n - 1)
        if lo < top:
            seq_gap[lo:top] = mean_sq_gap(means[lo + 1:top + 1], means[lo:top])
    logstds = logstds.double()
    return kl_from_mean_gap(seq_gap, logstds[1:], logstds[:-1]), kl_from_mean_gap(ref_gap, logstds[-1:], logstds)


def contraction_rate(ref_kl, x):
    """gamma_D of the paper's Assumption 4, KL(pi^U || pi^i) ~ C gamma_D^x: exp of the least-squares slope of
    log ref_kl against x (the update index, or the % of the iteration's updates done), the final, zero entry
    excluded. NaN when under two points."""
    keep = ref_kl[:-1] > 0
    if keep.sum() < 2:
        return float("nan")
    return float(np.exp(np.polyfit(x[:-1][keep], np.log(ref_kl[:-1][keep]), 1)[0]))


def sample_states(b_obs, counts, num_states, generators):
    """Each member's fixed random sample of num_states of its counts[m] states (b_obs [S, max count, obs]), drawn
    from its own generator; a member with fewer states takes them all, its rows padded by repeats. Returns the
    states [S, num_states, obs] and how many of each member's are real."""
    idx = torch.stack([torch.randperm(n, device=b_obs.device, generator=g)[:num_states].repeat(-(-num_states // n))
                       [:num_states] for n, g in zip(counts, generators)])
    return torch.take_along_dim(b_obs, idx.unsqueeze(-1), dim=1), [min(n, num_states) for n in counts]


class SnapshotStore:
    """Every member's policy after every kept minibatch update, as its Gaussian on a fixed sample of that member's
    states of the iteration. The update loop only copies the members' actor weights (one row of the flat
    parameter each, log-std last) into a block on the device: one kernel, no module copies, no host sync. A worker
    thread turns each full block into means with a few batched kernels (`snapshot_means(states [S, St, obs],
    weights [n, S, Pa])`), so on a CPU the forward passes run on a core the single-threaded update loop leaves
    idle. A bounded queue caps the weights waiting in memory."""

    block_size = 16

    def __init__(self, max_updates, kl_every, num_members, num_states, actor_weights, act_dim, snapshot_means):
        self.kl_every, self.actor_weights, self.snapshot_means = kl_every, actor_weights, snapshot_means
        self.act_dim, self.device = act_dim, actor_weights.device
        capacity = max_updates // kl_every + 2
        self.means = torch.zeros(capacity, num_members, num_states, act_dim, device=self.device)
        self.logstds = torch.zeros(capacity, num_members, act_dim, device=self.device)
        self.pending = queue.Queue(maxsize=64)
        self.error = None
        self.worker = threading.Thread(target=self._evaluate_pending, daemon=True)
        self.worker.start()

    def nbytes(self):
        return self.means.nelement() * self.means.element_size() + self.logstds.nelement() * self.logstds.element_size()

    @torch.no_grad()
    def _evaluate_pending(self):
        while True:
            item = self.pending.get()
            if item is None:
                self.pending.task_done()
                return
            first, states, block = item
            try:
                n = block.shape[0]
                self.means[first:first + n, :, : states.shape[1]] = self.snapshot_means(states, block)
                self.logstds[first:first + n] = block[:, :, -self.act_dim:]
            except Exception as e:  # surfaced by finish_iteration; the queue must still drain
                self.error = e
            self.pending.task_done()

    @torch.no_grad()
    def _take(self, update, epoch, minibatch):
        k = len(self.updates)
        if self.filled == 0:
            self.block = torch.empty(self.block_size, *self.actor_weights.shape, device=self.device)
            self.block_start = k
        self.block[self.filled].copy_(self.actor_weights)
        self.filled += 1
        self.updates.append(update)
        self.epochs.append(epoch)
        self.minibatches.append(minibatch)
        if self.filled == self.block_size:
            self._flush()

    def _flush(self):
        if self.filled:
            self.pending.put((self.block_start, self.states, self.block[: self.filled]))
            self.filled = 0

    def begin_iteration(self, states, counts):
        """states: [members, St, obs], each member's sample of its own rollout, its first counts[m] rows real."""
        self.states, self.counts = states, counts
        self.updates, self.epochs, self.minibatches, self.filled = [], [], [], 0
        self._take(0, -1, -1)
        self.last = (0, -1, -1)

    def record(self, update, epoch, minibatch):
        self.last = (update, epoch, minibatch)
        if update % self.kl_every == 0:
            self._take(update, epoch, minibatch)

    def finish_iteration(self):
        """Keeps the final policy pi^U, waits for the worker, and returns each member's profile (numpy)."""
        if self.updates[-1] != self.last[0]:
            self._take(*self.last)
        self._flush()
        self.pending.join()
        if self.error is not None:
            raise RuntimeError("KL snapshot evaluation failed") from self.error
        n = len(self.updates)
        updates = np.array(self.updates)
        profiles = []
        for member, s in enumerate(self.counts):
            seq_kl, ref_kl = kl_profile(self.means[:n, member, :s], self.logstds[:n, member])
            profile = dict(seq_kl=seq_kl.cpu().numpy(), ref_kl=ref_kl.cpu().numpy(), update=updates,
                           epoch=np.array(self.epochs[1:]), minibatch=np.array(self.minibatches[1:]))
            # per update, and per 1% of the iteration's updates: settings with 10,000 and 500 updates per
            # iteration compare only by the second
            profile["gamma_D"] = contraction_rate(profile["ref_kl"], updates)
            profile["gamma_D_per_pct"] = contraction_rate(profile["ref_kl"], 100 * updates / max(updates[-1], 1))
            profile["ref_kl_decrease_frac"] = float(np.mean(np.diff(profile["ref_kl"]) < 0)) if n > 1 else float("nan")
            profiles.append(profile)
        return profiles

    def close(self):
        """Drops the blocks still waiting and ends the worker once its current block is done. A daemon thread that
        the interpreter's exit stops inside a torch kernel aborts the process (`terminate called without an active
        exception`), so a run that stops mid-iteration, on a signal, closes the store before it exits."""
        if not self.worker.is_alive():
            return
        while True:
            try:
                self.pending.get_nowait()
                self.pending.task_done()
            except queue.Empty:
                break
        self.pending.put(None)
        self.worker.join(timeout=60)

    def snapshots(self, member):
        n, s = len(self.updates), self.counts[member]
        return dict(states=self.states[member, :s].cpu().numpy(), means=self.means[:n, member, :s].cpu().numpy(),
                    logstds=self.logstds[:n, member].cpu().numpy())


def write_kl_profile(writer, path, profile, global_step, snapshots, **setting):
    """One run's KL profile of one iteration: its summary into TensorBoard (kl/...), and the whole profile with the
    iteration's setting, and the snapshots when kept, into the .npz at path that plot_kl.py reads."""
    writer.add_scalar("kl/seq_kl_mean", profile["seq_kl"].mean(), global_step)
    writer.add_scalar("kl/ref_kl_start", profile["ref_kl"][0], global_step)
    for name in ("ref_kl_decrease_frac", "gamma_D", "gamma_D_per_pct"):
        writer.add_scalar(f"kl/{name}", profile[name], global_step)
    writer.add_scalar("kl/num_updates", setting["num_updates"], global_step)
    save_npz_atomic(path, global_step=global_step, **setting, **profile, **snapshots)
