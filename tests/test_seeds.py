"""--num_seeds: N seeds vmapped in one process equal N separate runs; memory estimate; loading one seed."""

import csv

import jax
import numpy as np
import pytest

import train
from impls.runs.restore import load_agent
from impls.runs import updates as seeds_lib
from tests.test_train import args_for


def leaves(agent):
    return [np.asarray(x) for x in jax.tree.leaves(agent)]


def test_vmapped_seeds_match_separate_runs(npz_dataset, tmp_path):
    steps = ['--train_steps', '24', '--log_interval', '8']
    together = train.main(args_for(npz_dataset, tmp_path / 'both', *steps, '--seed', '3', '--num_seeds', '2'))
    for index, seed in enumerate((3, 4)):
        alone = train.main(args_for(npz_dataset, tmp_path / f's{seed}', *steps, '--seed', str(seed)))
        mine = seeds_lib.unstack_agent(together['agent'], index)
        for x, y in zip(leaves(mine), leaves(alone['agent'])):
            np.testing.assert_allclose(x, y, rtol=2e-4, atol=2e-5)
        # load_agent returns the seed asked for from the multi-seed checkpoint.
        loaded, record, _ = load_agent(str(tmp_path / 'both'), seed_index=index)
        assert record['num_seeds'] == 2
        for x, y in zip(leaves(loaded), leaves(mine)):
            np.testing.assert_array_equal(x, y)
    with open(tmp_path / 'both' / 'train.csv') as f:
        row = list(csv.DictReader(f))[-1]
    key = 'training/critic/loss'
    per_seed = [float(row[f'{key}/seed3']), float(row[f'{key}/seed4'])]
    assert float(row[key]) == pytest.approx(np.mean(per_seed), rel=1e-5)
    assert per_seed[0] != per_seed[1]  # each seed its own parameters and data order


def test_seed_memory_estimate_refuses_what_cannot_fit(npz_dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(seeds_lib, 'available_bytes', lambda: (10_000_000, 'available host memory'))
    with pytest.raises(SystemExit) as e:
        train.main(args_for(npz_dataset, tmp_path / 'r', '--train_steps', '8', '--num_seeds', '100000'))
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert '--num_seeds 100000 needs about' in err and 'per seed' in err and 'At most' in err
    assert not (tmp_path / 'r' / 'checkpoints').exists() or not any((tmp_path / 'r' / 'checkpoints').iterdir())


def test_seed_memory_estimate_counts_the_update_workspace():
    from impls.agents import get_agent
    from tests.conftest import tiny_config

    spec = get_agent('crl')
    rng = np.random.default_rng(0)
    batch = {k: rng.normal(size=(8, 2)).astype(np.float32) for k in ('observations', 'actions', 'value_goals',
                                                                       'actor_goals', 'next_observations')}
    config = tiny_config(spec)
    with config.unlocked():
        config.action_dim = 2
    agent = spec.agent_cls.create(0, batch, config)
    est = seeds_lib.seed_memory_estimate(agent, batch, updates_per_dispatch=4)
    assert est['state'] == sum(x.nbytes for x in leaves(agent))
    assert est['workspace'] > 0 and est['batches'] == 2 * 4 * sum(x.nbytes for x in batch.values())
    fine = seeds_lib.check_seed_memory(agent, batch, 3, 4, available=(10**12, 'test'))
    assert fine['needed'] == 3 * est['per_seed']


def test_compare_ogbench_refuses_a_path_that_is_not_ogbench_impls(tmp_path):
    import subprocess
    import sys

    from tests.test_sharding import ROOT

    (tmp_path / 'agents').mkdir()
    (tmp_path / 'agents' / 'crl.py').write_text('')
    proc = subprocess.run([sys.executable, 'benchmarks/compare_ogbench.py', '--ogbench_impls', str(tmp_path),
                           '--agents', 'crl', 'cmd'], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "is not a checkout of OGBench's impls/ directory" in proc.stderr
    assert 'utils/flax_utils.py' in proc.stderr and 'agents/cmd.py' in proc.stderr
