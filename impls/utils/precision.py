"""Matmul precision: float32 everywhere (the default), or bfloat16 matmuls and convolutions that accumulate in float32.

`--precision bf16` casts the two operands of every matmul (the Dense layers, the einsums of the losses and the
pairwise distances) and of the image encoders' convolutions to bfloat16, and accumulates in float32
(`preferred_element_type`). Parameters, optimiser state, gradients and everything outside the matmuls (LayerNorm,
GELU, softmax, the losses) stay float32. The backward matmuls are bf16 too: `_low_einsum`'s VJP casts the cotangent
to bf16 before each of its two matmuls and returns float32 gradients (jax's own rule would feed XLA a float32
cotangent against a bf16 operand, which the CPU backend runs as a float32 matmul after upcasting, and would round the
parameter gradient to bf16).

The policy is process-wide and read when a function is traced: set it once, before building agents (the run engine
does, from `--precision`). `set_precision` clears jax's compilation caches when the policy changes, so nothing traced
under the other policy is reused. Networks take their matmuls from here: `Dense`, `DenseGeneral`, `einsum`,
`dot_general` (tests/test_layering.py checks that no module builds `nn.Dense` directly).
"""

from __future__ import annotations

import functools
import string

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from impls.utils.config import ConfigError

PRECISIONS = {'float32': None, 'fp32': None, 'f32': None, 'bf16': jnp.bfloat16, 'bfloat16': jnp.bfloat16}
_POLICY = {'name': 'float32', 'dtype': None}


def set_precision(name: str) -> str:
    """Set the process-wide matmul precision ('float32' or 'bf16'); returns its canonical name."""
    key = str(name).lower()
    if key not in PRECISIONS:
        raise ConfigError(f'--precision {name!r}: expected float32 (the default) or bf16 (bfloat16 matmuls and '
                         f'convolutions with float32 accumulation).')
    canonical = 'bf16' if PRECISIONS[key] is not None else 'float32'
    if canonical != _POLICY['name']:
        jax.clear_caches()  # functions traced under the other policy must not be reused
    _POLICY.update(name=canonical, dtype=PRECISIONS[key])
    return canonical


def bf16_support() -> tuple[bool, str]:
    """(native bf16 matmuls on the default backend?, what was found)."""
    backend = jax.default_backend()
    if backend == 'gpu':
        capability = getattr(jax.devices()[0], 'compute_capability', None)
        ok = capability is not None and float(capability) >= 8.0
        return ok, f'GPU compute capability {capability}'
    if backend == 'cpu':
        try:
            with open('/proc/cpuinfo') as f:
                flags = next((line.split(':', 1)[1].split() for line in f if line.startswith('flags')), [])
        except OSError:
            flags = []
        found = [f for f in ('avx512_bf16', 'amx_bf16') if f in flags]
        return bool(found), f'CPU flags {", ".join(found)}' if found else 'a CPU without avx512_bf16 or amx_bf16'
    return True, f'backend {backend}'


def check_bf16_support() -> str | None:
    """A warning if the hardware has no native bf16 matmuls (None if it has)."""
    ok, found = bf16_support()
    if ok:
        return None
    return (f'--precision bf16 on {found}: bfloat16 matmuls are emulated here (converted to float32 and back), so '
            f'they will run slower than float32 and still carry bf16 rounding. Use --precision float32 on this '
            f'machine, or bf16 on a CPU with AVX512-BF16 / AMX or a GPU of compute capability 8.0 or newer.')


def get_precision() -> str:
    return _POLICY['name']


def low_dtype():
    """The matmul operand dtype of the current policy (None: float32, nothing is cast)."""
    return _POLICY['dtype']


def _transposable(spec: str) -> bool:
    """True if `spec` ("X,Y->Z") has no repeated index within an operand and every operand index appears in the
    other operand or the output, so each operand's gradient is itself a two-operand einsum."""
    inputs, out = spec.split('->')
    x, y = inputs.split(',')
    return (len(set(x)) == len(x) and len(set(y)) == len(y) and len(set(out)) == len(out)
            and set(x) <= set(y) | set(out) and set(y) <= set(x) | set(out) and '.' not in spec)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _low_einsum(spec, low, x, y):
    return jnp.einsum(spec, x.astype(low), y.astype(low), preferred_element_type=jnp.float32)


def _low_einsum_fwd(spec, low, x, y):
    xl, yl = x.astype(low), y.astype(low)
    # Zero-size arrays carry the operands' dtypes to the backward pass (residuals must be arrays).
    return (jnp.einsum(spec, xl, yl, preferred_element_type=jnp.float32),
            (xl, yl, jnp.zeros((0,), x.dtype), jnp.zeros((0,), y.dtype)))


def _row_major_einsum(spec, a, b):
    """jnp.einsum(spec, a, b) with f32 accumulation, its operands first laid out as a row-major matmul wants them
    (a: batch, free, contracted; b: batch, contracted, free). The copies go through an optimization barrier so
    that XLA cannot fold them back into the dot's dimension numbers: the CPU's bf16 matmul library takes only this
    layout at full speed, and XLA's own fallback for the other layouts cannot multiply bf16 into f32 at all."""
    inputs, out = spec.split('->')
    p, q = inputs.split(',')
    batch = [c for c in p if c in q and c in out]
    contracted = [c for c in p if c in q and c not in out]
    p_free, q_free = [c for c in p if c not in q], [c for c in q if c not in p]
    p_order, q_order = ''.join(batch + p_free + contracted), ''.join(batch + contracted + q_free)
    if p_order != p:
        a = lax.optimization_barrier(jnp.transpose(a, [p.index(c) for c in p_order]))
    if q_order != q:
        b = lax.optimization_barrier(jnp.transpose(b, [q.index(c) for c in q_order]))
    return jnp.einsum(f'{p_order},{q_order}->{out}', a, b, preferred_element_type=jnp.float32)


def _low_einsum_bwd(spec, low, residuals, g):
    xl, yl, x_tag, y_tag = residuals
    inputs, out = spec.split('->')
    x, y = inputs.split(',')
    gl = g.astype(low)
    dx = _row_major_einsum(f'{out},{y}->{x}', gl, yl)
    dy = _row_major_einsum(f'{x},{out}->{y}', xl, gl)
    return dx.astype(x_tag.dtype), dy.astype(y_tag.dtype)


_low_einsum.defvjp(_low_einsum_fwd, _low_einsum_bwd)


def einsum(spec: str, x, y):
    """A two-operand einsum under the current precision policy (float32: jnp.einsum)."""
    low = low_dtype()
    spec = spec.replace(' ', '')
    if low is None:
        return jnp.einsum(spec, x, y)
    if not _transposable(spec):
        raise ValueError(f'einsum {spec!r} has an index that is summed within one operand, repeated or elided; '
                         f'bf16 matmuls support plain contractions only (spell the indices out).')
    return _low_einsum(spec, low, x, y)


def dot_general_spec(dimension_numbers, lhs_ndim: int, rhs_ndim: int) -> str:
    """The einsum spec of a dot_general: batch dims, then lhs free dims, then rhs free dims (lax's output order)."""
    (lc, rc), (lb, rb) = dimension_numbers
    letters = iter(string.ascii_letters)
    lhs, rhs, out = [None] * lhs_ndim, [None] * rhs_ndim, []
    for i, j in zip(lb, rb):
        lhs[i] = rhs[j] = next(letters)
        out.append(lhs[i])
    for i, j in zip(lc, rc):
        lhs[i] = rhs[j] = next(letters)
    for k in range(lhs_ndim):
        if lhs[k] is None:
            lhs[k] = next(letters)
            out.append(lhs[k])
    for k in range(rhs_ndim):
        if rhs[k] is None:
            rhs[k] = next(letters)
            out.append(rhs[k])
    return f'{"".join(lhs)},{"".join(rhs)}->{"".join(out)}'


def dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None, **kwargs):
    """lax.dot_general under the current precision policy (the signature flax's Dense layers call)."""
    low = low_dtype()
    if low is None:
        return lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                               preferred_element_type=preferred_element_type, **kwargs)
    return _low_einsum(dot_general_spec(dimension_numbers, lhs.ndim, rhs.ndim), low, lhs, rhs)


def conv_operands(x, kernel):
    """(x, kernel, preferred_element_type) for lax.conv_general_dilated under the current policy."""
    low = low_dtype()
    if low is None:
        return x, kernel, None
    return x.astype(low), kernel.astype(low), jnp.float32


def conv_general_dilated(lhs, rhs, *args, preferred_element_type=None, **kwargs):
    """lax.conv_general_dilated under the current policy (flax's Conv hook). Forward in bf16 with float32
    accumulation; the backward convolutions as jax differentiates it (their gradients rounded to bf16, as in mixed
    precision training elsewhere). The IMPALA encoders' convolutions use conv_operands with their own VJP."""
    lhs, rhs, accumulate = conv_operands(lhs, rhs)
    return lax.conv_general_dilated(lhs, rhs, *args, preferred_element_type=accumulate or preferred_element_type,
                                    **kwargs)


# The layers every network builds its matmuls from (same parameter names and shapes as flax's). ConvTranspose has no
# hook in flax and stays float32.
Dense = functools.partial(nn.Dense, dot_general=dot_general)
DenseGeneral = functools.partial(nn.DenseGeneral, dot_general=dot_general)
Conv = functools.partial(nn.Conv, conv_general_dilated=conv_general_dilated)
