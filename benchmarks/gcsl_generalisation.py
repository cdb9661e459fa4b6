"""Fit vs generalisation of GCSL's learners on one fixed set of episodes (issue 15): the training loss, the loss on
held-out episodes of the same distribution, and the success the policy reaches.

    python benchmarks/gcsl_generalisation.py [--train_episodes 200] [--heldout_episodes 100] [--updates 9000]
        [--variant NAME=PRESET[:KEY=VALUE,...] ...] [--eval_episodes 100] [--json benchmarks/results/...]

Episodes are collected once with uniformly random actions (GCSL's first 10k steps, 200 episodes of 50 steps on
LunarLander goals), so every learner sees the same data; each variant is created from its preset's agent settings
(configs/PRESET.py) with the KEY=VALUE overrides, trained for `--updates` updates on hindsight batches of the
training episodes (relabelled as in the online loop, impls.runs.goal_online.relabel), and measured every
`--every` updates: cross-entropy and accuracy on fresh batches from the training episodes and from the held-out
episodes, then greedy success over `--eval_episodes` episodes at the end. A learner whose held-out loss climbs
while its training loss falls is memorising the episodes, not the goal-reaching rule.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def parse_variant(text):
    name, _, rest = text.partition('=')
    preset, _, overrides = rest.partition(':')
    pairs = dict(kv.split('=', 1) for kv in overrides.split(';') if kv) if overrides else {}
    return name, preset, pairs


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--env_name', default='impls/LunarLanderGoal-v0')
    p.add_argument('--train_episodes', type=int, default=200)
    p.add_argument('--heldout_episodes', type=int, default=100)
    p.add_argument('--updates', type=int, default=9000)
    p.add_argument('--every', type=int, default=1500)
    p.add_argument('--eval_episodes', type=int, default=100)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--variant', action='append', default=None,
                   help="NAME=PRESET[:KEY=VALUE;KEY=VALUE] (agent keys; ';' between pairs)")
    p.add_argument('--json', default=None)
    args = p.parse_args()
    variants = [parse_variant(v) for v in (args.variant or ['mlp=gcsl_lunar', 'transformer=gcsl_transformer_lunar'])]

    import gymnasium
    import jax
    import optax

    import impls.envs.goal_envs  # noqa: F401  registers the environment
    from impls.agents import get_agent
    from impls.envs.goal_envs import discretize, gym_goal_spec
    from impls.runs.goal_online import _gym_episodes, _gym_evaluate, buffer_add, buffer_init, make_train, relabel
    from impls.utils.config import apply_overrides, load_preset

    env = gymnasium.make(args.env_name)
    env_spec = gym_goal_spec(env)
    table = discretize(env_spec.action_space, 3, 256)
    rng = np.random.default_rng(args.seed)

    def random_act(o, g, carry):
        return rng.integers(0, len(table), len(o)), carry

    def collect(n, first_seed):
        obs, ach, acts = [], [], []
        for e in range(n):
            o, a, u, _, _ = _gym_episodes([env], random_act, env_spec, table, [first_seed + e])
            obs.append(o), ach.append(a), acts.append(u)
        buf = buffer_init(n, env_spec.horizon, env_spec.obs_dim, env_spec.goal_dim)
        return buffer_add(buf, np.concatenate(obs), np.concatenate(ach), np.concatenate(acts))

    t0 = time.perf_counter()
    train_buf = collect(args.train_episodes, 10_000 * args.seed)
    heldout_buf = collect(args.heldout_episodes, 10_000 * args.seed + 5_000)
    print(f'collected {args.train_episodes} + {args.heldout_episodes} random episodes in {time.perf_counter() - t0:.0f} s',
          flush=True)

    rows = []
    for name, preset, overrides in variants:
        preset_dict = load_preset(preset, os.path.join(ROOT, 'configs'))
        spec = get_agent(preset_dict['algorithm'])
        config = spec.get_config()
        apply_overrides(config, {k: v for k, v in preset_dict.get('agent', {}).items()})
        apply_overrides(config, overrides)
        with config.unlocked():
            config.action_dim = len(table)
        example = dict(observations=np.zeros((1, env_spec.obs_dim), np.float32),
                       goals=np.zeros((1, env_spec.goal_dim), np.float32), actions=np.zeros((1,), np.int32))
        agent = spec.agent_cls.create(args.seed, example, config)
        context = int(spec.agent_cls.replay(config).get('context', 0))
        train = jax.jit(make_train(int(config.batch_size), 0, context), static_argnums=3)

        @jax.jit
        def measure(agent, buf, key):
            batch = relabel(buf, key, 4096, 0, context)
            if context:
                logits = agent.forward(agent.params, batch['observations'], batch['valid'], batch['goals'])['logits']
            else:
                logits = agent.logits(batch['observations'], batch['goals'])
            ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch['actions']).mean()
            return ce, (logits.argmax(-1) == batch['actions']).mean()

        key = jax.random.PRNGKey(args.seed + 1)
        curve, t0 = [], time.perf_counter()
        for done in range(args.every, args.updates + 1, args.every):
            key, k_train, k_a, k_b = jax.random.split(key, 4)
            agent, _ = train(agent, train_buf, k_train, args.every)
            (tr_ce, tr_acc), (ho_ce, ho_acc) = measure(agent, train_buf, k_a), measure(agent, heldout_buf, k_b)
            curve.append(dict(updates=done, train_ce=float(tr_ce), train_acc=float(tr_acc), heldout_ce=float(ho_ce),
                              heldout_acc=float(ho_acc)))
            print(f'{name}: {done} updates: train CE {tr_ce:.3f} (acc {tr_acc:.3f}), held-out CE {ho_ce:.3f} '
                  f'(acc {ho_acc:.3f})', flush=True)
        act_eval = jax.jit(lambda a, o, g, c: a.act(c, o, g, None, 'eval'))
        success, distance = _gym_evaluate(env, agent, act_eval, env_spec, table, args.eval_episodes, 777_000)
        print(f'{name}: success {success:.3f} over {args.eval_episodes} greedy episodes '
              f'({time.perf_counter() - t0:.0f} s)', flush=True)
        rows.append(dict(name=name, preset=preset, overrides=overrides, curve=curve, success=success,
                         final_distance=distance, seconds=time.perf_counter() - t0))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(args=vars(args), results=rows), f, indent=1)


if __name__ == '__main__':
    main()
