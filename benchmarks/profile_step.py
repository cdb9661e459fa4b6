"""Where the time of one fused update goes: a trace of train.py's dispatch (n updates in one lax.scan), per XLA op.

    python benchmarks/profile_step.py --agent gciql [--precision bf16] [--batch_size 1024] [--fused 8]
                                      [--top 25] [--json benchmarks/results/profile_gciql.json]

The agent at OGBench's sizes (as benchmarks/roofline.py builds it) runs `--warmup` dispatches, then `--traced`
dispatches under `jax.profiler`; every op the XLA:CPU runtime executes is an event with its HLO name on one of
the runtime's threads. Each op is classed from the compiled HLO (its opcode, fusion kind and the ops fused in it):
  matmul       dots, and the YNNPACK library fusions that hold a dot
  layout copy  copy / transpose ops and fusions that only move data (a change of layout or dtype, a slice)
  reduction    fusions with a reduce (LayerNorm's statistics, loss means, the optimiser's norms)
  elementwise  the other fusions (activations, their gradients, the optimiser's arithmetic)
  other        the rest (random bits, while-loop control, custom calls)
and reported as thread-milliseconds per update (summed over the runtime's threads, so with two busy threads the
total is up to twice the wall time) and as a share, with the heaviest ops by name, shape and the jax op name XLA
recorded for them (the module path of the layer), and how many cores the dispatch keeps busy. Thread-time, not wall time, is what a change to one op saves; the utilisation in
benchmarks/roofline.py is the wall-time figure.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.roofline import cpu_description, make_agent  # noqa: E402

_INSTR = re.compile(r'^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(\S+(?:\{[^}]*\})?)\s+([\w\-]+)\(')
_CALLS = re.compile(r'calls=%?([\w.\-]+)')
_OPNAME = re.compile(r'op_name="([^"]*)"')
MOVES = {'copy', 'transpose', 'bitcast', 'convert', 'slice', 'dynamic-slice', 'dynamic-update-slice', 'reshape',
         'broadcast', 'concatenate', 'pad', 'parameter', 'tuple', 'get-tuple-element', 'constant', 'iota'}


def parse_hlo(text: str) -> dict:
    """{instruction name: dict(shape, opcode, calls, op_name)} and {computation name: [opcodes]}."""
    instrs, comps, current = {}, collections.defaultdict(list), None
    for line in text.splitlines():
        head = line.strip()
        if head.endswith('{') and '=' not in head.split('(')[0]:  # a computation's header
            current = head.split()[1 if head.startswith('ENTRY') else 0].lstrip('%')
            continue
        m = _INSTR.match(line)
        if not m:
            continue
        name, shape, opcode = m.groups()
        calls = _CALLS.search(line)
        op_name = _OPNAME.search(line)
        instrs[name] = dict(shape=shape, opcode=opcode, calls=calls.group(1) if calls else None,
                            op_name=op_name.group(1) if op_name else '')
        if current:
            comps[current].append(opcode)
    return dict(instrs=instrs, comps=comps)


def classify(name: str, hlo: dict) -> str:
    ins = hlo['instrs'].get(name)
    if ins is None:
        return 'matmul' if name.startswith('ynn_fusion') else 'other'
    op = ins['opcode']
    if op in ('dot', 'convolution'):
        return 'matmul'
    if op in ('copy', 'transpose'):
        return 'layout copy'
    if op == 'fusion':
        inner = set(hlo['comps'].get(ins['calls'], ()))
        if inner & {'dot', 'convolution'}:
            return 'matmul'
        if 'reduce' in inner or 'reduce-window' in inner:
            return 'reduction'
        if inner and inner <= MOVES:
            return 'layout copy'
        return 'elementwise'
    if op == 'reduce':
        return 'reduction'
    return 'other'


def trace_events(trace_dir: str) -> list:
    files = glob.glob(os.path.join(trace_dir, '**', '*.trace.json.gz'), recursive=True)
    if not files:
        raise RuntimeError(f'jax.profiler wrote no trace under {trace_dir}')
    with gzip.open(max(files, key=os.path.getmtime)) as f:
        events = json.load(f)['traceEvents']
    return [e for e in events if e.get('ph') == 'X' and 'hlo_op' in (e.get('args') or {})]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--agent', default='gciql', choices=['crl', 'gciql', 'cmd'])
    p.add_argument('--precision', default='float32', choices=['float32', 'bf16'])
    p.add_argument('--batch_size', type=int, default=1024)
    p.add_argument('--fused', type=int, default=8, help='Updates per lax.scan dispatch (train.py: 8).')
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--traced', type=int, default=2)
    p.add_argument('--top', type=int, default=25)
    p.add_argument('--json', default=None)
    args = p.parse_args()

    import jax

    from impls.runs.updates import scan_updates
    from impls.utils.precision import set_precision

    set_precision(args.precision)
    agent, batch = make_agent(args.agent, args.batch_size)
    stacked = jax.device_put({k: np.stack([np.asarray(v)] * args.fused) for k, v in batch.items()})
    hlo = parse_hlo(scan_updates.lower(agent, stacked).compile().as_text())
    state = {'agent': agent}

    def dispatch():
        state['agent'], info = scan_updates(state['agent'], stacked)
        jax.block_until_ready(info)

    for _ in range(args.warmup):
        dispatch()
    # How many cores the dispatch keeps busy, untraced: process CPU time over wall time. (The trace cannot tell: a
    # library fusion such as YNNPACK's spreads one op over the thread pool without an event per thread.)
    w, c = time.perf_counter(), time.process_time()
    for _ in range(args.traced):
        dispatch()
    cores_busy = (time.process_time() - c) / (time.perf_counter() - w)
    with tempfile.TemporaryDirectory() as trace_dir:
        jax.profiler.start_trace(trace_dir, create_perfetto_trace=True)
        t = time.perf_counter()
        for _ in range(args.traced):
            dispatch()
        wall = (time.perf_counter() - t) / (args.traced * args.fused)
        jax.profiler.stop_trace()
        events = trace_events(trace_dir)

    updates = args.traced * args.fused
    per_op = collections.defaultdict(float)
    for e in events:
        per_op[e['args']['hlo_op']] += e['dur'] / 1e3 / updates  # ms per update
    by_class = collections.defaultdict(float)
    for name, ms in per_op.items():
        by_class[classify(name, hlo)] += ms
    total = sum(per_op.values())
    top = []
    for name, ms in sorted(per_op.items(), key=lambda kv: -kv[1])[:args.top]:
        ins = hlo['instrs'].get(name, {})
        top.append(dict(op=name, kind=classify(name, hlo), ms=ms, share=ms / total, shape=ins.get('shape', ''),
                        op_name=ins.get('op_name', '')[-120:]))
    row = dict(cpu_description(), jax=jax.__version__, agent=args.agent, precision=args.precision,
               batch_size=args.batch_size, fused=args.fused, wall_ms_per_update=1e3 * wall,
               thread_ms_per_update=total, cores_busy=cores_busy, by_class={k: dict(ms=v, share=v / total) for k, v in
                                                     sorted(by_class.items(), key=lambda kv: -kv[1])}, top=top)
    print(f'{args.agent} {args.precision}: wall {1e3 * wall:.1f} ms per update (traced), thread time {total:.1f} ms '
          f'per update ({row["cpu"]}, {row["cores"]} cores)')
    for k, v in row['by_class'].items():
        print(f'  {k:12s} {v["ms"]:8.1f} ms  {100 * v["share"]:5.1f}%')
    print(f'  cores busy (process CPU time / wall time, untraced): {cores_busy:.2f} of {row["cores"]}')
    print(f'  heaviest {args.top} ops:')
    for t in top:
        print(f'  {t["ms"]:7.2f} ms {100 * t["share"]:5.1f}%  {t["kind"]:11s} {t["op"]:38s} {t["shape"][:40]:40s} '
              f'{t["op_name"][-70:]}')
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, 'w') as f:
            json.dump(row, f, indent=1)


if __name__ == '__main__':
    main()
