"""The agent registry: algorithm name -> (agent class, get_config). train.py dispatches only here."""

from __future__ import annotations

import dataclasses
import difflib
from typing import Callable

from impls.agents import cmd, crl, gciql


@dataclasses.dataclass(frozen=True)
class AgentSpec:
    agent_cls: type
    get_config: Callable
    kind: str  # 'offline_gc': offline goal-conditioned, trained on an OGBench-layout dataset.


AGENTS = {
    'cmd': AgentSpec(cmd.CMDAgent, cmd.get_config, 'offline_gc'),
    'crl': AgentSpec(crl.CRLAgent, crl.get_config, 'offline_gc'),
    'gciql': AgentSpec(gciql.GCIQLAgent, gciql.get_config, 'offline_gc'),
}


class UnknownAlgorithmError(ValueError):
    pass


def get_agent(name: str) -> AgentSpec:
    key = name.lower()
    if key not in AGENTS:
        close = difflib.get_close_matches(key, AGENTS, n=1)
        hint = f' Did you mean {close[0]!r}?' if close else ''
        raise UnknownAlgorithmError(f'unknown --algorithm {name!r}; available: {", ".join(sorted(AGENTS))}.{hint}')
    return AGENTS[key]
