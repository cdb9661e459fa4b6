"""Data parallel over several devices (forced host devices on CPU) and over several processes
(`--distributed`): equal to one device, and a batch that does not split evenly or a missing coordinator is
refused with the fix. Runs in subprocesses: the device count is fixed when jax starts."""

import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=2', JAX_PLATFORMS='cpu')

SCRIPT = r'''
import sys
import jax
import numpy as np
import train
from tests.test_train import args_for
npz, out = sys.argv[1], sys.argv[2]
assert jax.device_count() == 2, jax.devices()
for algorithm, extra in (('crl', ['--seed', '1']), ('gciql', ['--num_seeds', '2'])):
    runs = {}
    for n in (1, 2):
        a = args_for(npz, f'{out}/{algorithm}{n}', '--train_steps', '20', '--num_devices', str(n), *extra,
                     algorithm=algorithm)
        runs[n] = train.main(a)['agent']
    leaf = jax.tree.leaves(runs[2])[-1]
    assert len(leaf.sharding.device_set) == 2, leaf.sharding  # replicated over both devices
    for x, y in zip(jax.tree.leaves(runs[1]), jax.tree.leaves(runs[2])):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-5)
print('EQUAL')
'''


def test_two_devices_equal_one(npz_dataset, tmp_path):
    proc = subprocess.run([sys.executable, '-c', SCRIPT, npz_dataset, str(tmp_path)], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and 'EQUAL' in proc.stdout, proc.stderr[-3000:]


def test_batch_that_does_not_split_over_the_devices(npz_dataset, tmp_path):
    from tests.test_train import args_for

    argv = args_for(npz_dataset, tmp_path / 'r', '--train_steps', '10', '--batch_size', '7')
    proc = subprocess.run([sys.executable, 'train.py', *argv], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert 'batch size 7 does not split evenly over 2 devices' in proc.stderr
    assert '--batch_size 6 or 8' in proc.stderr
    assert not (tmp_path / 'r').exists()


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(('localhost', 0))
        return s.getsockname()[1]


def test_two_processes_equal_one(npz_dataset, tmp_path):
    """`--distributed` with two CPU processes (one device each, gloo collectives): the same logged losses and
    final parameters as one process on one device; process 0 alone writes the logs."""
    import jax

    import train
    from impls.runs.restore import load_agent
    from tests.test_train import args_for, read_csv

    argv = args_for(npz_dataset, tmp_path / 'multi', '--train_steps', '20', '--seed', '1', '--distributed')
    port = _free_port()
    procs = []
    for pid in range(2):
        env = dict(os.environ, JAX_PLATFORMS='cpu', JAX_COORDINATOR_ADDRESS=f'localhost:{port}',
                   JAX_NUM_PROCESSES='2', JAX_PROCESS_ID=str(pid))
        env.pop('XLA_FLAGS', None)
        procs.append(subprocess.Popen([sys.executable, 'train.py', *argv], cwd=ROOT, env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    train.main(args_for(npz_dataset, tmp_path / 'single', '--train_steps', '20', '--seed', '1'))
    multi, single = read_csv(tmp_path / 'multi' / 'train.csv'), read_csv(tmp_path / 'single' / 'train.csv')
    assert [r['step'] for r in multi] == [r['step'] for r in single] == ['10', '20']
    for m, s in zip(multi, single):
        for key in ('training/critic/loss', 'training/actor/loss'):
            np.testing.assert_allclose(float(m[key]), float(s[key]), rtol=1e-5)
    (a, _, step_a), (b, _, step_b) = load_agent(str(tmp_path / 'multi')), load_agent(str(tmp_path / 'single'))
    assert step_a == step_b == 20
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-5)


def test_distributed_without_a_coordinator(npz_dataset, tmp_path):
    from tests.test_train import args_for

    env = {k: v for k, v in os.environ.items() if not k.startswith(('JAX_COORDINATOR', 'JAX_NUM_PROCESSES',
                                                                    'JAX_PROCESS_ID', 'SLURM_', 'OMPI_'))}
    proc = subprocess.run([sys.executable, 'train.py', *args_for(npz_dataset, tmp_path / 'r', '--distributed')],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert 'JAX_COORDINATOR_ADDRESS=host:port' in proc.stderr and 'drop --distributed' in proc.stderr
    assert not (tmp_path / 'r').exists()
