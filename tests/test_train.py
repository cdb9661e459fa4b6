"""train.py end to end on a tiny dataset: logging, checkpoints, exact resume after a kill, bad input."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import train
from impls.utils.checkpoints import Checkpointer
from tests.conftest import restored_leaves

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ['--agent.value_hidden_dims=16,16', '--agent.actor_hidden_dims=16,16', '--batch_size=8']


def args_for(npz, save_dir, *extra, algorithm='crl'):
    tiny = TINY + (['--agent.latent_dim=8'] if algorithm == 'crl' else [])
    return ['--algorithm', algorithm, '--dataset_path', npz, '--save_dir', str(save_dir), '--eval_episodes', '0',
            '--wandb_mode', 'disabled', '--no_progress', '--log_interval', '10', *tiny, *extra]


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize('algorithm', ['crl', 'gciql'])
def test_short_run_logs_and_checkpoints(npz_dataset, tmp_path, algorithm):
    run = tmp_path / 'run'
    out = train.main(args_for(npz_dataset, run, '--train_steps', '30', '--ckpt_every', '20', algorithm=algorithm))
    rows = read_csv(run / 'train.csv')
    assert [r['step'] for r in rows] == ['10', '20', '30']
    for key in ('training/actor/q_mean', 'training/actor/bc_loss', 'training/actor/q_loss', 'training/actor/mse',
                'validation/actor/loss', 'training/epoch', 'time/steps_per_second', 'training/grad/norm'):
        assert key in rows[0], key
    assert Checkpointer(run / 'checkpoints').latest_step() == 30
    config = json.loads((run / 'config.json').read_text())
    assert config['algorithm'] == algorithm and config['agent']['batch_size'] == 8
    assert int(out['agent'].network.step) == 31  # TrainState counts from 1


def test_kill_and_resume_is_exact(npz_dataset, tmp_path):
    steps = ['--train_steps', '3000', '--ckpt_every', '100', '--log_interval', '100']
    full, cut = tmp_path / 'full', tmp_path / 'cut'
    train.main(args_for(npz_dataset, full, *steps))
    cmd = [sys.executable, os.path.join(ROOT, 'train.py'), *args_for(npz_dataset, cut, *steps)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if os.path.isdir(cut / 'checkpoints') and Checkpointer(cut / 'checkpoints').latest_step():
            break
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = Checkpointer(cut / 'checkpoints').latest_step()
    assert killed_at is not None and killed_at < 3000, 'the run finished before it could be killed'
    # Without --resume an existing run is refused, not overwritten.
    with pytest.raises(SystemExit):
        train.main(args_for(npz_dataset, cut, *steps))
    train.main(args_for(npz_dataset, cut, *steps, '--resume'))
    a, b = Checkpointer(full / 'checkpoints'), Checkpointer(cut / 'checkpoints')
    assert a.latest_step() == b.latest_step() == 3000
    leaves_a, leaves_b = restored_leaves(full / 'checkpoints', 3000), restored_leaves(cut / 'checkpoints', 3000)
    assert len(leaves_a) == len(leaves_b) > 0
    for x, y in zip(leaves_a, leaves_b):
        np.testing.assert_array_equal(x, y)
    ra, rb = read_csv(full / 'train.csv'), read_csv(cut / 'train.csv')
    assert [r['step'] for r in ra] == [r['step'] for r in rb]
    timing = lambda k: k.startswith('time/') or k == 'health/data_wait'  # noqa: E731  (wall-clock measures)
    for x, y in zip(ra, rb):
        assert {k: v for k, v in x.items() if not timing(k)} == {k: v for k, v in y.items() if not timing(k)}


def test_incomplete_checkpoint_write_is_ignored(npz_dataset, tmp_path):
    run = tmp_path / 'run'
    train.main(args_for(npz_dataset, run, '--train_steps', '20', '--ckpt_every', '10'))
    # What a kill in the middle of writing step 30 leaves behind: orbax's temporary directory.
    partial = run / 'checkpoints' / '30.orbax-checkpoint-tmp-1700000000'
    partial.mkdir()
    (partial / 'state').mkdir()
    assert Checkpointer(run / 'checkpoints').latest_step() == 20
    train.main(args_for(npz_dataset, run, '--train_steps', '40', '--ckpt_every', '10', '--resume'))
    assert Checkpointer(run / 'checkpoints').latest_step() == 40


def _error(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        train.main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_unknown_algorithm(capsys, npz_dataset, tmp_path):
    err = _error(capsys, args_for(npz_dataset, tmp_path / 'r', algorithm='crll'))
    assert "unknown --algorithm 'crll'" in err and "Did you mean 'crl'" in err


def test_unknown_agent_key(capsys, npz_dataset, tmp_path):
    err = _error(capsys, args_for(npz_dataset, tmp_path / 'r', '--agent.alhpa=0.3'))
    assert '--agent.alhpa does not exist' in err and 'alpha' in err


def test_agent_value_of_the_wrong_type(capsys, npz_dataset, tmp_path):
    err = _error(capsys, args_for(npz_dataset, tmp_path / 'r', '--agent.lr=fast'))
    assert "--agent.lr='fast': expected float" in err


def test_missing_dataset(capsys, tmp_path):
    err = _error(capsys, args_for(str(tmp_path / 'nope.npz'), tmp_path / 'r'))
    assert 'does not exist' in err


def test_nan_in_dataset(capsys, tmp_path, episodes):
    episodes['observations'][3, 0] = np.nan
    np.savez(tmp_path / 'nan.npz', **episodes)
    err = _error(capsys, args_for(str(tmp_path / 'nan.npz'), tmp_path / 'r'))
    assert 'NaN or inf at rows [3]' in err


def test_discrete_flag_that_contradicts_the_data(capsys, npz_dataset, tmp_path):
    err = _error(capsys, args_for(npz_dataset, tmp_path / 'r', '--agent.discrete=True'))
    assert 'float (continuous) actions' in err


def test_resume_with_another_algorithm_or_config(capsys, npz_dataset, tmp_path):
    run = tmp_path / 'run'
    train.main(args_for(npz_dataset, run, '--train_steps', '10'))
    err = _error(capsys, args_for(npz_dataset, run, '--train_steps', '20', '--resume', algorithm='gciql'))
    assert "different algorithm (checkpoint 'crl' vs now 'gciql')" in err
    err = _error(capsys, args_for(npz_dataset, run, '--train_steps', '20', '--resume', '--agent.alpha=0.5'))
    assert 'alpha: checkpoint 0.1 vs now 0.5' in err


def test_resume_without_checkpoint(capsys, npz_dataset, tmp_path):
    err = _error(capsys, args_for(npz_dataset, tmp_path / 'empty', '--resume'))
    assert 'holds no checkpoint' in err


def test_corrupt_checkpoint_is_reported(capsys, npz_dataset, tmp_path):
    run = tmp_path / 'run'
    train.main(args_for(npz_dataset, run, '--train_steps', '10'))
    state_dir = run / 'checkpoints' / '10' / 'state'
    for root, _, files in os.walk(state_dir):
        for name in files:
            with open(os.path.join(root, name), 'wb') as f:
                f.write(b'garbage')
    err = _error(capsys, args_for(npz_dataset, run, '--train_steps', '20', '--resume'))
    assert 'cannot restore checkpoint' in err and 'aside' in err and '--resume continues from step 8' in err


def test_image_dataset_gets_an_image_encoder_and_the_reverse(capsys, tmp_path, episodes):
    pixels = dict(episodes, observations=np.zeros((len(episodes['terminals']), 8, 8, 3), np.uint8))
    np.savez(tmp_path / 'px.npz', **pixels)
    args = train.parse_args(args_for(str(tmp_path / 'px.npz'), tmp_path / 'r'))
    from impls.agents import get_agent
    from impls.data.datasets import load_dataset
    from impls.runs.offline import build_config

    config = build_config(args, get_agent('crl'), load_dataset(str(tmp_path / 'px.npz')))
    assert config.encoder == 'impala_small' and 'using the impala_small image encoder' in capsys.readouterr().out
    np.savez(tmp_path / 'st.npz', **episodes)
    err = _error(capsys, args_for(str(tmp_path / 'st.npz'), tmp_path / 'r2', '--agent.encoder=impala_small'))
    assert 'drop --agent.encoder' in err


def test_dataset_that_does_not_fit_the_eval_env(capsys, npz_dataset, tmp_path):
    argv = args_for(npz_dataset, tmp_path / 'r', '--env_name', 'cube-single-play-v0')
    argv[argv.index('--eval_episodes') + 1] = '1'
    err = _error(capsys, argv)
    assert 'observations (and goals) of shape (28,)' in err


def test_frame_stack_on_a_dataset_with_next_observations(capsys, tmp_path, episodes):
    np.savez(tmp_path / 'reg.npz', **episodes, next_observations=episodes['observations'] + 1)
    err = _error(capsys, args_for(str(tmp_path / 'reg.npz'), tmp_path / 'r', '--frame_stack', '4'))
    assert 'needs a compact dataset' in err


@pytest.mark.parametrize('algorithm', ['crl', 'gciql', 'cmd'])
def test_pixels_discrete_frame_stack_through_the_block_shuffle_loader(tmp_path, algorithm):
    """The user's driving setting in miniature: uint8 frames, discrete actions, 2 stacked frames,
    random crops, blocks of consecutive transitions read a chunk at a time."""
    from tests.conftest import make_episodes

    data = make_episodes([12, 9, 15], discrete=True)
    rng = np.random.default_rng(0)
    data['observations'] = rng.integers(0, 255, size=(36, 16, 16, 3), dtype=np.uint8)
    np.savez(tmp_path / 'px.npz', **data)
    argv = args_for(str(tmp_path / 'px.npz'), tmp_path / 'run', '--train_steps', '8', '--frame_stack', '2',
                    '--block_size', '4', '--chunk_size', '8', '--steps', '4', '--epochs', '2',
                    '--agent.encoder=impala_debug', '--agent.p_aug=0.5', algorithm=algorithm)
    argv[argv.index('--log_interval') + 1] = '4'
    if algorithm == 'cmd':
        argv.append('--agent.mrn_components=2')
    out = train.main(argv)
    rows = read_csv(tmp_path / 'run' / 'train.csv')
    assert [r['training/epoch'] for r in rows] == ['0', '1']
    assert 'training/actor/accuracy' in rows[0] and np.isfinite(float(rows[-1]['training/actor/loss']))
    assert out['agent'].network.params['modules_actor']['ImpalaEncoder_0'] is not None


def test_wandb_offline_needs_no_network_or_key(npz_dataset, tmp_path, monkeypatch):
    monkeypatch.delenv('WANDB_MODE', raising=False)
    monkeypatch.delenv('WANDB_API_KEY', raising=False)
    run = tmp_path / 'run'
    argv = args_for(npz_dataset, run, '--train_steps', '10')
    argv.remove('--wandb_mode')
    argv.remove('disabled')
    train.main(argv)  # no --wandb_mode and no WANDB_MODE: offline by default
    offline_runs = list((run / 'wandb').glob('offline-run-*'))
    assert len(offline_runs) == 1 and list(offline_runs[0].glob('*.wandb'))


def test_wandb_mode_resolution(monkeypatch):
    from impls.utils.logging import resolve_wandb_mode

    monkeypatch.setenv('WANDB_MODE', 'disabled')
    assert resolve_wandb_mode(None) == 'disabled' and resolve_wandb_mode('online') == 'online'
    monkeypatch.delenv('WANDB_MODE')
    assert resolve_wandb_mode(None) == 'offline'
    with pytest.raises(ValueError, match='use one of online, offline, disabled'):
        resolve_wandb_mode('cloud')


def test_no_agent_chosen_means_the_quick_start():
    for argv in ([], ['--no_progress'], ['--seed', '3']):
        args = train.parse_args(argv)
        assert (args.preset, args.algorithm, args.train_steps, args.generate_episodes) == ('quickstart', 'crl', 30000, 200)
    assert train.parse_args(['--algorithm', 'gciql', '--dataset_path', 'x.npz']).preset is None


@pytest.mark.parametrize('flag, message', [('--agent.goal_action=foo', "use one of ('none', 'roll')"),
                                           ('--agent.latent_dim=10', 'must be divisible by 2 x mrn_components')])
def test_agent_config_refused_before_anything_is_built(npz_dataset, tmp_path, capsys, flag, message):
    with pytest.raises(SystemExit) as exit_info:
        train.main(args_for(npz_dataset, tmp_path / 'run', flag, algorithm='cmd'))
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / 'run').exists()  # nothing written
