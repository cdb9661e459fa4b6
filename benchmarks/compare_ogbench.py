"""Ours vs OGBench's own implementations, side by side: the same agent, batch, batch size and networks
(OGBench's defaults: batch 1024, 3x512 MLPs, latent 512), each implementation in its own process,
alternating, updates per second after warm-up (median over repeats), the process's peak resident memory,
and the loss of both on the same batch from the same parameters.

    python benchmarks/compare_ogbench.py --ogbench_impls PATH/TO/ogbench/impls \\
        [--ogbench_python OTHER_VENV/bin/python] [--agents crl gciql cmd] [--repeats 3] [--updates 10]
    python benchmarks/compare_ogbench.py --ogbench_impls PATH --pixels --batch_size 64 --agents crl   # visual
    python benchmarks/compare_ogbench.py --ogbench_impls PATH --precisions float32 bf16 --out ...   # ours in bf16 too

--pixels: the visual driving shapes (uint8 64x64 frames, 4 stacked, 5 discrete actions) with impala_small
encoders on both sides and the AWR actor (OGBench's DDPG+BC takes continuous actions only); ours without
on-device random crops, since OGBench crops on the host outside the timed update.

PATH is a checkout of OGBench's `impls/` (never vendored here). CMD is compared with the public fork that
adds `agents/cmd.py` to it (ours with --agent.goal_action=roll --agent.logit_bias=false, the fork's
formulation). OGBench's code needs distrax; --ogbench_python names a Python that has it (ours does not depend on it).

The loss check: the OGBench process saves its initial parameters and its total loss on the batch; ours
loads those parameters (module names mapped: see CANONICAL and THEIR_PREFIXES) and computes its total loss
on the same batch. Timing: each process builds its agent, runs 2 warm-up updates (compilation), then
times --updates single updates (blocking on the result); ours is then also timed as train.py runs it,
--fused updates per lax.scan dispatch (the reported figure; the single-update time is kept as
ms_per_update_single). OGBench's main.py calls agent.update once per step.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
THEIR_CLASSES = {'crl': 'CRLAgent', 'gciql': 'GCIQLAgent', 'cmd': 'CMDAgent'}
# Module names that differ only in spelling: OGBench's MLP wrappers (`actor_net`, `value_net`) are our
# `MLP_0` / `VmapMLP_0` (ensembles), its actor head `mean_net` our `Dense_0`.
CANONICAL = {'actor_net': 'net', 'value_net': 'net', 'MLP_0': 'net', 'VmapMLP_0': 'net', 'mean_net': 'Dense_0'}


# Whole modules named differently: the fork's one (state, action) network for both CMD sides is
# `modules_critic/phi`; ours, with goal_action=roll, is `modules_phi`.
THEIR_PREFIXES = {'cmd': {'modules_critic/phi/': 'modules_phi/net/'}}


def canonical(key):
    return '/'.join(CANONICAL.get(part, part) for part in key.split('/'))


def check_impls(path, agents):
    """A clear message when PATH is not OGBench's impls/ (or lacks the fork's cmd.py)."""
    need = ['utils/flax_utils.py', 'utils/networks.py'] + [f'agents/{a}.py' for a in agents]
    missing = [n for n in need if not os.path.isfile(os.path.join(path, n))]
    if missing:
        hint = (" (agents/cmd.py is in the CMD authors' fork of OGBench, not in OGBench itself; drop cmd from "
                "--agents or point at the fork's impls/)") if missing == ['agents/cmd.py'] else ''
        sys.exit(f'--ogbench_impls {path!r} is not a checkout of OGBench\'s impls/ directory: missing '
                 f'{", ".join(missing)}{hint}. Clone github.com/seohongpark/ogbench and pass its impls/ folder.')


NUM_PIXEL_ACTIONS = 5


def make_pixel_batch(batch_size, size=64, channels=12, seed=0):
    """One batch of uint8 frames (4 stacked RGB frames on the channel axis) and discrete actions: the visual
    driving shapes (impls.data.synthetic.pixel_driving with --frame_stack 4)."""
    rng = np.random.default_rng(seed)
    frames = lambda: rng.integers(0, 256, (batch_size, size, size, channels), dtype=np.uint8)  # noqa: E731
    return dict(observations=frames(), next_observations=frames(), value_goals=frames(), actor_goals=frames(),
                actions=rng.integers(0, NUM_PIXEL_ACTIONS, batch_size).astype(np.int32),
                rewards=-(rng.random(batch_size) < 0.9).astype(np.float32),
                masks=(rng.random(batch_size) < 0.9).astype(np.float32))


def make_batch(batch_size, obs_dim=2, action_dim=2, seed=0):
    """One batch with every key CRL, GCIQL and CMD read (pointmaze shapes)."""
    rng = np.random.default_rng(seed)
    f = lambda *s: rng.normal(size=s).astype(np.float32)  # noqa: E731
    return dict(observations=f(batch_size, obs_dim), next_observations=f(batch_size, obs_dim),
                actions=np.clip(f(batch_size, action_dim), -1, 1), value_goals=f(batch_size, obs_dim),
                actor_goals=f(batch_size, obs_dim), rewards=-(rng.random(batch_size) < 0.9).astype(np.float32),
                masks=(rng.random(batch_size) < 0.9).astype(np.float32))


def flat_params(tree, prefix=()):
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict) or hasattr(v, 'items'):
            out.update(flat_params(v, prefix + (k,)))
        else:
            out['/'.join(prefix + (k,))] = np.asarray(v)
    return out


def unflatten(flat):
    tree = {}
    for key, value in flat.items():
        node = tree
        *parents, leaf = key.split('/')
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return tree


def time_updates(agent, batch, updates):
    import jax

    for _ in range(2):
        agent, info = agent.update(batch)
    jax.block_until_ready(agent)
    times = []
    for _ in range(updates):
        t = time.perf_counter()
        agent, info = agent.update(batch)
        jax.block_until_ready(agent)
        times.append(time.perf_counter() - t)
    return times


def worker(args):
    import jax

    batch = dict(np.load(args.batch))
    ex_obs, ex_act = batch['observations'][:1], batch['actions'][:1]
    result = {}
    if args.worker == 'theirs':
        sys.path.insert(0, os.path.abspath(args.ogbench_impls))
        module = importlib.import_module(f'agents.{args.agent}')
        config = module.get_config()
        extra = (1_000_000,) if args.agent == 'cmd' else ()  # the fork's create() also takes train_steps
        if args.pixels:  # OGBench's visual settings; its discrete create() reads the largest action
            config.encoder, config.discrete, config.actor_loss = 'impala_small', True, 'awr'
            ex_act = np.array([NUM_PIXEL_ACTIONS - 1], np.int32)
        agent = getattr(module, THEIR_CLASSES[args.agent]).create(0, ex_obs, ex_act, config, *extra)
        loss, info = agent.total_loss(batch, agent.network.params, rng=jax.random.PRNGKey(1))
        result['loss_terms'] = {k: float(v) for k, v in info.items() if 'loss' in k}
        np.savez(args.params, **flat_params(jax.device_get(agent.network.params)))
        result['loss'] = float(loss)
    else:
        sys.path.insert(0, ROOT)
        from impls.agents import get_agent
        from impls.utils.precision import set_precision

        set_precision(args.precision)  # before the agent is built: its modules read the policy

        spec = get_agent(args.agent)
        config = spec.get_config()
        if args.agent == 'cmd':
            config.goal_action, config.logit_bias = 'roll', False
        if args.pixels:  # OGBench crops on the host, outside the timed update: no on-device crops here either
            config.encoder, config.discrete, config.p_aug, config.actor_loss = 'impala_small', True, 0.0, 'awr'
        config.action_dim = NUM_PIXEL_ACTIONS if args.pixels else ex_act.shape[-1]
        agent = spec.agent_cls.create(0, dict(observations=ex_obs, actions=ex_act), config)
        if args.params and os.path.exists(args.params):
            theirs = {}
            for k, v in np.load(args.params).items():
                for old, new in THEIR_PREFIXES.get(args.agent, {}).items():
                    k = new + k[len(old):] if k.startswith(old) else k
                theirs[canonical(k)] = v
            ours = {canonical(k): k for k in flat_params(jax.device_get(agent.network.params))}
            ours_shapes = {canonical(k): v.shape for k, v in flat_params(jax.device_get(agent.network.params)).items()}
            if set(theirs) == set(ours) and all(theirs[k].shape == ours_shapes[k] for k in ours):
                params = jax.tree.map(jax.numpy.asarray, unflatten({ours[k]: theirs[k] for k in ours}))
                # The loss reads target networks from the agent's own parameters: load them there too.
                loaded = agent.replace(network=agent.network.replace(params=params))
                loss, info = loaded.total_loss(batch, params, rng=jax.random.PRNGKey(1))
                result['loss'] = float(loss)
                result['loss_terms'] = {k: float(v) for k, v in info.items() if 'loss' in k}
            else:
                result['loss'] = None
                result['param_mismatch'] = sorted(set(theirs) ^ set(ours))[:6]
    times = time_updates(agent, batch, args.updates)
    result['ms_per_update_single'] = 1e3 * float(np.median(times))
    if args.worker == 'ours' and args.fused > 1:
        # As train.py runs: --updates_per_dispatch updates fused into one lax.scan dispatch.
        from impls.runs.updates import scan_updates

        stacked = jax.device_put({k: np.stack([v] * args.fused) for k, v in batch.items()})
        fused = []
        for i in range(max(2, args.updates // args.fused) + 1):
            t = time.perf_counter()
            agent, info = scan_updates(agent, stacked)
            jax.block_until_ready(agent)
            if i:  # the first call compiles
                fused.append((time.perf_counter() - t) / args.fused)
        times = fused
    result.update(ms_per_update=1e3 * float(np.median(times)),
                  peak_rss_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
                  devices=str(jax.devices()))
    print('RESULT ' + json.dumps(result))


def run_worker(python, which, agent, args, batch_path, params_path, precision='float32'):
    cmd = [python, os.path.abspath(__file__), '--worker', which, '--agent', agent, '--batch', batch_path,
           '--params', params_path, '--updates', str(args.updates), '--ogbench_impls', args.ogbench_impls,
           '--fused', str(args.fused), '--precision', precision] + (['--pixels'] if args.pixels else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith('RESULT ')]
    if proc.returncode != 0 or not lines:
        sys.exit(f'{which} {agent} failed ({proc.returncode}):\n{proc.stderr[-3000:]}')
    return json.loads(lines[-1][7:])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--ogbench_impls', required=True)
    p.add_argument('--ogbench_python', default=sys.executable)
    p.add_argument('--agents', nargs='+', default=['crl', 'gciql'], choices=sorted(THEIR_CLASSES))
    p.add_argument('--batch_size', type=int, default=1024)
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--updates', type=int, default=10)
    p.add_argument('--fused', type=int, default=8,
                   help='time ours as train.py runs it: this many updates per lax.scan dispatch (1: single updates)')
    p.add_argument('--pixels', action='store_true',
                   help='uint8 64x64 frames, 4 stacked (12 channels), 5 discrete actions, impala_small encoders on both '
                        'sides (use with --batch_size 64)')
    p.add_argument('--precisions', nargs='+', default=['float32'], choices=['float32', 'bf16'],
                   help="ours at each of these matmul precisions (train.py's --precision), each beside OGBench's float32")
    p.add_argument('--precision', default='float32', help=argparse.SUPPRESS)
    p.add_argument('--out', default=None, help='JSON results (default: benchmarks/results/compare_ogbench[_pixels].json)')
    p.add_argument('--worker', choices=['ours', 'theirs'], help=argparse.SUPPRESS)
    p.add_argument('--agent', help=argparse.SUPPRESS)
    p.add_argument('--batch', help=argparse.SUPPRESS)
    p.add_argument('--params', help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    check_impls(args.ogbench_impls, args.agents)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        batch_path = os.path.join(tmp, 'batch.npz')
        np.savez(batch_path, **(make_pixel_batch(args.batch_size) if args.pixels else make_batch(args.batch_size)))
        for agent in args.agents:
            params_path = os.path.join(tmp, f'{agent}_params.npz')
            # 'ours' is float32; other precisions are 'ours_<precision>'. All alternate with OGBench within a repeat.
            label = {pr: 'ours' if pr == 'float32' else f'ours_{pr}' for pr in args.precisions}
            runs = {'theirs': [], **{label[pr]: [] for pr in args.precisions}}
            for r in range(args.repeats):
                jobs = [('theirs', args.ogbench_python, 'float32')]
                jobs += [(label[pr], sys.executable, pr) for pr in args.precisions]
                for which, python, precision in jobs:
                    out = run_worker(python, 'theirs' if which == 'theirs' else 'ours', agent, args, batch_path,
                                     params_path, precision)
                    runs[which].append(out)
                    print(f'{agent} repeat {r} {which:>10}: {out["ms_per_update"]:8.1f} ms/update, peak RSS '
                          f'{out["peak_rss_gb"]:.2f} GB, loss {out.get("loss")}', flush=True)
            med = {w: float(np.median([x['ms_per_update'] for x in v])) for w, v in runs.items()}
            peak = {w: float(np.max([x['peak_rss_gb'] for x in v])) for w, v in runs.items()}
            loss_t = runs['theirs'][0].get('loss')
            results[agent] = dict(ms_per_update=med, peak_rss_gb=peak, loss_theirs=loss_t, runs=runs)
            for pr in args.precisions:
                w = label[pr]
                loss_o = runs[w][0].get('loss')
                suffix = '' if pr == 'float32' else f'_{pr}'
                results[agent].update({
                    f'speedup{suffix}': med['theirs'] / med[w], f'loss_ours{suffix}': loss_o,
                    f'loss_rel_diff{suffix}': None if loss_o is None else abs(loss_o - loss_t) / max(abs(loss_t), 1e-12),
                    f'param_mismatch{suffix}': runs[w][0].get('param_mismatch')})
                print(f'{agent}: ours ({pr}) {med[w]:.1f} ms vs OGBench (float32) {med["theirs"]:.1f} ms per update -> '
                      f'{med["theirs"] / med[w]:.2f}x; peak RSS ours {peak[w]:.2f} GB vs {peak["theirs"]:.2f} '
                      f'GB; loss on the same batch and parameters: ours {loss_o} vs OGBench {loss_t}', flush=True)
    args.out = args.out or os.path.join(ROOT, 'benchmarks', 'results',
                                        'compare_ogbench_pixels.json' if args.pixels else 'compare_ogbench.json')
    results['meta'] = dict(batch_size=args.batch_size, pixels=args.pixels, repeats=args.repeats, updates=args.updates,
                           precisions=args.precisions,
                           date=time.strftime('%Y-%m-%d'), cpu_count=os.cpu_count())
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(results, f, indent=2)


if __name__ == '__main__':
    main()
