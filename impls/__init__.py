"""impls: correct, fast, tested JAX/Flax reinforcement-learning agents."""

__version__ = '0.1.0'
