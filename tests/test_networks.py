"""The shared networks: the ensemble wrapper (impls.utils.networks.ensemblize)."""

import jax
import jax.numpy as jnp
import numpy as np

from impls.utils.networks import MLP, GCValue


def test_ensemble_members_are_independent_mlps_on_the_same_inputs():
    net = GCValue(hidden_dims=(16, 16), num_ensemble=3)
    obs, goals = np.random.default_rng(0).normal(size=(2, 5, 4)).astype(np.float32)
    params = net.init(jax.random.PRNGKey(0), obs, goals)['params']
    out = net.apply({'params': params}, obs, goals)
    assert out.shape == (3, 5)
    members = params['VmapMLP_0']  # the parameter names checkpoints hold
    for i in range(3):
        member = jax.tree.map(lambda p: p[i], members)
        alone = MLP((16, 16, 1), layer_norm=True).apply({'params': member}, jnp.concatenate([obs, goals], -1))
        np.testing.assert_allclose(out[i], alone[..., 0], rtol=1e-5, atol=1e-6)
    assert not np.allclose(out[0], out[1])  # independently initialised

