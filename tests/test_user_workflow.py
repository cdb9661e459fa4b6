"""A researcher's own workflow as typed: their uint8 frames with discrete actions and no environment, the
algorithm name in capitals, a checkpoint directory of their own, then the goal-conditioning diagnostic on it;
and the bad inputs of that workflow."""

import json
import os

import numpy as np
import pytest

import test_goal_conditioning
import train
from impls.data.synthetic import pixel_driving
from impls.utils.checkpoints import Checkpointer
from tests.test_train import _error, args_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_PIXEL = ['--agent.encoder=impala_debug', '--agent.value_hidden_dims=16,16', '--agent.actor_hidden_dims=16,16',
              '--agent.latent_dim=8', '--agent.mrn_components=2', '--wandb_mode', 'disabled', '--no_progress']


@pytest.fixture
def driving_npz(tmp_path):
    path = tmp_path / 'train_data.npz'
    np.savez(path, **pixel_driving(episodes=6, length=20, size=16, seed=0))
    return str(path)


def test_pixel_driving_layout():
    data = pixel_driving(episodes=3, length=10, size=16, seed=0)
    assert data['observations'].shape == (30, 16, 16, 3) and data['observations'].dtype == np.uint8
    assert data['actions'].shape == (30,) and np.issubdtype(data['actions'].dtype, np.integer)
    assert set(np.unique(data['actions'])) <= set(range(5))
    assert np.flatnonzero(data['terminals']).tolist() == [9, 19, 29]
    assert np.array_equal(data['observations'], pixel_driving(episodes=3, length=10, size=16, seed=0)['observations'])


def test_the_typed_command_lines_train_and_feed_the_diagnostic(driving_npz, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    # As typed (shorter): no --env_name, no --agent.encoder, --algorithm in capitals, a checkpoint dir of its own.
    train.main(['--dataset_path', driving_npz, '--project', 'cmd_fixed', '--ckpt_dir', 'CKPT', '--ckpt_every', '4',
                '--frame_stack', '4', '--algorithm', 'CMD', '--chunk_size', '40', '--batch_size', '8', '--steps', '4',
                '--epochs', '3', '--block_size', '10', '--log_interval', '4', *TINY_PIXEL])
    out = capsys.readouterr().out
    assert 'evaluation is off' in out
    assert 'No validation data' in out and 'Health:' in out and 'Trained cmd to step 12 of 12' in out
    run_dir = tmp_path / 'runs' / 'cmd-train_data-s0'  # named after the data, not an environment
    record = json.loads((run_dir / 'config.json').read_text())
    assert record['algorithm'] == 'cmd' and record['env_name'] is None
    assert Checkpointer(tmp_path / 'CKPT').latest_step() == 12
    assert sorted(int(s) for s in Checkpointer(tmp_path / 'CKPT').manager.all_steps()) == [4, 8, 12]

    code = test_goal_conditioning.main(['--checkpoint', 'CKPT', '--algorithm', 'CMD', '--num_states', '16',
                                        '--num_alt_goals', '2'])
    report = capsys.readouterr().out
    assert code in (0, 1, 3) and 'Verdict:' in report and 'no environment recorded' in report

    # --resume with the run directory alone continues that run from its saved settings.
    train.main(['--save_dir', str(run_dir), '--resume', '--epochs', '4', '--no_progress'])
    assert Checkpointer(tmp_path / 'CKPT').latest_step() == 16
    assert 'Resumed' in capsys.readouterr().out


def test_explicit_no_encoder_on_pixels_is_refused(capsys, driving_npz, tmp_path):
    err = _error(capsys, ['--algorithm', 'crl', '--dataset_path', driving_npz, '--save_dir', str(tmp_path / 'r'),
                          '--agent.encoder=None', '--wandb_mode', 'disabled', '--no_progress'])
    assert '--agent.encoder=impala_small' in err and 'cmd_driving' in err


def test_resume_of_a_directory_without_a_run(capsys, tmp_path):
    err = _error(capsys, ['--save_dir', str(tmp_path / 'nothing'), '--resume'])
    assert 'config.json does not exist' in err


@pytest.mark.parametrize('flag, ours', [('--gamma=0.99', '--agent.discount'),
                                        ('--agent.gamma=0.99', '--agent.discount'),
                                        ('--agent.use_soft_target=true', '--agent.tau'),
                                        ('--agent.gradient_accumulation_steps=4', '--agent.grad_accum'),
                                        ('--agent.target_clamp_value=50', '--agent.target_clamp'),
                                        ('--agent.expert_ratio_min=0.1', '--expert_ratio_floor'),
                                        ('--agent.hard_target_refresh_every_steps=25000', '--agent.hard_update_every')])
def test_other_libraries_knob_names_point_to_ours(capsys, tmp_path, flag, ours):
    err = _error(capsys, ['--algorithm', 'dqn', '--env_name', 'CartPole-v1', '--save_dir', str(tmp_path / 'r'), flag,
                          '--wandb_mode', 'disabled', '--no_progress'])
    assert f'impls calls this setting {ours}' in err


def test_scalar_target_clamp_is_refused_before_training(capsys, tmp_path):
    err = _error(capsys, ['--algorithm', 'dqn', '--env_name', 'CartPole-v1', '--save_dir', str(tmp_path / 'r'),
                          '--agent.target_clamp=50.0', '--wandb_mode', 'disabled', '--no_progress'])
    assert 'expected a range LOW,HIGH' in err
    assert not (tmp_path / 'r' / 'checkpoints').exists()


def test_dqn_checkpoint_given_to_the_diagnostic(capsys, tmp_path):
    run = tmp_path / 'dqn'
    train.main(['--algorithm', 'dqn', '--env_name', 'CartPole-v1', '--save_dir', str(run), '--train_steps', '300',
                '--learning_starts=100', '--eval_episodes', '0', '--log_interval', '100', '--wandb_mode',
                'disabled', '--no_progress'])
    rows = (run / 'episodes.csv').read_text().splitlines()
    assert rows[0].split(',')[1:3] == ['charts/episodic_return', 'charts/episodic_length'] and len(rows) > 3
    capsys.readouterr()
    assert test_goal_conditioning.main(['--checkpoint', str(run)]) == 2
    err = capsys.readouterr().err
    assert 'not goal-conditioned' in err and 'dqn' in err


def test_one_dimensional_actions_for_a_two_dimensional_env(capsys, tmp_path):
    from tests.conftest import make_episodes

    data = make_episodes([30, 30], action_dim=1)  # observations (N, 2), as pointmaze's; actions (N, 1)
    np.savez(tmp_path / 'd.npz', **data)
    err = _error(capsys, ['--algorithm', 'crl', '--dataset_path', str(tmp_path / 'd.npz'), '--env_name',
                          'pointmaze-medium-navigate-v0', '--save_dir', str(tmp_path / 'r'), '--wandb_mode', 'disabled',
                          '--no_progress'])
    assert 'takes actions of shape (2,)' in err and 'shape (1,)' in err


def test_corrupt_latest_checkpoint_names_its_predecessor(capsys, npz_dataset, tmp_path):
    run = tmp_path / 'run'
    train.main(args_for(npz_dataset, run, '--train_steps', '20', '--ckpt_every', '10'))
    for root, _, files in os.walk(run / 'checkpoints' / '20' / 'state'):
        for name in files:
            with open(os.path.join(root, name), 'wb') as f:
                f.write(b'garbage')
    err = _error(capsys, args_for(npz_dataset, run, '--train_steps', '30', '--resume'))
    assert 'cannot restore checkpoint' in err and 'Earlier checkpoints here: steps 10' in err
    assert len(err) < 1200 and 'driver' not in err


def test_default_checkpoints_leave_predecessors(npz_dataset, tmp_path):
    train.main(args_for(npz_dataset, tmp_path / 'run', '--train_steps', '50'))
    steps = sorted(int(s) for s in Checkpointer(tmp_path / 'run' / 'checkpoints').manager.all_steps())
    assert steps == [30, 40, 50]


def test_val_fraction_holds_out_episodes_of_a_single_file(capsys, npz_dataset, tmp_path):
    import csv

    from tests.conftest import make_episodes

    np.savez(tmp_path / 'single.npz', **make_episodes([10, 12, 9, 11, 10]))
    run = tmp_path / 'run'
    train.main(args_for(str(tmp_path / 'single.npz'), run, '--train_steps', '10', '--val_fraction', '0.2'))
    assert 'held out of training' in capsys.readouterr().out
    with open(run / 'train.csv') as f:
        assert 'validation/actor/loss' in next(csv.DictReader(f))
    err = _error(capsys, args_for(npz_dataset, tmp_path / 'r2', '--val_fraction', '0.2'))  # a -val file exists
    assert 'pass one of the two' in err
