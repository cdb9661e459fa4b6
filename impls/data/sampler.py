"""Goal-conditioned batches with OGBench's semantics (hindsight relabelling, frame stacking).

Given transition starts ``idxs`` the sampler adds value goals and actor goals, each drawn from a
mixture of the current state, a future state of the same episode (geometric offsets with success
probability 1 - discount, or uniform over the rest of the episode) and a random dataset state. The
reward is ``success - 1`` (0/-1, ``gc_negative``) or ``success`` (1/0) with ``success = (goal == current
state)`` and ``mask = 1 - success``, as in OGBench's GCDataset. Future goals are clipped to the last
transition of the episode, so a goal never crosses an episode boundary.

All randomness comes from the ``np.random.Generator`` passed in: the same generator state gives the
same batch, bit for bit.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from impls.data.datasets import Dataset, DatasetError, take_rows

GOAL_KEYS = (
    'value_p_curgoal',
    'value_p_trajgoal',
    'value_p_randomgoal',
    'value_geom_sample',
    'actor_p_curgoal',
    'actor_p_trajgoal',
    'actor_p_randomgoal',
    'actor_geom_sample',
    'gc_negative',
    'discount',
)


@dataclasses.dataclass(frozen=True)
class GoalMix:
    """Where goals come from: probabilities of current / same-episode future / random dataset state."""

    p_curgoal: float
    p_trajgoal: float
    p_randomgoal: float
    geom_sample: bool

    def __post_init__(self):
        total = self.p_curgoal + self.p_trajgoal + self.p_randomgoal
        if not np.isclose(total, 1.0) or min(self.p_curgoal, self.p_trajgoal, self.p_randomgoal) < 0:
            raise ValueError(
                f'goal probabilities current/trajectory/random = {self.p_curgoal}/{self.p_trajgoal}/'
                f'{self.p_randomgoal} must be >= 0 and sum to 1; fix the agent config p_*goal values.'
            )


class GoalSampler:
    """Adds goals, rewards and masks to transitions of a Dataset.

    Args:
        dataset: the Dataset (in memory or memory-mapped).
        config: agent config holding the GOAL_KEYS (OGBench names) and ``frame_stack`` (None or int).
    """

    def __init__(self, dataset: Dataset, config):
        missing = [k for k in GOAL_KEYS if k not in config]
        if missing:
            raise KeyError(f'agent config lacks goal-sampling keys {missing}')
        self.dataset = dataset
        self.discount = float(config['discount'])
        self.gc_negative = bool(config['gc_negative'])
        self.value_mix = GoalMix(
            config['value_p_curgoal'], config['value_p_trajgoal'], config['value_p_randomgoal'], config['value_geom_sample']
        )
        self.actor_mix = GoalMix(
            config['actor_p_curgoal'], config['actor_p_trajgoal'], config['actor_p_randomgoal'], config['actor_geom_sample']
        )
        self.frame_stack = config.get('frame_stack', None)
        if self.frame_stack is not None:
            if self.frame_stack < 1:
                raise ValueError(f'frame_stack must be >= 1, got {self.frame_stack}.')
            if dataset.regular:
                raise DatasetError(
                    f'frame_stack={self.frame_stack} needs a compact dataset (observations only, one row per step) '
                    f'but {dataset.path} stores next_observations; drop that key or do not stack frames.'
                )

    def observations(self, idxs, chunk=None):
        """Observations at rows idxs, stacked over the last frame_stack rows of the same episode
        (the first frame is repeated at an episode start: frames never cross episodes). (B, ...)"""
        if self.frame_stack is None:
            return self._rows('observations', idxs, chunk)
        starts = self.dataset.episode_start_idxs(idxs)
        frames = [self._rows('observations', np.maximum(idxs - k, starts), chunk)
                  for k in reversed(range(self.frame_stack))]
        return np.concatenate(frames, axis=-1)

    def next_observations(self, idxs, chunk=None):
        if self.frame_stack is None and self.dataset.regular:
            return self._rows('next_observations', idxs, chunk)
        return self.observations(idxs + 1, chunk)

    def _rows(self, key, idxs, chunk):
        """dataset[key][idxs]; from the loader's chunk (loader.ChunkRows) where it holds them."""
        return take_rows(self.dataset[key], idxs) if chunk is None else chunk.gather(key, idxs)

    def sample_goals(self, rng: np.random.Generator, idxs, mix: GoalMix, final=None):
        """Goal rows for each transition start in idxs (same length). Draws exactly four arrays from rng.
        `final`: the episodes' last transition starts (dataset.final_state_idxs(idxs)), when the caller has them."""
        n = len(idxs)
        random_k = rng.integers(0, self.dataset.num_valid, size=n)  # drawn even when unused: the stream stays fixed
        final = self.dataset.final_state_idxs(idxs) if final is None else final
        if mix.geom_sample:
            offsets = rng.geometric(p=1.0 - self.discount, size=n)  # in [1, inf)
            traj_goals = np.minimum(idxs + offsets, final)
        else:
            u = rng.random(n)  # uniform over [min(idx + 1, final), final]
            traj_goals = np.round(np.minimum(idxs + 1, final) * u + final * (1.0 - u)).astype(np.int64)
        p_traj_given_not_cur = mix.p_trajgoal / (1.0 - mix.p_curgoal) if mix.p_curgoal < 1.0 else 0.0
        # Uniform dataset states (dataset.sample_valid); the row lookup is skipped when they cannot be chosen.
        random_goals = self.dataset.valid_to_row(random_k) if mix.p_randomgoal > 0 else traj_goals
        goals = np.where(rng.random(n) < p_traj_given_not_cur, traj_goals, random_goals)
        return np.where(rng.random(n) < mix.p_curgoal, idxs, goals)

    def sample(self, rng: np.random.Generator, idxs, chunk=None):
        """A goal-conditioned batch for transition starts idxs.

        ``chunk``: the block-shuffle loader's rows in memory (loader.ChunkRows), read instead of the dataset
        where they hold the rows asked for; the batch is the same either way.

        Returns a dict of arrays: observations, next_observations, actions, value_goals, actor_goals,
        rewards (B,), masks (B,).
        """
        idxs = np.asarray(idxs, dtype=np.int64)
        final = self.dataset.final_state_idxs(idxs)  # one episode lookup for both goal draws
        value_goal_idxs = self.sample_goals(rng, idxs, self.value_mix, final)
        actor_goal_idxs = self.sample_goals(rng, idxs, self.actor_mix, final)
        successes = (idxs == value_goal_idxs).astype(np.float32)
        batch = dict(
            observations=self.observations(idxs, chunk),
            next_observations=self.next_observations(idxs, chunk),
            actions=self._rows('actions', idxs, chunk),
            value_goals=self.observations(value_goal_idxs, chunk),
            actor_goals=self.observations(actor_goal_idxs, chunk),
            masks=1.0 - successes,
            rewards=successes - (1.0 if self.gc_negative else 0.0),
        )
        if np.issubdtype(batch['actions'].dtype, np.integer):
            batch['actions'] = batch['actions'].astype(np.int32)
        return batch
