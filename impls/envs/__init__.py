"""Environments: gymnasium and Atari makers (gym.py), experts for the curriculum (experts.py), environments
written in jax for the compiled loop (jax_envs.py), and OGBench evaluation environments (ogbench.py)."""
