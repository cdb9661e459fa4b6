"""impls.utils.cost: XLA's FLOP count and the matmul inventory against hand counts."""

import jax
import jax.numpy as jnp
from jax import lax

from impls.utils.cost import dot_flops, dot_inventory, xla_flops

B, D_IN, D_HID, D_OUT = 5, 4, 8, 3


def _weights():
    return jnp.ones((D_IN, D_HID)), jnp.ones((D_HID, D_OUT)), jnp.ones((B, D_IN))


def test_forward_matmul_chain_by_hand():
    w1, w2, x = _weights()
    hand = 2 * B * D_IN * D_HID + 2 * B * D_HID * D_OUT  # 320 + 240 multiply-adds x 2
    assert xla_flops(lambda w1, w2, x: x @ w1 @ w2, w1, w2, x) == hand
    dots = dot_inventory(lambda w1, w2, x: x @ w1 @ w2, w1, w2, x)
    assert sum(d['flops'] * d['count'] for d in dots) == hand


def test_gradient_matmuls_by_hand():
    """d/dW of sum((x W1 W2)^2): forward 2 matmuls; backward dW2 = h^T g, dh = g W2^T, dW1 = x^T dh (no dx)."""
    w1, w2, x = _weights()
    grad = jax.grad(lambda w1, w2, x: ((x @ w1 @ w2) ** 2).sum(), argnums=(0, 1))
    hand = 2 * (2 * B * D_IN * D_HID) + 3 * (2 * B * D_HID * D_OUT)
    dots = dot_inventory(grad, w1, w2, x)
    assert sum(d['flops'] * d['count'] for d in dots) == hand
    # XLA counts the matmuls plus a few elementwise ops (the square, its cotangent, the sum): never fewer.
    assert hand <= xla_flops(grad, w1, w2, x) <= hand * 1.1


def test_scan_body_counts_its_length_and_batched_dims():
    a = jnp.ones((2, 3, 4))
    b = jnp.ones((2, 4, 5))
    assert dot_flops((2, 3, 4), (2, 4, 5), (((2,), (1,)), ((0,), (0,)))) == 2 * 2 * 3 * 4 * 5

    def f(a, b):
        return lax.scan(lambda c, _: (c + jnp.einsum('bij,bjk->bik', a, b).sum(), None), 0.0, None, length=7)[0]

    dots = dot_inventory(f, a, b)
    assert [(d['count'], d['flops']) for d in dots] == [(7, 2 * 2 * 3 * 4 * 5)]
