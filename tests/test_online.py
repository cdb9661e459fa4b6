"""The online loop through train.py: learning on a tiny env, exact resume, the expert curriculum, bad input."""

import csv

import numpy as np
import pytest

import train
from impls.utils.checkpoints import Checkpointer
from tests.conftest import assert_same_checkpoint, rewind_online_run

CORRIDOR = 'tests.fixtures.custom_envs:Corridor'
PIXELS = 'tests.fixtures.custom_envs:PixelCorridor'
FAST = ['--learning_starts=200', '--training_steps_per_sample=0.5', '--agent.hidden_dims=32',
        '--agent.epsilon_fraction=0.3', '--agent.lr=1e-3', '--agent.batch_size=32', '--buffer_size=2000',
        '--agent.hard_update_every=20']


def online(save_dir, *extra, entry=CORRIDOR):
    return ['--algorithm', 'dqn', '--env_entry_point', entry, '--env_name', '', '--save_dir', str(save_dir),
            '--wandb_mode', 'disabled', '--no_progress', '--log_interval', '500', '--eval_episodes', '4', '--num_envs',
            '2', *FAST, *extra]


def test_dqn_learns_a_corridor_and_logs_the_dashboard(tmp_path):
    out = train.main(online(tmp_path / 'run', '--train_steps', '3000'))
    assert out['eval_return'] == 1.0  # walks right every time
    with open(tmp_path / 'run' / 'train.csv') as f:
        row = list(csv.DictReader(f))[-1]
    for key in ('training/critic/q_min', 'training/critic/q_max', 'training/critic/q_mean', 'training/critic/target_min', 'training/critic/target_max',
                'training/grad/norm', 'training/grad/norm_clipped', 'training/grad/clipped_fraction',
                'training/critic/target_lag', 'charts/replay_ratio', 'charts/reward_slope', 'charts/expert_ratio',
                'time/steps_per_second', 'health/value_divergence'):
        assert key in row, key
    assert float(row['charts/replay_ratio']) == pytest.approx(0.5 * 32, rel=0.05)
    assert (tmp_path / 'run' / 'health.json').exists()


def test_resume_continues_exactly(tmp_path):
    steps = ['--train_steps', '2000', '--ckpt_every', '1000']
    train.main(online(tmp_path / 'full', *steps))
    # The same run, stopped after its step-1000 checkpoint: drop the later one and resume.
    rewind_online_run(tmp_path / 'full', tmp_path / 'half', 2000)
    train.main(online(tmp_path / 'half', *steps, '--resume'))
    assert_same_checkpoint(tmp_path / 'full' / 'checkpoints', tmp_path / 'half' / 'checkpoints', 2000)


def test_expert_curriculum_logs_agent_and_expert_returns(tmp_path):
    train.main(['--algorithm', 'dqn', '--env_name', 'CartPole-v1', '--expert', 'cartpole', '--train_steps', '2000',
                '--save_dir', str(tmp_path / 'run'), '--wandb_mode', 'disabled', '--no_progress', '--log_interval', '1000',
                '--eval_episodes', '0', '--expert_ratio_start=0.9', '--expert_ratio_floor=0.1',
                '--learning_starts=500', '--agent.hidden_dims=16'])
    with open(tmp_path / 'run' / 'train.csv') as f:
        rows = list(csv.DictReader(f))
    assert float(rows[-1]['charts/expert_return']) == 500.0  # the built-in controller balances
    assert float(rows[0]['charts/expert_ratio']) > float(rows[-1]['charts/expert_ratio'])


def test_trained_checkpoint_drives_as_expert(tmp_path):
    train.main(online(tmp_path / 'teacher', '--train_steps', '3000'))
    out = train.main(online(tmp_path / 'student', '--train_steps', '600', '--expert', str(tmp_path / 'teacher'),
                            '--expert_ratio_start=1.0', '--expert_ratio_floor=1.0', '--eval_episodes', '0'))
    assert out['last10_return'] is None  # every episode was the expert's
    with open(tmp_path / 'student' / 'train.csv') as f:
        rows = list(csv.DictReader(f))
    assert float(rows[-1]['charts/expert_return']) == 1.0  # the trained teacher walks right


def test_nature_cnn_trains_on_pixels(tmp_path):
    out = train.main(online(tmp_path / 'run', '--train_steps', '400', '--agent.torso=nature_cnn', entry=PIXELS))
    assert out['agent'].params['NatureCNN_0']['Conv_0']['kernel'].shape == (8, 8, 2, 32)
    assert np.isfinite(out['eval_return'])


def test_linear_lr_decay_reaches_lr_end(tmp_path):
    train.main(online(tmp_path / 'run', '--train_steps', '1200', '--agent.lr_end=0.0', '--eval_episodes', '0',
                      '--log_interval', '200'))
    with open(tmp_path / 'run' / 'train.csv') as f:
        lrs = [float(r['training/optim/lr']) for r in csv.DictReader(f) if r.get('training/optim/lr')]
    assert lrs[0] == pytest.approx(1e-3, rel=0.2) and lrs[-1] < 1e-4
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def _error(capsys, argv):
    with pytest.raises(SystemExit) as e:
        train.main(argv)
    assert e.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize('argv_change, message', [
    (dict(env_name='CartPoel-v1', entry=None), "environment id 'CartPoel-v1' does not exist"),
    (dict(entry='no_such_module:Env'), "cannot import 'no_such_module'"),
    (dict(entry='tests.fixtures.custom_envs:NotAnEnv'), 'not a gymnasium.Env'),
    (dict(entry='tests.fixtures.custom_envs:Continuous'), 'needs a discrete action space'),
    (dict(entry='tests.fixtures.custom_envs:PixelCorridor'), '--agent.torso=nature_cnn'),
])
def test_bad_environments(capsys, tmp_path, argv_change, message):
    entry = argv_change.get('entry', CORRIDOR)
    argv = online(tmp_path / 'r', '--train_steps', '100', entry=entry)
    if entry is None:
        i = argv.index('--env_entry_point')
        del argv[i : i + 2]
        argv[argv.index('--env_name') + 1] = argv_change['env_name']
    assert message in _error(capsys, argv)


def test_expert_with_invalid_actions(capsys, tmp_path):
    argv = online(tmp_path / 'r', '--train_steps', '100', '--expert', 'tests.fixtures.custom_envs:bad_expert',
                  '--expert_ratio_start=1.0')
    assert 'expected 2 integer actions in [0, 2)' in _error(capsys, argv)


def test_batch_larger_than_the_buffer(capsys, tmp_path):
    argv = online(tmp_path / 'r', '--train_steps', '100', '--batch_size', '5000')
    assert 'larger than the replay buffer' in _error(capsys, argv)


def test_nan_stops_the_run_with_the_step_and_keeps_the_checkpoint(capsys, tmp_path):
    argv = online(tmp_path / 'r', '--train_steps', '3000', '--ckpt_every', '250', '--agent.lr=1e30',
                  '--agent.max_grad_norm=0', '--learning_starts=600')
    err = _error(capsys, argv)
    # The parameters are NaN by the checkpoint at 750, before the log row at 1000 sees it: that checkpoint is refused.
    assert 'parameters are non-finite at environment step 750' in err and '(step 500) is intact' in err
    assert Checkpointer(tmp_path / 'r' / 'checkpoints').latest_step() == 500


def test_nan_names_the_terms_of_the_first_bad_update(capsys, tmp_path):
    argv = online(tmp_path / 'r', '--train_steps', '3000', '--ckpt_every', '500', '--log_interval', '100',
                  '--agent.lr=1e30', '--agent.max_grad_norm=0', '--learning_starts=400')
    err = _error(capsys, argv)
    # Every metric is NaN a few updates in; the message names what was NaN in the first update that had any.
    assert 'non-finite ' in err and ' in update ' in err and 'of the interval ending at environment step' in err
    assert 'critic/target_lag in update 1 of the interval' in err and 'No checkpoint had been written' in err


@pytest.mark.parametrize('replay_kind', ['sequences', 'pairs'])
def test_the_online_loop_runs_an_agent_that_is_not_dqn(tmp_path, monkeypatch, replay_kind):
    """Continuous actions, a carried state, sequence or pair replay: the loop reads only the agent contract."""
    import impls.agents
    from tests.fixtures import toy_agent

    monkeypatch.setitem(impls.agents.AGENTS, 'toy', impls.agents.AgentSpec('toy', toy_agent.ToyAgent,
                                                                           toy_agent.get_config, 'online'))
    out = train.main(['--algorithm', 'toy', '--env_entry_point', 'tests.fixtures.custom_envs:Continuous',
                      '--train_steps', '300', '--learning_starts', '50', '--training_steps_per_sample', '0.5',
                      '--buffer_size', '200', '--num_envs', '2', '--log_interval', '100', '--eval_episodes', '2',
                      f'--agent.replay_kind={replay_kind}', '--save_dir', str(tmp_path / 'toy'), '--wandb_mode',
                      'disabled', '--no_progress'])
    with open(tmp_path / 'toy' / 'train.csv') as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and all(float(r['training/critic/loss']) >= 0 for r in rows)
    value = float(rows[-1]['training/batch/first_or_horizon'])
    assert (0 < value < 1) if replay_kind == 'sequences' else value >= 1  # episode starts inside windows; horizons
    assert out['eval_return'] is not None and int(out['agent'].weights.shape[1]) == 1
