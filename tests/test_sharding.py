"""Data parallel over several devices (forced host devices on CPU): equal to one device, and a batch that
does not split evenly is refused with the fix. Runs in subprocesses: the device count is fixed when jax
starts."""

import os
import subprocess
import sys

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
