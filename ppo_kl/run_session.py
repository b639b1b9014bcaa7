# The bookkeeping of ppo_continuous_kl.py's runs, behind one door, so that the script's main block reads as PPO:
# opening or resuming the run folders (one per seed), restoring from their checkpoints, TensorBoard and the
# disk check; at the end of each iteration logging, evaluating, checkpointing and stopping on a signal; at the
# end, the summaries and the saved model.
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, replace

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter

from ppo_kl.evaluation import evaluate, freeze_training_stats, log_evaluation
from ppo_kl.kl_profiling import write_kl_profile
from ppo_kl.checkpoints import member_adam_state, rng_states, save_checkpoint, set_rng_states, stacked_adam_state
from ppo_kl.run_folder import (code_version, discard_kl_after, disk_need_bytes, resolve_runs, resume_hint,
                               stop_on_signals, write_hparams, write_tensorboard_layout)
from ppo_kl.run_record import ANATOMY, fail, hms
from ppo_kl.vector_envs import env_state, get_norm_stats, set_env_state


class RunSession:
    """The runs one process trains: one per seed (--num-seeds), each an ordinary run of its seed in its own
    folder. Made before any env is built, so that a wrong run folder costs nothing; `start` restores the training
    state or writes the first checkpoint, `end_iteration` logs and checkpoints, `finish` writes what a finished run
    leaves."""

    def __init__(self, args):
        self.args = args
        self.seeds = list(range(args.seed, args.seed + args.num_seeds))
        self.members = [replace(args, seed=seed) for seed in self.seeds]
        now = code_version()
        self.run_names, self.run_dirs, self.checkpoints = resolve_runs(args, self.members, now)
        self.checkpoint_paths = [os.path.join(d, "checkpoint.pt") for d in self.run_dirs]
        # the code each run started under, then this process's when it differs: a resume under other code says so
        self.code_versions = [list(dict.fromkeys([c["args"].get("code_version", "unknown") if c else now, now]))
                              for c in self.checkpoints]
        if len({c is None for c in self.checkpoints}) > 1 or len({c["iteration"] for c in self.checkpoints if c}) > 1:
            fail(f"the run folders of seeds {self.seeds[0]}..{self.seeds[-1]} hold checkpoints of different iterations "
                 "(or only some do): resume them as single runs (--num-seeds 1), or delete them")
        self.resuming = self.checkpoints[0] is not None
        self.stop_signals = stop_on_signals()
        self.writers = []

    def describe(self, device, compiled, store):
        """The console's first line: where the runs are and what they train."""
        args, dirs = self.args, self.run_dirs
        print(f"{dirs[0] if len(dirs) == 1 else f'{len(dirs)} runs: ' + ', '.join(dirs)}: {args.env_id} on {device} "
              f"({args.env_backend}), {args.num_envs} envs x {args.num_steps} steps, {args.num_minibatches} minibatches"
              f" x {args.minibatch_size} x {args.update_epochs} epochs, {args.num_iterations} iterations"
              + (f", compiled update (cache {os.environ['TORCHINDUCTOR_CACHE_DIR']})" if compiled else "")
              + (f", {len(dirs)} seeds in lockstep" if len(dirs) > 1 else "")
              + (f", KL store {store.nbytes() / 2**20:.0f} MiB" if store else ""), flush=True)

    def start(self, agent, optimizer, envs, eval_envs, generators, kl_generators, next_obs, next_done, compiled,
              store):
        """Says what the runs train; restores them from their checkpoints (agent, Adam, envs, generators), or writes
        the first ones, which proves the folders writable before any training; checks the disk; opens TensorBoard.
        Returns the first iteration to train, the global step, and the next observations and dones."""
        args, device = self.args, next_obs.device
        self.describe(device, compiled, store)
        self.compiled = compiled
        self.agent, self.optimizer, self.envs, self.eval_envs = agent, optimizer, envs, eval_envs
        self.generators, self.kl_generators = generators, kl_generators
        self.recent_returns, self.iteration_wall_s, self.session_wall_s = [[] for _ in self.seeds], [], []
        global_step, self.checkpoint_iteration, elapsed_s = 0, 0, 0.0
        if self.resuming:
            first = self.checkpoints[0]
            if args.env_backend == "warp" and first["envs"]["device"] != device.type:
                fail(f"{self.checkpoint_paths[0]} was written by MuJoCo Warp on the {first['envs']['device']} device: "
                     "a --env-backend warp run resumes only there (its simulation state and RNG are the device's), "
                     f"not on {device.type}")
            with torch.no_grad():
                agent.params.copy_(torch.cat([c["agent"]["params"] for c in self.checkpoints]))
            optimizer.load_state_dict(stacked_adam_state([c["optimizer"] for c in self.checkpoints]))
            for m, c in enumerate(self.checkpoints):
                set_env_state(envs, c["envs"], member=m)
                set_rng_states(c["rngs"], kl_generators[m], generators[m])
                next_obs[m], next_done[m] = c["next_obs"].to(device), c["next_done"].to(device)
                self.recent_returns[m] = c["recent_returns"]
            global_step, self.checkpoint_iteration = first["global_step"], first["iteration"]
            elapsed_s, self.iteration_wall_s = first["wall_time_s"], first["iteration_wall_s"]
            print(f"resuming {', '.join(self.run_dirs)} after iteration {self.checkpoint_iteration} (step "
                  f"{global_step}) from {'its checkpoint' if len(self.seeds) == 1 else 'their checkpoints'}",
                  flush=True)
        if not optimizer.state:  # torch makes Adam's state at its first step; the compiled update needs it before
            optimizer.state[agent.params] = dict(step=torch.zeros((), device=device),
                                                 exp_avg=torch.zeros_like(agent.params),
                                                 exp_avg_sq=torch.zeros_like(agent.params))
        self.start_time = time.time() - elapsed_s
        self.global_step, self.next_obs, self.next_done = global_step, next_obs, next_done
        if not self.resuming:
            self.write_checkpoints(0)
        obs_dim, act_dim = next_obs.shape[-1], envs.single_action_space.shape[0]
        iterations_left = args.num_iterations - self.checkpoint_iteration
        need = len(self.seeds) * disk_need_bytes(args, iterations_left, obs_dim, act_dim,
                                                 os.path.getsize(self.checkpoint_paths[0]))
        free = shutil.disk_usage(self.run_dirs[0]).free
        if need > free:
            fail(f"--runs-dir {args.runs_dir}: the run needs about {need / 2**20:.1f} MiB more, only "
                 f"{free / 2**20:.1f} MiB are free; free space and rerun the same command, or pick another --runs-dir")
        if args.track:
            import wandb

            for member, name, run_dir in zip(self.members, self.run_names, self.run_dirs):
                wandb.init(project=args.wandb_project_name, entity=args.wandb_entity, sync_tensorboard=True,
                           config=vars(member), name=name, monitor_gym=True, save_code=True, dir=run_dir,
                           reinit="create_new")
        # On a resume, TensorBoard drops whatever the interrupted session logged after its checkpoint: no step
        # twice. The KL files of those iterations go too; the iterations redone write them again.
        if self.resuming:
            for run_dir in self.run_dirs:
                discard_kl_after(run_dir, self.checkpoint_iteration)
        self.writers = [SummaryWriter(d, purge_step=global_step + 1 if self.resuming else None) for d in self.run_dirs]
        if not self.resuming:
            for writer, member in zip(self.writers, self.members):
                write_tensorboard_layout(writer)
                write_hparams(writer, member)
                writer.add_text("hyperparameters", "|param|value|\n|-|-|\n%s" % (
                    "\n".join([f"|{key}|{value}|" for key, value in vars(member).items()])))
        return self.checkpoint_iteration + 1, global_step, next_obs, next_done

    def write_checkpoints(self, iteration):
        """One checkpoint per member, each what a single run of its seed would hold."""
        adam_state = self.optimizer.state_dict()
        for m, path in enumerate(self.checkpoint_paths):
            save_checkpoint(path, dict(
                args=asdict(self.members[m]) | dict(run_name=self.run_names[m], code_version=self.code_versions[m][0]),
                iteration=iteration, global_step=self.global_step, wall_time_s=time.time() - self.start_time,
                agent={"params": self.agent.params[m:m + 1].detach().clone()},
                optimizer=member_adam_state(adam_state, m), envs=env_state(self.envs, member=m),
                next_obs=self.next_obs[m], next_done=self.next_done[m], recent_returns=self.recent_returns[m],
                iteration_wall_s=self.iteration_wall_s, rngs=rng_states(self.kl_generators[m], self.generators[m])))
        self.checkpoint_iteration = iteration

    def stop_if_signalled(self, iteration):
        """After SIGTERM or SIGINT: leave at once when the checkpoint on disk is this iteration's start (at the top
        of an iteration, or inside its updates); else end_iteration checkpoints first."""
        if self.stop_signals and self.checkpoint_iteration == iteration - 1:
            self.stop()

    def stop(self):
        signum = self.stop_signals[0]
        print(f"stopped by {signum.name}; {', '.join(self.checkpoint_paths)} hold{'s' if len(self.seeds) == 1 else ''}"
              f" the run after iteration {self.checkpoint_iteration}: {resume_hint(self.args, self.run_names)}",
              file=sys.stderr, flush=True)
        sys.exit(128 + signum.value)

    def end_iteration(self, iteration, global_step, next_obs, next_done, episodes, batch, counts, losses, anatomy,
                      stats, profiles, store, iteration_start):
        """Everything after an iteration's updates: stop on a non-finite loss or a broken simulation; CleanRL's
        TensorBoard tags, the update anatomy and the KL profile into each member's run folder; the evaluation
        (--eval-every); the console line; the checkpoint; a stop on a signal."""
        args, seeds = self.args, self.seeds
        self.global_step, self.next_obs, self.next_done = global_step, next_obs, next_done
        self.recent_returns = [[r for _, r, _ in member] or last for member, last in zip(episodes, self.recent_returns)]
        if args.env_backend == "warp" and (problem := self.envs.physics_problem()):
            fail(f"iteration {iteration}: {problem}; stopping. Everything logged before it is in "
                 f"{', '.join(self.run_dirs)}")
        nonfinite = (~torch.isfinite(losses)).nonzero()
        if len(nonfinite):
            first, member = nonfinite[0].tolist()
            fail(f"non-finite loss at iteration {iteration} (seed {seeds[member]}, epoch "
                 f"{first // args.num_minibatches}, minibatch {first % args.num_minibatches}); stopping. Everything "
                 f"logged before it is in {', '.join(self.run_dirs)}")
        anatomy = anatomy.cpu().numpy()
        num_updates = len(anatomy)
        sps = int(global_step / (time.time() - self.start_time))
        lr = self.optimizer.param_groups[0]["lr"]
        for m, writer in enumerate(self.writers):
            y_pred, y_true = batch.values[m, :counts[m]].cpu().numpy(), batch.returns[m, :counts[m]].cpu().numpy()
            var_y = np.var(y_true)
            explained_var = np.nan if var_y == 0 else 1 - np.var(y_true - y_pred) / var_y
            for step, episodic_return, episodic_length in episodes[m]:
                episode_step = global_step - args.batch_size + (step + 1) * args.num_envs
                writer.add_scalar("charts/episodic_return", episodic_return, episode_step)
                writer.add_scalar("charts/episodic_length", episodic_length, episode_step)
            writer.add_scalar("charts/learning_rate", float(lr), global_step)
            for name in ("value_loss", "policy_loss", "entropy", "old_approx_kl", "approx_kl"):
                writer.add_scalar(f"losses/{name}", stats[name][m].item(), global_step)
            member_anatomy = {name: anatomy[:, i, m] for i, name in enumerate(ANATOMY)}
            # CleanRL averages the clip fraction over the iteration's minibatches
            writer.add_scalar("losses/clipfrac", member_anatomy["clipfrac"].mean(), global_step)
            writer.add_scalar("losses/explained_variance", explained_var, global_step)
            writer.add_scalar("charts/SPS", sps, global_step)
            for name, values in member_anatomy.items():
                writer.add_scalar(f"update/{name}_mean", values.mean(), global_step)
                writer.add_scalar(f"update/{name}_max", values.max(), global_step)
            if args.kl:
                write_kl_profile(
                    writer, os.path.join(self.run_dirs[m], "kl", f"iter_{iteration:05d}.npz"),
                    profiles[m] | member_anatomy, global_step, store.snapshots(m) if args.kl_save_snapshots else {},
                    iteration=iteration, num_envs=args.num_envs, num_steps=args.num_steps,
                    minibatch_size=args.minibatch_size, num_minibatches=args.num_minibatches, num_updates=num_updates,
                    kl_every=args.kl_every, num_transitions=counts[m], env_id=args.env_id, seed=seeds[m])

        # evaluation at equal env steps, on its own envs: training's envs, statistics and generators untouched
        line = ""
        if args.eval_every and (iteration % args.eval_every == 0 or iteration == args.num_iterations):
            eval_start = time.time()
            eval_returns, eval_lengths = self.evaluate()
            log_evaluation(self.writers, eval_returns, eval_lengths, global_step)
            line = f" eval {eval_returns.mean():.1f} ({time.time() - eval_start:.1f} s)"

        # time left from this session's recent iterations; its first holds one-off costs (a compile)
        self.session_wall_s.append(time.time() - iteration_start)
        typical = np.median((self.session_wall_s[1:] or self.session_wall_s)[-10:])
        compiling = len(self.session_wall_s) == 1 and self.compiled
        left = "estimating" if compiling and iteration < args.num_iterations else hms(
            typical * (args.num_iterations - iteration))
        line = (f"iter {iteration}/{args.num_iterations} step {global_step} SPS {sps}"
                f"{' per seed' if len(seeds) > 1 else ''} elapsed {hms(time.time() - self.start_time)} left {left}"
                ) + line
        if any(self.recent_returns):
            line += f" return {np.mean([np.mean(r) for r in self.recent_returns if r]):.1f}"
        if args.kl:
            line += (f" seq_kl {np.mean([p['seq_kl'].mean() for p in profiles]):.2e}"
                     f" KL(U||0) {np.mean([p['ref_kl'][0] for p in profiles]):.2e}")
        print(line, flush=True)
        for writer in self.writers:
            writer.flush()
        self.iteration_wall_s.append(self.session_wall_s[-1])
        if self.stop_signals or iteration == args.num_iterations or (
                args.checkpoint_every and iteration % args.checkpoint_every == 0):
            self.write_checkpoints(iteration)
        if self.stop_signals:
            self.stop()

    def evaluate(self):
        freeze_training_stats(self.eval_envs, self.envs, self.args.norm_stats, len(self.seeds), self.args.num_envs)
        return evaluate(self.agent, self.eval_envs, len(self.seeds), self.seeds, self.args.eval_deterministic)

    def finish(self):
        """Each run's summary.json; with --save-model its model and normalisation statistics, then their
        evaluation."""
        args, agent, device = self.args, self.agent, self.agent.params.device
        summaries = [dict(global_step=self.global_step, iterations=args.num_iterations,
                          wall_time_s=time.time() - self.start_time, iteration_wall_s=self.iteration_wall_s,
                          final_returns=self.recent_returns[m], num_seeds=len(self.seeds),
                          code_version=self.code_versions[m][-1], code_versions=self.code_versions[m])
                     for m in range(len(self.seeds))]
        if device.type == "cuda":
            for summary in summaries:
                summary["cuda_max_memory_allocated"] = torch.cuda.max_memory_allocated(device)
        if args.save_model:
            obs_dim, act_dim = self.next_obs.shape[-1], self.envs.single_action_space.shape[0]
            for m, run_dir in enumerate(self.run_dirs):
                model_path = os.path.join(run_dir, f"{args.exp_name}.pt")
                torch.save(dict(agent={"params": agent.params[m:m + 1].detach().cpu()}, obs_dim=obs_dim,
                                act_dim=act_dim, norm_stats=get_norm_stats(self.envs, member=m),
                                args=asdict(self.members[m])), model_path)
                print(f"model saved to {model_path}")
            eval_returns, _ = self.evaluate()
            for m, writer in enumerate(self.writers):
                for idx, episodic_return in enumerate(eval_returns[m]):
                    writer.add_scalar("eval/saved_model_episodic_return", episodic_return, idx)
                summaries[m]["eval_returns"] = eval_returns[m].tolist()
            print(f"evaluation over {args.eval_episodes} episodes: " + ", ".join(
                f"{r.mean():.1f} +- {r.std():.1f}" for r in eval_returns))
        for run_dir, summary in zip(self.run_dirs, summaries):
            with open(os.path.join(run_dir, "summary.json"), "w") as f:
                json.dump(summary, f, indent=2)

    def close(self):
        for writer in self.writers:
            writer.close()
