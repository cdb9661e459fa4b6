"""What a jitted function costs in arithmetic: XLA's FLOP count and the inventory of its matmuls.

Used by benchmarks/roofline.py to put an update's time beside the box's matmul rate at the same shapes, and checked
against hand counts in tests/test_cost.py.
"""

from __future__ import annotations

import math

import jax
from jax.extend import core as jex_core


def xla_flops(fn, *args) -> float:
    """FLOPs of one call of jit(fn)(*args), from XLA's cost analysis of the compiled program (a multiply-add
    counts 2; elementwise ops and reductions count too)."""
    analysis = jax.jit(fn).lower(*args).compile().cost_analysis()
    if isinstance(analysis, (list, tuple)):  # older jax: one dict per program
        analysis = analysis[0]
    return float(analysis['flops'])


def dot_flops(lhs_shape, rhs_shape, dimension_numbers) -> int:
    """2 x batch x contracted x lhs-free x rhs-free: the multiply-adds of one dot_general, counted as 2 FLOPs."""
    (lc, rc), (lb, _) = dimension_numbers
    batch = math.prod(lhs_shape[i] for i in lb)
    contracted = math.prod(lhs_shape[i] for i in lc)
    lhs_free = math.prod(d for i, d in enumerate(lhs_shape) if i not in lc and i not in lb)
    rhs_free = math.prod(d for i, d in enumerate(rhs_shape) if i not in rc and i not in dimension_numbers[1][1])
    return 2 * batch * contracted * lhs_free * rhs_free


def _sub_jaxprs(value):
    if isinstance(value, jex_core.ClosedJaxpr):
        yield value.jaxpr
    elif isinstance(value, jex_core.Jaxpr):
        yield value
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _sub_jaxprs(v)


def dot_inventory(fn, *args) -> list[dict]:
    """Every distinct dot_general that one call of fn(*args) runs (the forward and, for a function that takes
    gradients, the backward matmuls): lhs / rhs shapes and dtypes, dimension numbers, FLOPs of one, and how many
    times it runs (a scan body counts its length; a while body, whose trip count is unknown, counts once)."""
    found: dict = {}

    def walk(jaxpr, times):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == 'dot_general':
                lhs, rhs = (v.aval for v in eqn.invars)
                dims = eqn.params['dimension_numbers']
                dims = (tuple(map(tuple, dims[0])), tuple(map(tuple, dims[1])))
                key = (lhs.shape, rhs.shape, dims, str(lhs.dtype), str(rhs.dtype))
                entry = found.setdefault(key, dict(lhs=lhs.shape, rhs=rhs.shape, dims=dims, lhs_dtype=str(lhs.dtype),
                                                   rhs_dtype=str(rhs.dtype), flops=dot_flops(lhs.shape, rhs.shape, dims),
                                                   count=0))
                entry['count'] += times
            inner = times * (eqn.params['length'] if eqn.primitive.name == 'scan' else 1)
            for value in eqn.params.values():
                for sub in _sub_jaxprs(value):
                    walk(sub, inner)

    walk(jax.make_jaxpr(fn)(*args).jaxpr, 1)
    return list(found.values())
