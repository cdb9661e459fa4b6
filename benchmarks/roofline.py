"""Roofline: how close the agents' updates run to this box's own matmul rate, in one run on one box.

    python benchmarks/roofline.py [--agents crl gciql cmd] [--precisions float32 bf16] [--xla VARIANT ...]
                                  [--json benchmarks/results/roofline.json]

For every (XLA flag variant, precision) a fresh worker process (XLA reads its flags once, at start-up) measures:
  * the box's matmul rate through XLA at large square shapes (2048^3) and, for each agent, at the agent's own
    dot shapes (every dot_general of one update, forward and backward, timed alone under jit);
  * numpy's BLAS float32 rate (2048^3), for scale;
  * each agent's FLOPs per update (XLA's cost analysis of the compiled update; impls.utils.cost, whose count is
    checked against a hand count in tests/test_cost.py), and the matmul FLOPs in it;
  * the update's time bare (one jitted update per call) and fused (8 updates per lax.scan dispatch, as train.py
    runs), the achieved GFLOP/s, and the utilisation: the time the update's matmuls take alone at this box's rate
    for their shapes, divided by the fused update's time (1.0: the update costs exactly its matmuls).
Shapes: OGBench's defaults (batch 1024, 3x512 GELU MLPs with LayerNorm, latent 512), pointmaze's 2-d states and
actions. Every row records the CPU model, its relevant flags, the thread count and XLA_FLAGS. Medians over repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# XLA:CPU option sets compared (each in its own process). 'ynn_dot': the YNNPACK library fusions for dots only
# (the default also fuses elementwise ops into YNNPACK calls).
XLA_VARIANTS = {
    'default': '',
    'ynn_dot': '--xla_cpu_experimental_ynn_fusion_type=dot',
    'no_ynn': '--xla_cpu_experimental_ynn_fusion_type=',
    'onednn': '--xla_cpu_experimental_ynn_fusion_type= --xla_cpu_experimental_onednn_fusion_type=dot',
    'xnn': '--xla_cpu_experimental_ynn_fusion_type= --xla_cpu_experimental_xnn_fusion_type=dot',
}
CPU_FLAGS = ('avx2', 'fma', 'avx512f', 'avx512_bf16', 'avx512_vnni', 'amx_bf16', 'amx_tile')


def cpu_description() -> dict:
    model, flags = platform.processor(), []
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    model = line.split(':', 1)[1].strip()
                if line.startswith('flags'):
                    flags = line.split(':', 1)[1].split()
    except OSError:
        pass
    return dict(cpu=model, cpu_flags=[f for f in CPU_FLAGS if f in flags], cores=os.cpu_count(),
                xla_flags=os.environ.get('XLA_FLAGS', ''))


def median_seconds(fn, min_seconds: float = 0.5, repeats: int = 5) -> float:
    """Median seconds per call of fn() (which blocks), after one warm-up call; each repeat >= min_seconds."""
    fn()
    t = time.perf_counter()
    fn()
    n = max(1, int(min_seconds / max(time.perf_counter() - t, 1e-6)))
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        out.append((time.perf_counter() - t) / n)
    return float(np.median(out))


def dot_seconds(dot, low) -> float:
    """Seconds of one dot_general of the inventory's shapes alone (operands in the policy's dtype)."""
    import jax
    import jax.numpy as jnp

    dtype = low or jnp.float32
    lhs = jnp.asarray(np.random.default_rng(0).normal(size=dot['lhs']), dtype)
    rhs = jnp.asarray(np.random.default_rng(1).normal(size=dot['rhs']), dtype)
    pref = jnp.float32 if low is not None else None
    fn = jax.jit(lambda a, b: jax.lax.dot_general(a, b, dot['dims'], preferred_element_type=pref))
    return median_seconds(lambda: fn(lhs, rhs).block_until_ready(), 0.2, 3)


def square_rate(n: int, low) -> float:
    return 2 * n**3 / dot_seconds(dict(lhs=(n, n), rhs=(n, n), dims=(((1,), (0,)), ((), ()))), low) / 1e9


def numpy_rate(n: int) -> float:
    a = np.random.default_rng(0).normal(size=(n, n)).astype(np.float32)
    return 2 * n**3 / median_seconds(lambda: a @ a, 0.5, 3) / 1e9


def make_agent(name: str, batch_size: int):
    from benchmarks.compare_ogbench import make_batch

    from impls.agents import get_agent

    spec = get_agent(name)
    config = spec.get_config()
    if name == 'cmd':
        config.goal_action, config.logit_bias = 'roll', False  # the formulation compared with the CMD fork
    batch = make_batch(batch_size)
    config.action_dim = batch['actions'].shape[-1]
    agent = spec.agent_cls.create(0, dict(observations=batch['observations'][:1], actions=batch['actions'][:1]),
                                  config)
    return agent, batch


def measure_agent(name: str, batch_size: int, fused: int, low) -> dict:
    import jax

    from impls.runs.updates import scan_updates
    from impls.utils.cost import dot_inventory, xla_flops

    agent, batch = make_agent(name, batch_size)
    batch = jax.device_put(batch)
    flops = xla_flops(lambda a, b: a.update(b), agent, batch)
    dots = dot_inventory(lambda a, b: a.update(b), agent, batch)
    dot_flops = sum(d['flops'] * d['count'] for d in dots)
    dots_alone = sum(dot_seconds(d, low) * d['count'] for d in dots)
    update = jax.jit(lambda a, b: a.update(b))
    state = {'agent': agent}

    def bare():
        state['agent'], info = update(state['agent'], batch)
        jax.block_until_ready(info)

    stacked = jax.device_put({k: np.stack([np.asarray(v)] * fused) for k, v in batch.items()})

    def fused_call():
        state['agent'], info = scan_updates(state['agent'], stacked)
        jax.block_until_ready(info)

    bare_s = median_seconds(bare, 2.0, 5)
    fused_s = median_seconds(fused_call, 2.0, 5) / fused
    return dict(agent=name, batch_size=batch_size, gflop_per_update=flops / 1e9, matmul_gflop=dot_flops / 1e9,
                matmul_share=dot_flops / flops, distinct_dots=len(dots), ms_bare=1e3 * bare_s, ms_fused=1e3 * fused_s,
                gflops_bare=flops / bare_s / 1e9, gflops_fused=flops / fused_s / 1e9,
                matmul_rate_at_shapes=dot_flops / dots_alone / 1e9, ms_matmuls_alone=1e3 * dots_alone,
                utilisation=dots_alone / fused_s)


def worker(args):
    import jax

    from impls.utils.precision import low_dtype, set_precision

    set_precision(args.precision)
    low = low_dtype()
    row = dict(cpu_description(), variant=args.variant, precision=args.precision, jax=jax.__version__,
               xla_matmul_2048=square_rate(2048, low), numpy_matmul_2048=numpy_rate(2048))
    row['agents'] = []
    for name in args.agents:
        try:
            row['agents'].append(measure_agent(name, args.batch_size, args.fused, low))
        except Exception as e:  # a flag set XLA cannot run (e.g. a dot kind the CPU runtime lacks): say so, go on
            row['agents'].append(dict(agent=name, error=f'{type(e).__name__}: {str(e)[:200]}'))
    print('RESULT ' + json.dumps(row), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--agents', nargs='+', default=['crl', 'gciql', 'cmd'])
    p.add_argument('--precisions', nargs='+', default=['float32', 'bf16'])
    p.add_argument('--xla', nargs='+', default=['default', 'ynn_dot'], choices=sorted(XLA_VARIANTS))
    p.add_argument('--batch_size', type=int, default=1024)
    p.add_argument('--fused', type=int, default=8, help='Updates per lax.scan dispatch (train.py: 8).')
    p.add_argument('--json', default=None)
    p.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    p.add_argument('--variant', default='default', help=argparse.SUPPRESS)
    p.add_argument('--precision', default='float32', help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    rows = []
    for variant in args.xla:
        for precision in args.precisions:
            env = dict(os.environ, XLA_FLAGS=(os.environ.get('XLA_FLAGS', '') + ' ' + XLA_VARIANTS[variant]).strip())
            cmd = [sys.executable, os.path.abspath(__file__), '--worker', '--variant', variant, '--precision',
                   precision, '--batch_size', str(args.batch_size), '--fused', str(args.fused), '--agents',
                   *args.agents]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('RESULT ')]
            if not lines:
                print(f'{variant}/{precision}: worker failed\n{proc.stderr[-2000:]}', file=sys.stderr)
                continue
            row = json.loads(lines[-1][len('RESULT '):])
            rows.append(row)
            print(f'[{variant} {precision}] XLA 2048^3 {row["xla_matmul_2048"]:.0f} GFLOP/s, numpy '
                  f'{row["numpy_matmul_2048"]:.0f}', flush=True)
            for a in row['agents']:
                if 'error' in a:
                    print(f'  {a["agent"]}: {a["error"]}', flush=True)
                    continue
                print(f'  {a["agent"]}: {a["gflop_per_update"]:.1f} GFLOP/update ({100 * a["matmul_share"]:.0f}% '
                      f'matmul), bare {a["ms_bare"]:.1f} ms, fused {a["ms_fused"]:.1f} ms = {a["gflops_fused"]:.0f} '
                      f'GFLOP/s; matmuls alone {a["ms_matmuls_alone"]:.1f} ms ({a["matmul_rate_at_shapes"]:.0f} '
                      f'GFLOP/s at its shapes); utilisation {a["utilisation"]:.2f}', flush=True)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, 'w') as f:
            json.dump(dict(argv=sys.argv[1:], date=time.strftime('%Y-%m-%d'), rows=rows), f, indent=1)


if __name__ == '__main__':
    main()
