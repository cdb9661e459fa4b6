"""The compiled online loop (--env_backend jax): the device replay's n-step targets equal the host's,
learning, the dashboard, determinism, exact resume, and what it refuses."""

import csv

import jax.numpy as jnp
import numpy as np
import pytest

import train
from impls.data.episodes import FIELDS, EpisodeStore, n_step_batch
from impls.utils.checkpoints import Checkpointer
from tests.conftest import assert_same_checkpoint, rewind_online_run

FAST = ['--learning_starts=500', '--training_steps_per_sample=0.5', '--agent.hidden_dims=64',
        '--agent.epsilon_fraction=0.3', '--agent.lr=1e-3', '--agent.batch_size=64', '--buffer_size=4000',
        '--agent.hard_update_every=25']


def compiled(save_dir, *extra):
    return ['--algorithm', 'dqn', '--env_name', 'CartPole-v1', '--env_backend', 'jax', '--save_dir', str(save_dir),
            '--wandb_mode', 'disabled', '--no_progress', '--log_interval', '500', '--eval_episodes', '0',
            '--num_envs', '2', *FAST, *extra]


def test_device_n_step_targets_equal_the_host_replay():
    rng = np.random.default_rng(0)
    buffer = EpisodeStore(60, 3, dict(observations=np.zeros(2, np.float32), actions=np.int32(0)), n_step=3,
                          discount=0.9)
    for _ in range(25):  # wraps around the 20 rows per env
        done = rng.random(3) < 0.2
        buffer.add(dict(observations=rng.normal(size=(3, 2)), actions=rng.integers(0, 2, 3), rewards=rng.normal(size=3),
                        next_observations=rng.normal(size=(3, 2)), terminated=done & (rng.random(3) < 0.5), done=done))
    rows, envs = rng.integers(0, 20, 50), rng.integers(0, 3, 50)
    host = n_step_batch(buffer.data, rows, envs, 3, 0.9, 20, np)
    device = n_step_batch({k: jnp.asarray(buffer.data[k]) for k in FIELDS}, jnp.asarray(rows), jnp.asarray(envs), 3,
                          0.9, 20, jnp)
    assert set(host) == set(device)
    for k in host:
        np.testing.assert_allclose(device[k], host[k], rtol=1e-6, err_msg=k)
    assert (host['bootstrap_discounts'] == 0).any() and (host['bootstrap_discounts'] == np.float32(0.9**3)).any()


def test_compiled_loop_learns_cartpole_and_logs_the_dashboard(tmp_path):
    out = train.main(compiled(tmp_path / 'run', '--train_steps', '6000', '--eval_episodes', '5',
                              '--training_steps_per_sample=1', '--agent.n_step=3'))
    assert out['eval_return'] > 75  # on gymnasium's own CartPole-v1; random scores ~22 (seeds 0-3 here: 500, 455, 500, 104)
    with open(tmp_path / 'run' / 'train.csv') as f:
        rows = list(csv.DictReader(f))
    assert [int(r['step']) for r in rows] == list(range(500, 6001, 500))
    last = rows[-1]
    for key in ('training/critic/q_min', 'training/critic/q_max', 'training/critic/q_mean', 'training/critic/target_max', 'training/grad/norm',
                'training/grad/clipped_fraction', 'training/critic/target_lag', 'charts/replay_ratio', 'charts/reward_slope',
                'charts/epsilon', 'charts/agent_return', 'time/steps_per_second', 'health/value_divergence'):
        assert key in last, key
    assert float(last['charts/replay_ratio']) == pytest.approx(64.0)  # 1 update of 64 per environment step
    assert float(last['training/critic/q_min']) <= float(last['training/critic/q_mean']) <= float(last['training/critic/q_max'])
    assert float(last['charts/buffer_size']) == 4000
    assert float(rows[0]['charts/epsilon']) > float(last['charts/epsilon']) == pytest.approx(0.05)


def test_compiled_loop_is_deterministic_and_resumes_exactly(tmp_path):
    steps = ['--train_steps', '2000', '--ckpt_every', '1000']
    train.main(compiled(tmp_path / 'full', *steps))
    train.main(compiled(tmp_path / 'again', *steps))
    rewind_online_run(tmp_path / 'full', tmp_path / 'half', 2000)
    train.main(compiled(tmp_path / 'half', *steps, '--resume'))
    for other in ('again', 'half'):
        assert_same_checkpoint(tmp_path / 'full' / 'checkpoints', tmp_path / other / 'checkpoints', 2000)


@pytest.mark.parametrize('extra, message', [
    (['--agent.prioritized=True'], '--agent.prioritized'),
    (['--expert', 'cartpole'], '--expert'),
    (['--env_name', 'Acrobot-v1'], "no jax version of environment 'Acrobot-v1'"),
    (['--buffer_size=6', '--agent.batch_size=2', '--agent.n_step=3'], 'too few steps per env'),
])
def test_compiled_loop_refuses_what_it_cannot_run(capsys, tmp_path, extra, message):
    with pytest.raises(SystemExit):
        train.main(compiled(tmp_path / 'run', '--train_steps', '100', *extra))
    assert message in capsys.readouterr().err


def test_compiled_loop_nan_stops_the_run_with_the_step_and_keeps_the_checkpoint(capsys, tmp_path):
    argv = compiled(tmp_path / 'r', '--train_steps', '3000', '--ckpt_every', '250', '--agent.lr=1e30',
                    '--agent.max_grad_norm=0', '--learning_starts=600')
    with pytest.raises(SystemExit):
        train.main(argv)
    err = capsys.readouterr().err
    # The parameters are NaN by the checkpoint at 750, before the log row at 1000 sees it: that checkpoint is refused.
    assert 'parameters are non-finite at environment step 750' in err and '(step 500) is intact' in err
    assert Checkpointer(tmp_path / 'r' / 'checkpoints').latest_step() == 500
