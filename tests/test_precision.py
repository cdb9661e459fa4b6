"""--precision bf16: bfloat16 matmuls with float32 accumulation, float32 everything else; float32 stays the default."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import train
from impls.utils import precision
from impls.utils.config import ConfigError
from impls.utils.networks import MLP, ensemblize
from tests.test_train import args_for


@pytest.fixture
def bf16():
    precision.set_precision('bf16')
    yield
    precision.set_precision('float32')


def test_names_as_users_type_them():
    assert precision.set_precision('BF16') == 'bf16'
    assert precision.set_precision('bfloat16') == 'bf16'
    assert precision.set_precision('FP32') == 'float32'
    assert precision.get_precision() == 'float32'
    with pytest.raises(ConfigError, match='expected float32 .* or bf16'):
        precision.set_precision('fp8')


def test_dot_general_spec_follows_lax_output_order():
    # A Dense layer: (B, in) x (in, out), contracting the last input axis.
    assert precision.dot_general_spec((((1,), (0,)), ((), ())), 2, 2) == 'ba,ac->bc'
    # Batch dims first, then lhs free, then rhs free.
    assert precision.dot_general_spec((((2,), (1,)), ((0,), (0,))), 3, 3) == 'acb,abd->acd'


def _mlp_grads():
    x = jax.random.normal(jax.random.key(0), (64, 5))
    y = jax.random.normal(jax.random.key(1), (2, 64, 32))
    net = ensemblize(MLP, 2)((32, 32), layer_norm=True)
    params = net.init(jax.random.key(2), x)
    loss = lambda p: ((net.apply(p, x) - y) ** 2).mean()  # noqa: E731
    return jax.jit(jax.grad(loss))(params), jax.make_jaxpr(jax.grad(loss))(params)


def test_bf16_gradients_are_float32_and_close(bf16):
    grads, jaxpr = _mlp_grads()
    precision.set_precision('float32')
    reference, reference_jaxpr = _mlp_grads()
    for g, r in zip(jax.tree.leaves(grads), jax.tree.leaves(reference)):
        assert g.dtype == jnp.float32
        np.testing.assert_allclose(np.linalg.norm(g - r) / np.linalg.norm(r), 0, atol=2e-2)
    # Every matmul of the bf16 step, forward and backward, multiplies bf16 into float32; the float32 step has none.
    dots = _dots(jaxpr.jaxpr)
    assert len(dots) >= 5  # 2 forward, 2 weight-gradient and at least 1 input-gradient matmul
    assert all(str(e.invars[0].aval.dtype) == 'bfloat16' and str(e.invars[1].aval.dtype) == 'bfloat16'
               and str(e.outvars[0].aval.dtype) == 'float32' for e in dots)
    assert all(str(e.invars[0].aval.dtype) == 'float32' for e in _dots(reference_jaxpr.jaxpr))


def _dots(jaxpr):
    out = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == 'dot_general':
            out.append(eqn)
        for v in eqn.params.values():
            for sub in (v if isinstance(v, (tuple, list)) else [v]):
                inner = getattr(sub, 'jaxpr', sub)
                if hasattr(inner, 'eqns'):
                    out += _dots(inner)
    return out


def test_vmapped_ensemble_gradient_runs_on_cpu(bf16):
    """A vmapped ensemble whose loss sends a broadcast cotangent into the weight gradient: XLA:CPU's fallback dot
    cannot multiply bf16 into float32, and this layout once reached it ('Unsupported element type for DotThunk')."""
    x = jnp.ones((64, 4))
    net = ensemblize(MLP, 2)((32, 16))
    params = net.init(jax.random.key(0), x)
    grads = jax.jit(lambda p, x: jax.grad(lambda p: net.apply(p, x).sum())(p))(params, x)  # x an input, not a constant
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))


def test_layers_take_their_matmuls_from_the_policy():
    """One way to build a matmul: the agents' networks use precision.Dense / DenseGeneral / Conv / einsum, so
    --precision reaches every layer. (flax's ConvTranspose has no hook and stays float32.)"""
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'impls')
    offenders = []
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            if not name.endswith('.py') or path.endswith(os.path.join('utils', 'precision.py')):
                continue
            for i, line in enumerate(open(path), 1):
                code = line.split('#')[0]
                if any(f'{k}(' in code for k in ('nn.Dense', 'nn.DenseGeneral', 'nn.Conv', 'jnp.einsum', 'jnp.dot',
                                                  'jnp.matmul')) and '"""' not in line and '`' not in line:
                    offenders.append(f'{os.path.relpath(path, root)}:{i}: {line.strip()}')
    assert not offenders, 'build matmuls through impls.utils.precision:\n' + '\n'.join(offenders)


def test_train_py_bf16_runs_and_records_it(npz_dataset, tmp_path, capsys):
    try:
        train.main(args_for(npz_dataset, tmp_path, '--precision', 'BF16', '--train_steps', '20'))
    finally:
        precision.set_precision('float32')
    with open(os.path.join(tmp_path, 'config.json')) as f:
        assert json.load(f)['flags']['precision'] == 'bf16'


def test_no_native_bf16_warns_with_the_cost(monkeypatch):
    monkeypatch.setattr(precision, 'bf16_support', lambda: (False, 'a CPU without avx512_bf16 or amx_bf16'))
    message = precision.check_bf16_support()
    assert 'emulated' in message and 'slower than float32' in message and '--precision float32' in message
    monkeypatch.setattr(precision, 'bf16_support', lambda: (True, 'CPU flags avx512_bf16'))
    assert precision.check_bf16_support() is None
