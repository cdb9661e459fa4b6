"""Restore an agent from a run directory written by train.py (for resuming experts, the goal-use diagnostic and
the user's own analysis): the agent is rebuilt from the config saved beside its checkpoints."""

from __future__ import annotations

import json
import os

import numpy as np

from impls.agents import AGENTS, get_agent
from impls.runs.updates import stack_agents, unstack_agent
from impls.utils.checkpoints import CheckpointError, Checkpointer


def resolve_checkpoint(path: str):
    """A run directory, its checkpoint directory, or one step directory -> (checkpoint dir, step or None)."""
    path = os.path.abspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f'checkpoint path {path} does not exist.')
    if os.path.isdir(os.path.join(path, 'checkpoints')):
        return os.path.join(path, 'checkpoints'), None
    if os.path.basename(path).isdigit():
        return os.path.dirname(path), int(os.path.basename(path))
    return path, None


def load_agent(path: str, algorithm: str | None = None, seed_index: int = 0, allow_online: bool = True):
    """Restore an agent from a checkpoint written by train.py, using the config saved beside it (from a
    --num_seeds run: the seed at `seed_index`).

    Returns (agent, record, step); record is the saved config.json (algorithm, agent config, dataset, ...)."""
    ckpt_dir, step = resolve_checkpoint(path)
    record_path = os.path.join(ckpt_dir, 'config.json')
    if not os.path.exists(record_path):
        raise CheckpointError(
            f'{ckpt_dir} has no config.json beside its checkpoints, so the agent cannot be rebuilt. Point at a run '
            f'directory written by train.py (its checkpoints/ hold config.json).'
        )
    with open(record_path) as f:
        record = json.load(f)
    spec = get_agent(record['algorithm'])
    if algorithm is not None and get_agent(algorithm).name != spec.name:
        raise CheckpointError(
            f'--algorithm {algorithm} but the checkpoint in {ckpt_dir} was trained with {spec.name!r}; pass '
            f'--algorithm {spec.name} (or leave it out: the checkpoint records its algorithm).'
        )
    if spec.kind == 'online_goal' and not allow_online:
        raise CheckpointError(
            f'{ckpt_dir} holds a {spec.name} agent (online goal reaching); the goal-conditioning diagnostic evaluates '
            f'agents trained offline on OGBench datasets. Its goal use is measured during training: '
            f'training/collapse/goal_invariance in train.csv (the share of states whose action does not change under '
            f'another goal) and the action_collapse health detector.')
    if spec.kind != 'offline_gc' and not allow_online:
        raise CheckpointError(
            f'{ckpt_dir} holds a {spec.name} agent, which is not goal-conditioned; the goal-conditioning diagnostic '
            f'needs a checkpoint of a goal-conditioned agent ({", ".join(n for n, s in AGENTS.items() if s.kind == "offline_gc")}).'
        )
    config = spec.get_config()
    with config.unlocked():
        config.update({k: tuple(v) if isinstance(v, list) else v for k, v in record['agent'].items()})
        if config.get('action_dim') is None:  # runs written before the action size was part of the agent config
            config.action_dim = record.get('action_dim', record.get('num_actions'))
    checkpointer = Checkpointer(ckpt_dir)
    if checkpointer.latest_step() is None:
        raise CheckpointError(f'no checkpoint in {ckpt_dir}.')
    template = spec.agent_cls.create(0, example_batch(record, spec.kind), config)
    num_seeds = int(record.get('num_seeds', 1))
    if num_seeds > 1:  # a --num_seeds run: all seeds in one checkpoint; return one of them
        if not 0 <= seed_index < num_seeds:
            raise CheckpointError(f'seed index {seed_index} but the checkpoint holds {num_seeds} seeds.')
        stacked, meta = checkpointer.restore(stack_agents([template] * num_seeds), step=step,
                                             expect=dict(algorithm=spec.name))
        return unstack_agent(stacked, seed_index), record, int(meta['step'])
    agent, meta = checkpointer.restore(template, step=step, expect=dict(algorithm=spec.name))
    return agent, record, int(meta['step'])


def example_batch(record: dict, kind: str) -> dict:
    """Zeros shaped like the batch the agent was created from (config.json's example_batch; older runs recorded
    input_shape / observation_shape instead)."""
    if 'example_batch' in record:
        return {k: np.zeros((2, *v['shape']), v['dtype']) for k, v in record['example_batch'].items()}
    if kind == 'online':
        return dict(observations=np.zeros((2, *record['observation_shape']), record['observation_dtype']))
    discrete = bool(record['agent'].get('discrete'))
    actions = np.zeros((2,), np.int32) if discrete else np.zeros((2, record['action_dim']), np.float32)
    return dict(observations=np.zeros((2, *record['input_shape']), record['input_dtype']), actions=actions)
