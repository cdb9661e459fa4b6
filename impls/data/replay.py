"""Replay for online agents under its old name: `ReplayBuffer` is the episode store (impls.data.episodes), whose
`sample` is `sample_transitions` (n-step returns, uniform or proportional prioritized replay). The storage, the
n-step targets (`n_step_batch`, `FIELDS`) and the sum-tree (`SumTree`) live in impls.data.episodes.
"""

from __future__ import annotations

from impls.data.episodes import FIELDS, EpisodeStore, SumTree, n_step_batch

__all__ = ['FIELDS', 'ReplayBuffer', 'SumTree', 'n_step_batch']


class ReplayBuffer(EpisodeStore):
    """The online loops' replay: an EpisodeStore sampled as n-step transitions through `sample`."""

    sample = EpisodeStore.sample_transitions
