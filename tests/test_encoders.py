"""The image encoder's convolution: same values and gradients as flax/lax, and fast inside a scan."""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from impls.utils.encoders import Conv, ImpalaEncoder, conv2d_same


def test_conv_matches_flax_conv_values_and_gradients():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(3, 9, 7, 5)), jnp.float32)
    ours, ref = Conv(4, (3, 3)), nn.Conv(4, (3, 3), padding='SAME')
    params = ours.init(jax.random.PRNGKey(0), x)
    params = jax.tree.map(lambda p: p + 0.1 * jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)
    np.testing.assert_allclose(ours.apply(params, x), ref.apply(params, x), rtol=1e-5, atol=1e-5)

    def loss(module):
        return lambda p, x: jnp.sum(jnp.sin(module.apply(p, x)))

    g_ours = jax.grad(loss(ours), argnums=(0, 1))(params, x)
    g_ref = jax.grad(loss(ref), argnums=(0, 1))(params, x)
    for a, b in zip(jax.tree.leaves(g_ours), jax.tree.leaves(g_ref)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_even_kernel_gradient_matches_lax():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(2, 6, 6, 3)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(4, 2, 3, 5)), jnp.float32)
    ref = lambda x, k: jax.lax.conv_general_dilated(x, k, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    for f_ours, f_ref in ((conv2d_same, ref),):
        g1 = jax.grad(lambda x, k: jnp.sum(f_ours(x, k) ** 2), (0, 1))(x, k)
        g2 = jax.grad(lambda x, k: jnp.sum(f_ref(x, k) ** 2), (0, 1))(x, k)
        for a, b in zip(g1, g2):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_scanned_update_keeps_convolutions_in_canonical_layout():
    """Inside a lax.scan XLA:CPU runs a convolution whose dim_labels are not b01f_01io->b01f as a naive loop
    (30-40x slower); every convolution of a scanned encoder update must be canonical."""
    enc = ImpalaEncoder(stack_sizes=(4, 8), num_blocks=1, mlp_hidden_dims=(8,))
    x = np.random.default_rng(0).integers(0, 255, (2, 4, 16, 16, 6), dtype=np.uint8)
    params = enc.init(jax.random.PRNGKey(0), x[0])
    tx = optax.adam(1e-3)

    def step(carry, xb):
        p, o = carry
        g = jax.grad(lambda p: jnp.mean(enc.apply(p, xb) ** 2))(p)
        u, o = tx.update(g, o, p)
        return (optax.apply_updates(p, u), o), None

    hlo = jax.jit(lambda c, xs: jax.lax.scan(step, c, xs)).lower((params, tx.init(params)), x).compile().as_text()
    labels = re.findall(r'convolution\(.*?dim_labels=([^,\s]+)', hlo)
    assert len(labels) >= 9, labels  # forward, input-gradient and kernel-gradient convolutions
    assert set(labels) == {'b01f_01io->b01f'}, labels
