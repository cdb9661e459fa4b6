"""Shared pieces: networks, distributions, evaluation, logging, checkpoints, configuration."""
