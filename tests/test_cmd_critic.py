"""CMD's critic leaves the constant, goal-blind solution, and the monitor names a critic that does not."""

import numpy as np

from impls.agents import get_agent
from impls.data.loader import UniformIndices, make_batch
from impls.data.datasets import Dataset
from impls.data.sampler import GoalSampler
from impls.data.synthetic import line_world
from impls.utils.config import apply_overrides
from impls.health import HealthMonitor
from tests.conftest import tiny_config


def _agent_and_batch(**overrides):
    data = line_world(directional=True, episodes=40, length=30)
    ds = Dataset(data, np.flatnonzero(data['terminals']), regular=False)
    spec = get_agent('cmd')
    config = tiny_config(spec, batch_size=32, latent_dim=32, mrn_components=2)
    apply_overrides(config, overrides)
    batch = make_batch(GoalSampler(ds, config), UniformIndices(ds, 32), 0, 0)
    with config.unlocked():
        config.action_dim = 1
    agent = spec.agent_cls.create(0, batch, config)
    return agent, batch


def test_logit_bias_starts_at_the_base_rate():
    agent, _ = _agent_and_batch()
    assert np.isclose(float(agent.network.params['modules_logit_bias']['bias']), -np.log(31))
    agent, _ = _agent_and_batch(logit_bias=False)
    assert 'modules_logit_bias' not in agent.network.params


def test_critic_leaves_chance_on_a_fixed_batch():
    agent, batch = _agent_and_batch()
    _, first = agent.total_loss(batch, agent.network.params)
    for _ in range(150):
        agent, info = agent.update(batch)
    assert float(info['critic/loss']) < 0.95 * float(first['critic/loss'])
    assert float(info['critic/categorical_accuracy']) > 4 / 32  # chance is 1/32


def test_monitor_names_a_critic_at_chance():
    def run(accuracies):
        monitor = HealthMonitor(dict(batch_size=64), printer=lambda text: None)
        for i, acc in enumerate(accuracies):
            monitor.observe(1000 * (i + 1), {'training/critic/categorical_accuracy': acc,
                                            'training/critic/logits_pos': -4.14, 'training/critic/logits_neg': -4.14})
        return [a for a in monitor.alarms if a.detector == 'critic_at_chance']

    stuck = run([1 / 64] * 4)
    assert len(stuck) == 1 and stuck[0].step == 2000 and '1.0x chance (1/64)' in stuck[0].message
    assert run([1 / 64, 0.1, 0.2, 0.3]) == []  # left chance after the first log
