import jax
import jax.numpy as jnp
import numpy as np
import pytest

from impls.utils.quasimetric import mrn_distance, pairwise_mrn_distance, pairwise_mrn_distance_direct


def test_mrn_by_hand():
    # K = 1 component of size 4: asymmetric part on dims 0-1, symmetric on 2-3.
    x = jnp.array([[3.0, 0.0, 1.0, 1.0]])
    y = jnp.array([[1.0, 2.0, 4.0, 5.0]])
    # max(0, max(3 - 1, 0 - 2)) = 2; ||(1, 1) - (4, 5)|| = 5
    np.testing.assert_allclose(mrn_distance(x, y, 1), [7.0], rtol=1e-6)
    # Reverse direction: max(0, max(-2, 2)) = 2 as well here; and d(x, x) = 0.
    np.testing.assert_allclose(mrn_distance(x, x, 1), [0.0], atol=1e-3)


def test_quasimetric_properties():
    rng = np.random.default_rng(0)
    a, b, c = (jnp.asarray(rng.normal(size=(100, 32)), jnp.float32) for _ in range(3))
    dab, dbc, dac = (mrn_distance(p, q, 4) for p, q in ((a, b), (b, c), (a, c)))
    assert np.all(np.asarray(dac) <= np.asarray(dab + dbc) + 1e-4)  # triangle inequality
    assert not np.allclose(mrn_distance(a, b, 4), mrn_distance(b, a, 4))  # asymmetric


@pytest.mark.parametrize('block', [1, 7, 64])
def test_blockwise_pairwise_equals_the_direct_computation(block):
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(37, 64)), jnp.float32)
    y = jnp.asarray(rng.normal(size=(41, 64)), jnp.float32)
    np.testing.assert_allclose(pairwise_mrn_distance(x, y, 8, block), pairwise_mrn_distance_direct(x, y, 8),
                               rtol=1e-5, atol=1e-5)
    w = jnp.asarray(rng.normal(size=(37, 41)), jnp.float32)
    for argnum in (0, 1):
        g_block = jax.grad(lambda p, q: jnp.sum(pairwise_mrn_distance(p, q, 8, block) * w), argnum)(x, y)
        g_direct = jax.grad(lambda p, q: jnp.sum(pairwise_mrn_distance_direct(p, q, 8) * w), argnum)(x, y)
        np.testing.assert_allclose(g_block, g_direct, rtol=1e-4, atol=1e-5)


def test_latent_size_must_split_into_components():
    with pytest.raises(ValueError, match='divisible by 2 x mrn_components'):
        mrn_distance(jnp.zeros((2, 10)), jnp.zeros((2, 10)), 4)


def test_argmax_by_packed_key_matches_argmax_and_takes_the_first_tie():
    from impls.utils.quasimetric import _argmax_last

    rng = np.random.default_rng(0)
    for h in (2, 5, 32, 33):
        values = rng.permutation(np.arange(-3 * h, 3 * h, 3, dtype=np.float32)[:h] * 0.37)  # distinct, mixed sign
        batch = np.stack([rng.permutation(values) for _ in range(64)])
        np.testing.assert_array_equal(np.asarray(_argmax_last(jnp.asarray(batch))), batch.argmax(-1))
    tied = jnp.asarray([[-1.0, 2.5, 2.5, 0.0], [-7.0, -2.0, -2.0, -3.0]])
    np.testing.assert_array_equal(np.asarray(_argmax_last(tied)), [1, 1])
