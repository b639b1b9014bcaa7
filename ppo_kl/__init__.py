"""The support of ppo_continuous_kl.py, plot_kl.py and the two sweeps; docs/internals.md maps its modules."""
