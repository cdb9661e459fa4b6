"""The layering of docs/ARCHITECTURE.md, enforced: every import in the package (lazy ones inside functions too) is
parsed and checked against the parts' rules; and every registered agent keeps the agent contract.

    python tests/test_architecture.py [TREE]   # a tree's forbidden import edges and lines per part
"""

from __future__ import annotations

import ast
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# part -> the parts it may import. A part is impls.<package>; an agent module is 'agent', the registry
# (impls/agents/__init__.py) 'registry'; the CLIs (train.py, test_goal_conditioning.py) 'cli'.
ALLOWED = {
    'utils': {'utils'},
    'data': {'data', 'utils'},
    'envs': {'envs', 'data', 'utils'},
    'health': {'health', 'utils'},
    'agent': {'utils', 'data', 'agent'},  # an agent's own sibling modules only (below)
    'registry': {'registry', 'agent'},
    'runs': {'runs', 'registry', 'data', 'envs', 'health', 'utils'},
    'cli': {'runs', 'registry', 'data', 'envs', 'health', 'utils'},
}


def part_of_file(path: str, root: str = ROOT) -> str | None:
    rel = os.path.relpath(path, root).replace(os.sep, '/')
    if rel in ('train.py', 'test_goal_conditioning.py'):
        return 'cli'
    if rel == 'impls/agents/__init__.py':
        return 'registry'
    parts = rel.split('/')
    if parts[0] != 'impls' or len(parts) < 3:
        return None
    return 'agent' if parts[1] == 'agents' else parts[1]


def part_of_module(name: str) -> str | None:
    parts = name.split('.')
    if parts[0] != 'impls' or len(parts) < 2:
        return None
    if parts[1] == 'agents':
        return 'registry' if len(parts) == 2 else 'agent'
    return parts[1]


def imports(path: str, root: str = ROOT):
    """(imported module, names, line) for every import statement of a file; `from impls.agents import crl`
    counts as importing impls.agents.crl."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [a.name for a in node.names]
            if node.module == 'impls.agents':
                modules = [n for n in names if os.path.exists(os.path.join(root, 'impls', 'agents', f'{n}.py'))]
                for n in modules:
                    yield f'impls.agents.{n}', [], node.lineno
                if len(modules) < len(names):
                    yield node.module, [n for n in names if n not in modules], node.lineno
            else:
                yield node.module, names, node.lineno


def python_files(root: str):
    for base, dirs, files in os.walk(os.path.join(root, 'impls')):
        dirs[:] = [d for d in dirs if d != '__pycache__']
        yield from (os.path.join(base, f) for f in sorted(files) if f.endswith('.py'))
    yield from (os.path.join(root, f) for f in ('train.py', 'test_goal_conditioning.py'))


def _own_sibling(path: str, module: str) -> bool:
    """An agent may import the sibling modules it owns: impls/agents/dreamer.py -> impls.agents.dreamer_rssm."""
    owner = os.path.splitext(os.path.basename(path))[0]
    return module.split('.')[-1].startswith(owner + '_')


def forbidden_edges(root: str = ROOT):
    """['file:line imports module (part -> part)'] for every import the rules forbid, plus private names imported
    across modules and agents importing one another."""
    bad = []
    for path in python_files(root):
        src = part_of_file(path, root)
        if src is None or not os.path.exists(path):
            continue
        this = os.path.relpath(path, root)
        for module, names, line in imports(path, root):
            dst = part_of_module(module)
            if dst is None:
                continue
            where = f'{this}:{line} imports {module}'
            if dst not in ALLOWED[src]:
                bad.append(f'{where} ({src} -> {dst})')
            elif src == 'agent' and dst == 'agent' and not _own_sibling(this, module):
                bad.append(f'{where} (an agent importing another agent)')
            private = [n for n in names if n.startswith('_') and n != '__version__']
            if private:
                bad.append(f'{where} (private names {", ".join(private)})')
    return bad


def lines_per_part(root: str = ROOT) -> dict:
    counts = {}
    for path in python_files(root):
        if not os.path.exists(path):
            continue
        rel = os.path.relpath(path, root)
        with open(path) as f:
            n = sum(1 for _ in f)
        key = rel if rel.count('/') < 2 else '/'.join(rel.split('/')[:2])
        counts[key] = counts.get(key, 0) + n
    return counts


def test_no_forbidden_imports():
    assert forbidden_edges() == []


def test_the_checker_sees_a_forbidden_edge(tmp_path):
    (tmp_path / 'impls' / 'utils').mkdir(parents=True)
    (tmp_path / 'impls' / 'utils' / 'bad.py').write_text('def f():\n    from impls.runs.session import RunSession\n')
    (tmp_path / 'impls' / 'data').mkdir()
    (tmp_path / 'impls' / 'data' / 'bad.py').write_text('from impls.utils.x import _hidden\n')
    (tmp_path / 'impls' / 'agents').mkdir()
    (tmp_path / 'impls' / 'agents' / 'dreamer.py').write_text('from impls.agents.dreamer_rssm import RSSM\n')
    (tmp_path / 'impls' / 'agents' / 'gcsl.py').write_text('from impls.agents.dreamer_rssm import RSSM\n')
    bad = forbidden_edges(str(tmp_path))
    assert any('utils -> runs' in b for b in bad) and any('private names _hidden' in b for b in bad)
    assert [b for b in bad if 'another agent' in b] == [
        'impls/agents/gcsl.py:1 imports impls.agents.dreamer_rssm (an agent importing another agent)']


@pytest.mark.parametrize('name', ['crl', 'gciql', 'cmd', 'dqn', 'dreamer', 'gcsl', 'gcsl_transformer', 'ad', 'cad'])
def test_every_agent_keeps_the_contract(name):
    """create(seed, example_batch, config); update(batch) -> (agent, info); initial_carry; act(carry, obs, goals,
    key, mode) -> (actions, carry) in 'eval' and 'explore' modes."""
    import jax

    from impls.agents import get_agent
    from tests.conftest import tiny_config

    spec = get_agent(name)
    config = tiny_config(spec, **({'mrn_components': 2} if name == 'cmd' else {}))
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(8, 3)).astype(np.float32)
    with config.unlocked():
        config.action_dim = 2
        config.batch_size = 8
    if name == 'dreamer':
        with config.unlocked():
            config.update(dict(deter=16, hidden=8, units=8, stoch=2, classes=2, sequence_length=3, imag_horizon=2,
                               bins=15, mlp_layers=1, ac_layers=1))
        actions = rng.integers(0, 2, (8, 3)).astype(np.int32)
        agent = spec.agent_cls.create(0, dict(observations=obs[:1], actions=actions[:1, 0]), config)
        seq = np.repeat(obs[:, None], 3, 1)
        batch = dict(observations=seq, next_observations=seq, actions=actions, rewards=np.ones((8, 3), np.float32),
                     terminated=np.zeros((8, 3), bool), is_first=np.zeros((8, 3), bool))
        goals, shape = None, (8,)
    elif spec.kind == 'online_goal':
        agent = spec.agent_cls.create(0, dict(observations=obs[:1], goals=obs[:1, :2]), config)
        batch = dict(observations=obs, goals=obs[::-1, :2], actions=rng.integers(0, 2, 8).astype(np.int32))
        if 'context' in config:  # windows of states ending at s_t
            with config.unlocked():
                config.update(dict(context=2, dim=8, heads=2, layers=1))
            agent = spec.agent_cls.create(0, dict(observations=obs[:1], goals=obs[:1, :2]), config)
            batch.update(observations=np.repeat(obs[:, None], 2, 1), valid=np.ones((8, 2), bool))
        goals, shape = obs[::-1, :2], (8,)
    elif spec.kind == 'in_context':  # windows of learning histories; acting feeds the context through record()
        with config.unlocked():
            config.update(dict(num_observations=3, horizon=2, tf_n_embd=8, tf_n_head=2, tf_n_layer=1))
            config.update(dict(seq_len=4) if name == 'ad' else dict(
                n_latent=2, encoder_n_layer=1, max_compression_depth=1, min_compress_length=1, max_compress_length=2,
                min_uncompressed_length=1, max_uncompressed_length=3, eval_compress_length=2))
        L = spec.agent_cls.replay(config)['length']
        ints = lambda top: rng.integers(0, top, (8, L)).astype(np.int32)
        batch = dict(observations=ints(3), actions=ints(2), rewards=np.ones((8, L), np.float32),
                     prev_actions=ints(3), prev_rewards=np.zeros((8, L), np.float32))
        agent = spec.agent_cls.create(0, {k: v[:1] for k, v in batch.items()}, config)
        obs, goals, shape = obs.argmax(-1).astype(np.int32), None, (8,)
    elif spec.kind == 'online':
        agent = spec.agent_cls.create(0, dict(observations=obs[:1]), config)
        batch = dict(observations=obs, actions=rng.integers(0, 2, 8).astype(np.int32),
                     returns=np.ones(8, np.float32), bootstrap_discounts=np.full(8, 0.9, np.float32),
                     next_observations=obs, weights=np.ones(8, np.float32))
        goals, shape = None, (8,)
    else:
        actions = rng.uniform(-1, 1, (8, 2)).astype(np.float32)
        agent = spec.agent_cls.create(0, dict(observations=obs[:2], actions=actions[:2]), config)
        batch = dict(observations=obs, actions=actions, next_observations=obs, value_goals=obs[::-1],
                     actor_goals=obs[::-1], rewards=np.zeros(8, np.float32), masks=np.ones(8, np.float32))
        goals, shape = obs[::-1], (8, 2)
    new, info = agent.update(batch)
    assert jax.tree.structure(new) == jax.tree.structure(agent) and any(k.endswith('/loss') for k in info)
    carry = agent.initial_carry(8)
    for mode in ('eval', 'explore'):
        actions, carry = jax.jit(lambda c, o, g, k, m=mode: agent.act(c, o, g, k, m))(carry, obs, goals,
                                                                                     jax.random.PRNGKey(1))
        assert actions.shape == shape
        if spec.kind == 'in_context':
            carry = agent.record(carry, actions, np.ones(8, np.float32))


if __name__ == '__main__':
    tree = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else ROOT
    edges = forbidden_edges(tree)
    print(f'{len(edges)} forbidden import edge(s) in {tree}')
    for edge in edges:
        print('  ' + edge)
    for key, n in sorted(lines_per_part(tree).items()):
        print(f'{n:6d}  {key}')
