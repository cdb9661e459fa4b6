"""The agent registry: algorithm name -> (agent class, get_config, kind). train.py dispatches only here.

Every agent keeps one contract (docs/ARCHITECTURE.md): `create(seed, example_batch, config)`, a jitted
`update(batch) -> (agent, info)`, `initial_carry(batch_size)` and `act(carry, observations, goals, key, mode)
-> (actions, carry)`. The run engine (impls/runs) picks its loop by `kind`, never by name."""

from __future__ import annotations

import dataclasses
import difflib
from typing import Callable

from impls.agents import ad, cad, cmd, crl, dqn, dreamer, gciql, gcsl, gcsl_transformer


@dataclasses.dataclass(frozen=True)
class AgentSpec:
    name: str  # canonical (lower-case) algorithm name, as stored in config.json and checkpoints
    agent_cls: type
    get_config: Callable
    kind: str  # 'offline_gc': offline goal-conditioned on an OGBench-layout dataset; 'online': env interaction;
    # 'online_goal': online goal reaching, fixed-length episodes toward sampled goals (impls/runs/goal_online.py);
    # 'in_context': in-context RL trained on learning histories, evaluated on held-out tasks (impls/runs/in_context.py).


AGENTS = {
    'ad': AgentSpec('ad', ad.ADAgent, ad.get_config, 'in_context'),
    'cad': AgentSpec('cad', cad.CADAgent, cad.get_config, 'in_context'),
    'cmd': AgentSpec('cmd', cmd.CMDAgent, cmd.get_config, 'offline_gc'),
    'crl': AgentSpec('crl', crl.CRLAgent, crl.get_config, 'offline_gc'),
    'gciql': AgentSpec('gciql', gciql.GCIQLAgent, gciql.get_config, 'offline_gc'),
    'dqn': AgentSpec('dqn', dqn.DQNAgent, dqn.get_config, 'online'),
    'dreamer': AgentSpec('dreamer', dreamer.DreamerAgent, dreamer.get_config, 'online'),
    'gcsl': AgentSpec('gcsl', gcsl.GCSLAgent, gcsl.get_config, 'online_goal'),
    'gcsl_transformer': AgentSpec('gcsl_transformer', gcsl_transformer.GCSLTransformerAgent, gcsl_transformer.get_config,
                                  'online_goal'),
}


class UnknownAlgorithmError(ValueError):
    pass


def get_agent(name: str) -> AgentSpec:
    """The agent registered under `name`, in any case (CMD, cmd and Cmd are one agent)."""
    key = str(name).strip().lower()
    if key not in AGENTS:
        close = difflib.get_close_matches(key, AGENTS, n=1)
        hint = f' Did you mean {close[0]!r}?' if close else ''
        raise UnknownAlgorithmError(f'unknown --algorithm {name!r}; available: {", ".join(sorted(AGENTS))}.{hint}')
    return AGENTS[key]
