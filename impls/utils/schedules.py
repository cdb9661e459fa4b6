"""Schedules shared by agents and loops (exploration rates, the expert curriculum, PER's beta)."""

from __future__ import annotations

import numpy as np


def linear(start, end, fraction, step, total, xp=np):
    """Linear from `start` at step 0 to `end` at step fraction x total, then constant:
        end + (start - end) * max(0, 1 - step / max(1, fraction x total)).
    `xp` is numpy (host floats) or jax.numpy (a traced step, inside a compiled loop)."""
    horizon = max(1.0, fraction * total)
    return end + (start - end) * xp.maximum(0.0, 1.0 - step / horizon)
