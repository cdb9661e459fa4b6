"""test_goal_conditioning.py on synthetic data where the right answer is known.

impls.data.synthetic.line_world: in the 'directional' data the action is a function of where the
future goal lies; in the goal-independent data it depends on the state alone, and an agent whose BC
weight dominates only imitates: it must be flagged as ignoring its goal.
"""

import json

import numpy as np
import pytest

import test_goal_conditioning as tgc
import train
from impls.data import synthetic


def line_world(path, directional, episodes=200):
    np.savez(path, **synthetic.line_world(directional, episodes))
    return str(path)


def train_run(tmp_path, name, dataset, alpha, algorithm='crl', steps=400):
    run = tmp_path / name
    argv = ['--algorithm', algorithm, '--dataset_path', dataset, '--save_dir', str(run), '--train_steps', str(steps),
            '--batch_size', '64', '--eval_episodes', '0', '--wandb_mode', 'disabled', '--no_progress',
            '--log_interval', str(steps), '--agent.value_hidden_dims=32,32', '--agent.actor_hidden_dims=32,32',
            f'--agent.alpha={alpha}', '--agent.lr=1e-3']
    if algorithm in ('crl', 'cmd'):
        argv.append('--agent.latent_dim=16')
    if algorithm == 'cmd':
        argv.append('--agent.mrn_components=4')
    train.main(argv)
    return str(run)


def probe(run, algorithm, tmp_path, *extra):
    out = tmp_path / f'{algorithm}.json'
    code = tgc.main(['--checkpoint', run, '--algorithm', algorithm, '--env_name', 'none', '--num_states', '256',
                     '--json', str(out), *extra])
    return code, json.loads(out.read_text()) if out.exists() else None


def test_bc_dominated_agent_on_goal_independent_data_is_flagged(tmp_path, capsys):
    data = line_world(tmp_path / 'independent.npz', directional=False)
    run = train_run(tmp_path, 'bc', data, alpha=100.0, steps=2000)
    code, report = probe(run, 'crl', tmp_path)
    assert report['verdict'] == 'ignores the goal' and code == 3
    assert report['action_sensitivity'] < 0.05
    assert 'IGNORES THE GOAL' in capsys.readouterr().out


@pytest.mark.parametrize('algorithm', ['crl', 'cmd'])
def test_agent_on_directional_data_uses_its_goal(tmp_path, algorithm):
    data = line_world(tmp_path / 'directional.npz', directional=True)
    run = train_run(tmp_path, algorithm, data, alpha=0.1, algorithm=algorithm)
    code, report = probe(run, algorithm, tmp_path)
    assert report['verdict'] == 'uses the goal' and code == 0, report
    assert report['value_auc'] > 0.6  # the critic ranks the true future goal above random goals


def test_checkpoint_without_its_config(tmp_path, capsys):
    data = line_world(tmp_path / 'independent.npz', directional=False, episodes=20)
    run = train_run(tmp_path, 'r', data, alpha=1.0)
    (tmp_path / 'r' / 'checkpoints' / 'config.json').unlink()
    code, _ = probe(run, 'crl', tmp_path)
    assert code == 2 and 'has no config.json beside its checkpoints' in capsys.readouterr().err


def test_wrong_algorithm_and_mismatched_dataset(tmp_path, capsys):
    data = line_world(tmp_path / 'independent.npz', directional=False, episodes=20)
    run = train_run(tmp_path, 'r', data, alpha=1.0)
    code, _ = probe(run, 'gciql', tmp_path)
    assert code == 2 and "trained with 'crl'" in capsys.readouterr().err
    other = tmp_path / 'other.npz'
    np.savez(other, observations=np.zeros((10, 3), np.float32), actions=np.zeros((10, 1), np.float32),
             terminals=np.arange(10) % 5 == 4)
    code, _ = probe(run, 'crl', tmp_path, '--dataset_path', str(other))
    assert code == 2 and 'observations of shape (3,)' in capsys.readouterr().err


def test_success_with_true_and_shuffled_goals_on_an_env(tmp_path):
    # The line world's observations are 2-D like pointmaze's, so the agent can be rolled out there.
    data = line_world(tmp_path / 'directional.npz', directional=True, episodes=20)
    run = train_run(tmp_path, 'r', data, alpha=0.1, steps=50)
    code, report = probe(run, 'crl', tmp_path, '--env_name', 'pointmaze-medium-navigate-v0', '--eval_episodes', '1')
    assert 0.0 <= report['success_true_goals'] <= 1.0 and 0.0 <= report['success_shuffled_goals'] <= 1.0
    assert report['env_name'] == 'pointmaze-medium-navigate-v0'
