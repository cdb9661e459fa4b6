"""The episode store: one per-environment circular storage of an online run's steps, serving the three kinds of
samples the online agents train on:

- `sample_transitions`: transitions with n-step returns, uniform or proportional prioritized replay (DQN);
- `sample_sequences`: fixed-length windows of consecutive steps, which may cross episode boundaries (Dreamer);
- `sample_pairs`: (state, later state of the same episode) pairs for hindsight relabelling (GCSL).

Storage is (capacity_per_env, num_envs, ...) for each field: observations, actions, rewards, next_observations,
terminated (MDP termination: no bootstrapping) and done (episode end: terminated or truncated). Every add() writes
one row for all envs, so each env's rows, oldest to newest, are its own stream. Gymnasium's reset steps (the step
after an episode end only resets that env) arrive with valid=False and are kept as zero-reward, episode-ending
placeholders: transitions never sample them, and sequences and pairs drop them from the stream, so the next real
step starts an episode (is_first). An n-step sample from (t, e) sums r_t + g r_{t+1} + ... up to n rewards or the
episode's end, and bootstraps from next_observations at the last step with discount g^k (0 if it terminated).
"""

from __future__ import annotations

import numpy as np

FIELDS = ('observations', 'actions', 'rewards', 'next_observations', 'terminated', 'done')


def n_step_batch(data, rows, envs, n_step, discount, per_env, xp=np):
    """n-step targets for samples (rows[i], envs[i]) of a per-env circular buffer; `xp` is numpy (the host
    replay) or jax.numpy (the compiled loop's device replay), so both compute them the same way.

    returns = sum_{k<m} g^k r_{t+k}, m = n or the steps to the episode's end; bootstrap_discounts = g^m, or 0
    if the episode terminated (not truncated) within them; next_observations = s_{t+m}.
    """
    acc = np.float64 if xp is np else xp.float32  # the host accumulates in float64, the device in float32
    returns = xp.zeros(rows.shape, acc)
    factor = xp.ones(rows.shape, acc)
    alive = xp.ones(rows.shape, bool)  # still accumulating
    last = rows
    for k in range(n_step):
        r = (rows + k) % per_env
        returns = returns + xp.where(alive, factor * data['rewards'][r, envs], 0.0)
        last = xp.where(alive, r, last)
        factor = xp.where(alive, factor * discount, factor)
        alive = alive & ~data['done'][r, envs]
    bootstrap = xp.where(data['terminated'][last, envs], 0.0, factor)
    return dict(
        observations=data['observations'][rows, envs],
        actions=data['actions'][rows, envs],
        returns=returns.astype(xp.float32),
        bootstrap_discounts=bootstrap.astype(xp.float32),
        next_observations=data['next_observations'][last, envs],
    )


class SumTree:
    """A complete binary tree over `capacity` leaves holding priorities; every operation is vectorised
    over a batch of leaves (one numpy op per tree level), so a batch of 16384 costs ~20 array ops."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.depth = max(1, int(np.ceil(np.log2(capacity))))
        self.size = 1 << self.depth
        self.nodes = np.zeros(2 * self.size, dtype=np.float64)  # nodes[1] is the root; leaves at [size, 2 size)

    @property
    def total(self) -> float:
        return float(self.nodes[1])

    def set(self, leaves, priorities):
        leaves = np.asarray(leaves, dtype=np.int64)
        idx = leaves + self.size
        self.nodes[idx] = priorities
        idx = np.unique(idx // 2)
        while idx[0] >= 1:
            self.nodes[idx] = self.nodes[2 * idx] + self.nodes[2 * idx + 1]
            if idx[0] == 1:
                break
            idx = np.unique(idx // 2)

    def get(self, leaves):
        return self.nodes[np.asarray(leaves, dtype=np.int64) + self.size]

    def find(self, values):
        """For each value in [0, total), the leaf whose cumulative-priority interval holds it."""
        values = np.array(values, dtype=np.float64)
        idx = np.ones(len(values), dtype=np.int64)
        for _ in range(self.depth):
            left = 2 * idx
            go_right = values >= self.nodes[left]
            values = np.where(go_right, values - self.nodes[left], values)
            idx = np.where(go_right, left + 1, left)
        return np.minimum(idx - self.size, self.capacity - 1)


class EpisodeStore:
    """Per-environment circular storage of steps; transitions (n-step, optionally prioritized), sequences and
    hindsight pairs are all sampled from it.

    Args:
        capacity: total steps held (split evenly over num_envs; the oldest row is overwritten first).
        num_envs: parallel environments writing one step each per add().
        example: dict with one step's 'observations' and 'actions' (shapes and dtypes).
        n_step, discount: the return horizon and discount of `sample_transitions`.
        prioritized: proportional PER (Schaul et al. 2016) with exponent `alpha` for `sample_transitions`.
    """

    def __init__(self, capacity, num_envs, example, n_step=1, discount=0.99, prioritized=False, alpha=0.6, eps=1e-6):
        if capacity < num_envs:
            raise ValueError(f'replay capacity {capacity} is smaller than the number of envs {num_envs}.')
        self.per_env = capacity // num_envs
        self.num_envs = num_envs
        self.n_step, self.discount = n_step, discount
        obs = np.asarray(example['observations'])
        act = np.asarray(example['actions'])
        shape = (self.per_env, num_envs)
        self.data = dict(
            observations=np.zeros(shape + obs.shape, obs.dtype),
            next_observations=np.zeros(shape + obs.shape, obs.dtype),
            actions=np.zeros(shape + act.shape, act.dtype),
            rewards=np.zeros(shape, np.float32),
            terminated=np.zeros(shape, bool),
            done=np.zeros(shape, bool),
        )
        self.valid = np.zeros(shape, bool)  # real transitions (not gymnasium's reset steps)
        # Whether a row starts an episode, decided when it is written: once the row before it is overwritten,
        # nothing else could tell.
        self.is_first = np.zeros(shape, bool)
        self.pos = 0  # next row to write
        self.rows = 0  # rows filled (<= per_env)
        self.prioritized = prioritized
        self.alpha, self.eps = alpha, eps
        self.tree = SumTree(self.per_env * num_envs) if prioritized else None
        self.max_priority = 1.0

    def __len__(self):
        return self.rows * self.num_envs

    def add(self, transition, valid=None):
        """Write one row: each field (num_envs, ...). `valid` (num_envs,) marks envs whose transition is
        real; an invalid one (gymnasium's reset step after an episode end) is stored as a zero-priority,
        episode-ending placeholder that is never sampled and never summed into a return."""
        row = self.pos
        # A real step starts an episode if it is its env's first, or follows an episode end or a placeholder
        # (placeholders are stored with done=True). Read before writing: with one row per env, row is the previous.
        after_end = np.ones(self.num_envs, bool) if self.rows == 0 else self.data['done'][(row - 1) % self.per_env]
        for key in FIELDS:
            self.data[key][row] = transition[key]
        if valid is not None:
            invalid = ~np.asarray(valid, bool)
            self.data['done'][row] |= invalid
            self.data['terminated'][row] |= invalid
            self.data['rewards'][row] = np.where(invalid, 0.0, self.data['rewards'][row])
        self.pos = (self.pos + 1) % self.per_env
        self.rows = min(self.rows + 1, self.per_env)
        leaves = row * self.num_envs + np.arange(self.num_envs)
        if self.prioritized:
            priority = np.full(self.num_envs, self.max_priority**self.alpha)
            if valid is not None:
                priority = np.where(valid, priority, 0.0)
            self.tree.set(leaves, priority)
        self.valid[row] = True if valid is None else valid
        self.is_first[row] = self.valid[row] & after_end

    def _newest_rows(self, k):
        return (self.pos - 1 - np.arange(k)) % self.per_env

    def _oldest_first(self):
        """(rows,) the storage rows held, oldest first: each env's stream order (never across the write position)."""
        return (self.pos - self.rows + np.arange(self.rows)) % self.per_env

    def _check_not_empty(self):
        if self.rows == 0:
            raise ValueError('cannot sample from an empty episode store; add() steps before sampling from it.')

    def sample_transitions(self, rng: np.random.Generator, batch_size: int, beta: float = 0.4):
        """A batch with n-step targets: observations (B, ...), actions (B, ...), returns (B,), bootstrap_discounts
        (B,) (g^k, 0 if the episode terminated within the n steps), next_observations (B, ...) (s_{t+k}), weights
        (B,) (importance weights, 1 for uniform replay) and indices (B,) (for update_priorities)."""
        self._check_not_empty()
        # The newest n - 1 rows do not have their n-step future yet: leave them out.
        blocked = set(self._newest_rows(min(self.n_step - 1, self.rows - 1)).tolist()) if self.n_step > 1 else set()
        if self.prioritized:
            total = self.tree.total
            if total <= 0:
                raise ValueError('all replay priorities are zero.')
            bounds = np.linspace(0, total, batch_size + 1)
            values = rng.uniform(bounds[:-1], bounds[1:])  # stratified
            leaves = self.tree.find(values)
            for _ in range(3):  # resample the few that hit blocked rows or zero-priority leaves
                bad = np.isin(leaves // self.num_envs, list(blocked)) | (self.tree.get(leaves) <= 0)
                if not bad.any():
                    break
                leaves[bad] = self.tree.find(rng.uniform(0, total, bad.sum()))
            probs = self.tree.get(leaves) / total
            weights = (len(self) * np.maximum(probs, 1e-12)) ** (-beta)
            weights = (weights / weights.max()).astype(np.float32)
        else:
            valid = self.valid[: self.rows].copy()
            for r in blocked:
                valid[r] = False
            flat = np.flatnonzero(valid.reshape(-1))
            if len(flat) == 0:
                raise ValueError('no transition in the store has its n-step future yet; add more steps first.')
            leaves = flat[rng.integers(0, len(flat), batch_size)]
            weights = np.ones(batch_size, np.float32)
        rows, envs = leaves // self.num_envs, leaves % self.num_envs
        batch = self._n_step(rows, envs)
        batch['weights'] = weights
        batch['indices'] = leaves
        return batch

    def _n_step(self, rows, envs):
        return n_step_batch(self.data, rows, envs, self.n_step, self.discount, self.per_env, np)

    def update_priorities(self, indices, td_errors):
        if not self.prioritized:
            return
        priority = np.abs(np.asarray(td_errors, np.float64)) + self.eps
        self.max_priority = max(self.max_priority, float(priority.max()))
        self.tree.set(indices, priority**self.alpha)

    def sample_sequences(self, rng: np.random.Generator, batch_size: int, length: int, cross_episodes: bool = True):
        """Windows of `length` consecutive real steps of one env's stream (placeholders dropped), uniform over all
        such windows of all envs; a window may cross episode boundaries (unless cross_episodes is False: then it lies
        within one episode) but never the ring's write position.

        Returns observations (B, T, ...), next_observations (B, T, ...), actions (B, T, ...), rewards (B, T) float32,
        terminated (B, T) (the step ended its episode in a terminal state), is_first (B, T) (the step starts an
        episode: its env's first step, or the previous real step ended an episode, or a reset step was dropped just
        before it) and age (B,) int32 (real steps of that env held after the window's last step: 0 = the newest).
        """
        self._check_not_empty()
        if length < 1:
            raise ValueError(f'sequence length must be at least 1, got {length}.')
        order = self._oldest_first()
        real = self.valid[order]  # (rows, E)
        counts = real.sum(0)  # (E,)
        stream = np.zeros((self.num_envs, max(int(counts.max()), 1)), np.int64)  # stream[e, i]: env e's i-th step's row
        for e in range(self.num_envs):
            stream[e, : counts[e]] = order[real[:, e]]
        if cross_episodes:
            windows = np.maximum(counts - length + 1, 0)
            if windows.sum() == 0:
                raise ValueError(f'sequence length {length} is longer than the {counts.max()} consecutive steps held '
                                 f'for any env; sample shorter sequences or add more steps first.')
            ends = np.cumsum(windows)
            flat = rng.integers(0, ends[-1], batch_size)
            envs = np.searchsorted(ends, flat, side='right')
            starts = flat - (ends - windows)[envs]
        else:
            envs, starts = self._starts_within_episodes(rng, batch_size, length, stream, counts)
        rows, env_col = stream[envs[:, None], starts[:, None] + np.arange(length)], envs[:, None]  # (B, T), (B, 1)
        return dict(
            observations=self.data['observations'][rows, env_col],
            next_observations=self.data['next_observations'][rows, env_col],
            actions=self.data['actions'][rows, env_col],
            rewards=self.data['rewards'][rows, env_col],
            terminated=self.data['terminated'][rows, env_col],
            is_first=self.is_first[rows, env_col],
            age=(counts[envs] - starts - length).astype(np.int32),
        )

    def _starts_within_episodes(self, rng, batch_size, length, stream, counts):
        """(envs, starts) of windows that never cross an episode end, uniform over all such windows."""
        envs_all, starts_all = [], []
        for e in range(self.num_envs):
            first = self.is_first[stream[e, : counts[e]], e]
            episode_start = np.maximum.accumulate(np.where(first, np.arange(counts[e]), 0))  # each step's episode start
            done = self.data['done'][stream[e, : counts[e]], e]
            # A window starting at i fits if no episode starts inside (i, i + length) and no step in it but the last
            # ends an episode: equivalently, step i + length - 1 belongs to the episode of step i.
            i = np.arange(max(counts[e] - length + 1, 0))
            ok = episode_start[i + length - 1] == episode_start[i] if len(i) else np.zeros(0, bool)
            ends_before = np.concatenate([[0], np.cumsum(done)])  # ends_before[j]: episode ends among steps < j
            ok &= ends_before[i + length - 1] == ends_before[i]
            envs_all.append(np.full(int(ok.sum()), e)), starts_all.append(i[ok])
        envs_all, starts_all = np.concatenate(envs_all), np.concatenate(starts_all)
        if len(starts_all) == 0:
            raise ValueError(f'sequence length {length} is longer than every episode held, and sequences may not cross '
                             f'episode ends (cross_episodes=False). Lower --agent.sequence_length, or let sequences '
                             f'cross episode ends (--agent.cross_episodes=true: is_first resets the state).')
        pick = rng.integers(0, len(starts_all), batch_size)
        return envs_all[pick], starts_all[pick]

    def sample_pairs(self, rng: np.random.Generator, batch_size: int):
        """(state, later state of the same episode) pairs for hindsight relabelling, from the steps still held.

        A step t is uniform over all real steps held (all envs); t'' is uniform over {t, ..., t_end}, where t_end is
        the last held step of t's episode (the step with done, or the env's newest step if the episode still runs);
        the goal is next_observations[t''], the state reached after horizon = t'' - t + 1 steps. Pairs never cross
        an episode end, a dropped reset step, or the write position, so never use rows another episode overwrote.

        Returns observations (B, ...), actions (B, ...), goals (B, ...) and horizon (B,) int32 (>= 1).
        """
        self._check_not_empty()
        order = self._oldest_first()
        real, first = self.valid[order], self.is_first[order]  # (rows, E), stream order
        # The held part of an episode ends at a done, before a new episode or a placeholder, or at the newest row.
        ends = self.data['done'][order].copy()
        ends[:-1] |= first[1:] | ~real[1:]
        ends[-1] = True
        step = np.arange(self.rows)[:, None]
        last = np.minimum.accumulate(np.where(ends, step, self.rows)[::-1], axis=0)[::-1]  # (rows, E): t_end
        flat = np.flatnonzero(real)
        if len(flat) == 0:
            raise ValueError('the episode store holds only reset steps (valid=False); add real steps before sampling.')
        picks = flat[rng.integers(0, len(flat), batch_size)]
        t, envs = picks // self.num_envs, picks % self.num_envs
        goal_t = rng.integers(t, last[t, envs] + 1)
        return dict(
            observations=self.data['observations'][order[t], envs],
            actions=self.data['actions'][order[t], envs],
            goals=self.data['next_observations'][order[goal_t], envs],
            horizon=(goal_t - t + 1).astype(np.int32),
        )

    def state_dict(self):
        state = {f'data/{k}': v[: self.rows] for k, v in self.data.items()}
        state.update(pos=np.int64(self.pos), rows=np.int64(self.rows), max_priority=np.float64(self.max_priority),
                     valid_rows=self.valid[: self.rows], is_first_rows=self.is_first[: self.rows])
        if self.prioritized:
            state['priorities'] = self.tree.get(np.arange(self.rows * self.num_envs))
        return state

    def load_state_dict(self, state):
        self.rows, self.pos = int(state['rows']), int(state['pos'])
        for k in self.data:
            self.data[k][: self.rows] = state[f'data/{k}']
        self.max_priority = float(state['max_priority'])
        self.valid[: self.rows] = state['valid_rows']
        if 'is_first_rows' in state:
            self.is_first[: self.rows] = state['is_first_rows']
        elif self.rows:  # a checkpoint from before episode starts were stored: derive them (a wrapped oldest row: no)
            order = self._oldest_first()
            after_end = self.data['done'][np.roll(order, 1)]
            after_end[0] = self.rows < self.per_env
            self.is_first[order] = self.valid[order] & after_end
        if self.prioritized:
            self.tree.set(np.arange(self.rows * self.num_envs), state['priorities'])
