"""DreamerV3 training-update speed on CPU, ours vs the official danijar/dreamerv3, in the same run: milliseconds per
training update of each agent at the same model size and batch, and the ratio official / ours (> 1: ours is faster).

    python benchmarks/dreamer_reference_speed.py --dreamerv3 PATH_TO_DREAMERV3_CHECKOUT --python VENV/bin/python \
        [--updates 10] [--repeats 5] [--json OUT]

The official code is never vendored here: PATH is a checkout of github.com/danijar/dreamerv3, and --python an
interpreter of a virtual environment with its requirements.txt installed (CPU jax: `jax==0.4.33` in place of its
`jax[cuda12]==0.4.33` pin; the Atari and CUDA-compiler pins are not needed). The official agent runs in a worker
subprocess started with that interpreter (this same file, `--_worker`), which builds `dreamerv3.agent.Agent` as its
main.py's make_agent does, from configs.yaml's `defaults` + `size1m`, with jax.platform=cpu,
jax.compute_dtype=float32 (default bfloat16), replay_context 0 (default 1; see --replay_context) and the jax
profiler off, on a CartPole-like space: a 4-dim float vector observation and one discrete action of 2 values.
Ours (impls.agents.dreamer) runs in this process at the same sizes (size1m, blocks 8), batch 16 x 64.

Each side times the call its own training loop makes per update: the official `agent.train(carry, batch)` (its
compiled train step plus its per-step host work: the previous step's metrics fetched to numpy, a copy of the policy
parameters) and our jitted `agent.update(batch)`. Batches are random, made once per side and put on the device
before timing; a few updates compile / warm up first; then each repeat times `--updates` consecutive updates,
blocking on the resulting state once at the end (jax.block_until_ready), and reports ms per update. Repeats
alternate between the two sides (the worker waits on a pipe while ours runs and vice versa), so a load change on the
machine hits both; the figure is the median over repeats. The two sides run different jax versions (the official pin
vs ours), which is part of what is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

TAG = '@@DV3@@ '  # prefix of the worker's protocol lines on its private stdout
OBS_DIM, NUM_ACTIONS = 4, 2
SIZE = dict(deter=512, hidden=64, stoch=32, classes=4, blocks=8, units=64, depth=4)  # official size1m + its blocks


def random_arrays(seed, batch_size, length, n=4):
    """n random batches, the same on both sides: observations (B, T + 1, OBS_DIM) (o_0..o_T), actions (B, T), rewards
    (B, T), terminal (B, T) and is_first (B, T) (rare episode starts inside the sequences)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        out.append(dict(
            obs=rng.normal(size=(batch_size, length + 1, OBS_DIM)).astype(np.float32),
            actions=rng.integers(0, NUM_ACTIONS, size=(batch_size, length)).astype(np.int32),
            rewards=rng.normal(size=(batch_size, length)).astype(np.float32),
            terminal=rng.random((batch_size, length)) < 0.01,
            is_first=rng.random((batch_size, length)) < 0.01,
        ))
    return out


def time_steps(step, block, updates):
    t0 = time.perf_counter()
    for _ in range(updates):
        step()
    block()
    return (time.perf_counter() - t0) / updates * 1000.0


# ---- official side (runs under --python, in the worker subprocess) ---------------------------------------------------
def official_worker(args):
    proto = os.fdopen(os.dup(1), 'w', buffering=1)  # protocol on a private copy of stdout ...
    os.dup2(2, 1)  # ... and everything the official code prints goes to stderr (the parent's log file)
    sys.stdout = os.fdopen(1, 'w', buffering=1)

    def send(**kw):
        proto.write(TAG + json.dumps(kw) + '\n')

    path = os.path.abspath(args.dreamerv3)
    sys.path.insert(0, path)
    sys.path.insert(1, os.path.join(path, 'dreamerv3'))
    import elements
    import ruamel.yaml as yaml

    configs = yaml.YAML(typ='safe').load(elements.Path(os.path.join(path, 'dreamerv3', 'configs.yaml')).read())
    config = elements.Config(configs['defaults']).update(configs['size1m'])
    config = config.update({
        'jax.platform': 'cpu', 'jax.compute_dtype': 'float32', 'batch_size': args.batch_size,
        'batch_length': args.batch_length, 'replay_context': args.replay_context, 'seed': args.seed,
        'agent.imag_length': 15, 'logdir': tempfile.mkdtemp(prefix='dv3_logdir_'),
    })
    from dreamerv3.agent import Agent
    from embodied.jax import internal
    import jax

    obs_space = {
        'vector': elements.Space(np.float32, (OBS_DIM,)),
        'reward': elements.Space(np.float32),
        'is_first': elements.Space(bool),
        'is_last': elements.Space(bool),
        'is_terminal': elements.Space(bool),
    }
    act_space = {'action': elements.Space(np.int32, (), 0, NUM_ACTIONS)}
    t0 = time.perf_counter()
    agent = Agent(obs_space, act_space, elements.Config(  # as dreamerv3/main.py's make_agent
        **config.agent, logdir=config.logdir, seed=config.seed,
        jax=dict(config.jax, profiler=False),  # its profiler would trace updates 100-120
        batch_size=config.batch_size, batch_length=config.batch_length, replay_context=config.replay_context,
        report_length=config.report_length, replica=0, replicas=1))
    build_s = time.perf_counter() - t0  # includes its ahead-of-time compile of train and report

    B, T, C = args.batch_size, args.batch_length, args.replay_context
    batches = []
    for a in random_arrays(args.seed, B, T + C):
        data = {k: np.zeros((B, T + C, *s.shape), s.dtype) for k, s in agent.spaces.items()}  # consec 0, entries 0
        data.update(
            vector=a['obs'][:, 1:], reward=a['rewards'], is_first=a['is_first'], is_last=a['terminal'],
            is_terminal=a['terminal'], action=a['actions'],
            stepid=np.random.default_rng(args.seed).integers(0, 255, (B, T + C, 20)).astype(np.uint8))
        data['is_first'][:, 0] = True
        batches.append(internal.device_put(data, agent.train_sharded))
    state = dict(carry=agent.init_train(B), i=0)

    def step():
        i = state['i']
        batch = dict(batches[i % len(batches)], seed=agent._seeds(i, agent.train_mirrored))
        state['carry'], _, _ = agent.train(state['carry'], batch)
        state['i'] += 1

    block = lambda: jax.block_until_ready((agent.params, state['carry']))  # noqa: E731
    t0 = time.perf_counter()
    for _ in range(args.warmup):
        step()
    block()
    warmup_s = time.perf_counter() - t0

    names = ('dyn', 'enc', 'dec', 'rew', 'con', 'pol', 'val')  # the optimised modules (not slowval, opt state)
    params = sum(int(v.size) for k, v in agent.params.items() if k.split('/')[0] in names)
    try:
        cost = agent._train.cost_analysis()
        flops = float((cost[0] if isinstance(cost, (list, tuple)) else cost)['flops'])
    except Exception:  # noqa: BLE001
        flops = None
    rssm = dict(config.agent.dyn.rssm)
    send(kind='ready', jax=jax.__version__, jaxlib=getattr(__import__('jaxlib'), '__version__', '?'),
         devices=[str(d) for d in jax.devices()], params=params, flops=flops, build_s=build_s, warmup_s=warmup_s,
         config=dict(
             rssm={k: rssm[k] for k in ('deter', 'hidden', 'stoch', 'classes', 'blocks', 'norm', 'act', 'unimix',
                                        'imglayers', 'obslayers', 'dynlayers', 'free_nats')},
             enc_units=config.agent.enc.simple.units, enc_layers=config.agent.enc.simple.layers,
             dec_units=config.agent.dec.simple.units, dec_layers=config.agent.dec.simple.layers,
             policy_layers=config.agent.policy.layers, value_layers=config.agent.value.layers,
             rew_layers=config.agent.rewhead.layers, con_layers=config.agent.conhead.layers,
             units=config.agent.policy.units, imag_length=config.agent.imag_length,
             imag_last=config.agent.imag_last, batch_size=config.batch_size, batch_length=config.batch_length,
             replay_context=config.replay_context, compute_dtype=config.jax.compute_dtype,
             platform=config.jax.platform, opt=dict(config.agent.opt)))
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == 'quit':
            break
        if cmd[0] == 'time':
            send(kind='time', ms=time_steps(step, block, int(cmd[1])))


class Official:
    """The worker subprocess, driven over pipes."""

    def __init__(self, args, log_path):
        cmd = [args.python, os.path.abspath(__file__), '--_worker', '--dreamerv3', args.dreamerv3,
               '--batch_size', str(args.batch_size), '--batch_length', str(args.batch_length),
               '--replay_context', str(args.replay_context), '--warmup', str(args.warmup), '--seed', str(args.seed)]
        env = dict(os.environ, JAX_PLATFORMS='cpu')
        env.pop('PYTHONPATH', None)
        self.log_path = log_path
        self.log = open(log_path, 'w')
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     bufsize=1, env=env, cwd=tempfile.gettempdir())

    def recv(self):
        for line in self.proc.stdout:
            if line.startswith(TAG):
                return json.loads(line[len(TAG):])
        self.proc.wait()
        self.log.flush()
        with open(self.log_path) as f:
            tail = f.read()[-6000:]
        raise RuntimeError(f'the official worker exited (rc {self.proc.returncode}); its log '
                           f'{self.log_path} ends with:\n{tail}')

    def time(self, updates):
        self.proc.stdin.write(f'time {updates}\n')
        self.proc.stdin.flush()
        return self.recv()['ms']

    def close(self):
        try:
            self.proc.stdin.write('quit\n')
            self.proc.stdin.flush()
            self.proc.wait(timeout=60)
        except Exception:  # noqa: BLE001
            self.proc.kill()
        self.log.close()


# ---- our side (this process) -----------------------------------------------------------------------------------------
class Ours:
    def __init__(self, args):
        import jax
        from impls.agents import dreamer

        self.jax = jax
        config = dreamer.get_config()
        config.action_dim = NUM_ACTIONS
        config.batch_size, config.sequence_length = args.batch_size, args.batch_length
        for k in ('deter', 'hidden', 'stoch', 'classes', 'blocks', 'units'):
            config[k] = SIZE[k]
        config.cnn_depth = SIZE['depth']
        config.imag_horizon = 15
        self.config = config
        example = dict(observations=np.zeros((1, OBS_DIM), np.float32), actions=np.zeros((1,), np.int32))
        t0 = time.perf_counter()
        self.agent = dreamer.DreamerAgent.create(args.seed, example, config)
        B, T = args.batch_size, args.batch_length
        self.batches = []
        for a in random_arrays(args.seed, B, T):
            batch = dict(observations=a['obs'][:, :-1], next_observations=a['obs'][:, 1:], actions=a['actions'],
                         rewards=a['rewards'], terminated=a['terminal'], is_first=a['is_first'].copy(),
                         age=np.arange(B, dtype=np.int32) * T)
            batch['is_first'][:, 0] = True
            self.batches.append(jax.device_put(batch))
        self.i = 0
        t1 = time.perf_counter()
        for _ in range(args.warmup):
            self.step()
        self.block()
        self.build_s, self.warmup_s = t1 - t0, time.perf_counter() - t1
        self.params = int(sum(x.size for x in jax.tree.leaves(self.agent.params)))

    def step(self):
        self.agent, _ = self.agent.update(self.batches[self.i % len(self.batches)])
        self.i += 1

    def block(self):
        self.jax.block_until_ready(self.agent)

    def time(self, updates):
        return time_steps(self.step, self.block, updates)


def mismatches(off_cfg, ours_cfg, off_jax, ours_jax):
    """What could not be matched between the two configurations (and what differs in the work done per update)."""
    out = [
        f'jax versions differ: official {off_jax} (its requirements.txt pin, CPU build) vs ours {ours_jax}; XLA CPU '
        'code generation differs between them.',
        'replay_context: official run with 0 (its default 1: 1 replayed step of stored latents before each sequence); '
        'with 0 it trains from the carried state of the previous batch, ours starts each sequence from zeros.',
        'compute dtype: official set to float32 (its default bfloat16, GPU-oriented); ours float32.',
        'blocks: official 8-block GRU (its default for every size); ours set to 8 here (our default is 1, a dense '
        'GRU).',
        'per-update work outside the math: official agent.train also fetches the previous step\'s metrics to numpy '
        'and copies the policy parameters (enable_policy, as in its training loop); our update returns metrics on '
        'the device.',
        'transition layout: ours trains on (o_t, a_t, r_t, o_{t+1}) and, besides the T scanned posterior states, '
        'encodes 2T observations and builds and decodes the state of o_t from zeros at every step (masked to '
        'episode starts), so its encoder and decoder run on 2 x B x T inputs; official encodes and decodes B x T.',
    ]
    for k in ('deter', 'hidden', 'stoch', 'classes', 'blocks'):
        if off_cfg['rssm'][k] != ours_cfg[k]:
            out.append(f'rssm.{k}: official {off_cfg["rssm"][k]} vs ours {ours_cfg[k]}')
    if off_cfg['units'] != ours_cfg['units']:
        out.append(f'units: official {off_cfg["units"]} vs ours {ours_cfg["units"]}')
    for k, ok in (('enc_layers', 'mlp_layers'), ('dec_layers', 'mlp_layers'), ('policy_layers', 'ac_layers'),
                  ('value_layers', 'ac_layers')):
        if off_cfg[k] != ours_cfg[ok]:
            out.append(f'{k}: official {off_cfg[k]} vs ours {ok}={ours_cfg[ok]}')
    if off_cfg['imag_length'] != ours_cfg['imag_horizon'] or off_cfg['imag_last'] != ours_cfg['imag_last']:
        out.append(f'imagination: official length {off_cfg["imag_length"]} last {off_cfg["imag_last"]} vs ours '
                   f'{ours_cfg["imag_horizon"]} / {ours_cfg["imag_last"]}')
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--dreamerv3', required=True, help='A checkout of github.com/danijar/dreamerv3.')
    p.add_argument('--python', help='Python of a venv with the official requirements (CPU jax).')
    p.add_argument('--updates', type=int, default=10, help='Updates timed per repeat.')
    p.add_argument('--repeats', type=int, default=5, help='Timed repeats per side (alternating); the median counts.')
    p.add_argument('--warmup', type=int, default=3, help='Untimed updates first (compilation, warm-up).')
    p.add_argument('--batch_size', type=int, default=16)
    p.add_argument('--batch_length', type=int, default=64)
    p.add_argument('--replay_context', type=int, default=0, help='Official replay_context (its default is 1).')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--json', help='Write the results here.')
    p.add_argument('--official_log', help="The official worker's output (default: a temporary file).")
    p.add_argument('--_worker', action='store_true', help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._worker:
        return official_worker(args)
    if not args.python:
        p.error('--python is required')
    if not os.path.isfile(os.path.join(args.dreamerv3, 'dreamerv3', 'agent.py')):
        p.error(f'--dreamerv3 {args.dreamerv3}: no dreamerv3/agent.py there')

    log_path = args.official_log or tempfile.mkstemp(prefix='dv3_official_', suffix='.log')[1]
    print(f'official worker: {args.python} (log {log_path})', flush=True)
    official = Official(args, log_path)
    try:
        ready = official.recv()
        print(f'official: jax {ready["jax"]}, {ready["params"]:,} params, built+compiled in {ready["build_s"]:.1f}s, '
              f'{args.warmup} warm-up updates in {ready["warmup_s"]:.1f}s', flush=True)
        ours = Ours(args)
        import jax
        print(f'ours:     jax {jax.__version__}, {ours.params:,} params, built in {ours.build_s:.1f}s, {args.warmup} '
              f'warm-up updates (incl. compile) in {ours.warmup_s:.1f}s', flush=True)
        off_ms, ours_ms = [], []
        for r in range(args.repeats):
            off_ms.append(official.time(args.updates))
            ours_ms.append(ours.time(args.updates))
            print(f'repeat {r + 1}/{args.repeats}: official {off_ms[-1]:.1f} ms/update, ours {ours_ms[-1]:.1f} '
                  f'ms/update', flush=True)
    finally:
        official.close()

    off, our = statistics.median(off_ms), statistics.median(ours_ms)
    ratio = off / our
    commit = subprocess.run(['git', '-C', args.dreamerv3, 'rev-parse', 'HEAD'], capture_output=True,
                            text=True).stdout.strip() or None
    notes = mismatches(ready['config'], dict(ours.config), f'{ready["jax"]} (jaxlib {ready["jaxlib"]})',
                       jax.__version__)
    print(f'\nofficial {off:.1f} ms/update, ours {our:.1f} ms/update (median of {args.repeats} x {args.updates} '
          f'updates, batch {args.batch_size} x {args.batch_length}, CPU)')
    print(f'ratio official / ours: {ratio:.2f}  (> 1: ours is faster)')
    print(f'params: official {ready["params"]:,} (dyn enc dec rew con pol val), ours {ours.params:,} (wm actor critic)')
    if ready.get('flops'):
        print(f'official train step: {ready["flops"]:.2e} FLOPs (XLA cost analysis)')
    print('config differences:')
    for line in notes:
        print(f'  - {line}')
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, 'w') as f:
            json.dump(dict(
                official_ms=off, ours_ms=our, ratio=ratio, official_ms_repeats=off_ms, ours_ms_repeats=ours_ms,
                updates=args.updates, repeats=args.repeats, warmup=args.warmup, batch_size=args.batch_size,
                batch_length=args.batch_length, official_jax=ready['jax'], official_jaxlib=ready['jaxlib'],
                ours_jax=jax.__version__, official_params=ready['params'], ours_params=ours.params,
                official_flops=ready.get('flops'), official_build_s=ready['build_s'],
                official_warmup_s=ready['warmup_s'], ours_build_s=ours.build_s, ours_warmup_s=ours.warmup_s,
                official_commit=commit, official_config=ready['config'], ours_config=dict(ours.config),
                mismatches=notes, machine=dict(platform=platform.platform(), cpus=os.cpu_count())), f, indent=2)
        print(f'wrote {args.json}')


if __name__ == '__main__':
    sys.exit(main())
