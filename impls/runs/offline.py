"""The offline goal-conditioned training loop (CRL, GCIQL, ...), driven by train.py.

Hot path: a background thread builds the next stacks of batches (numpy, pure functions of
(seed, step)) and puts them on the device while the current stack trains in one jitted call
(`lax.scan` over `updates_per_dispatch` updates). The host synchronises only at log, eval and
checkpoint steps, which are segment boundaries of a plan fixed up front.
"""

from __future__ import annotations

import os
import time

import jax
import numpy as np

from impls.data.datasets import Dataset, DatasetError, load_dataset, split_episodes, val_path_for
from impls.data.loader import BlockShuffleIndices, Prefetcher, UniformIndices, make_batch, stacked_batches
from impls.data.sampler import GoalSampler
from impls.envs.ogbench import make_eval_env, ogbench_env_for
from impls.health import health_context
from impls.health.probe import goal_sensitivity, probe_batch
from impls.runs.session import (RunSession, TrainingError, agent_config, due, example_spec, make_monitor,
                                 make_plan)
from impls.runs.updates import (SeedMemoryError, check_seed_memory, scan_seed_updates, scan_updates, stack_agents,
                                unstack_agent)
from impls.utils.checkpoints import json_safe
from impls.utils.sharding import (ShardingError, check_divisible, data_mesh, host_local, is_primary, replicate,
                                  shard_batch)

DEFAULT_TRAIN_STEPS = 20_000
# What the end-of-run summary prints, when the agent logs it.
SUMMARY_KEYS = ('training/critic/loss', 'training/critic/categorical_accuracy', 'training/value/loss',
                'training/actor/loss', 'training/actor/q_loss_raw', 'training/actor/bc_loss', 'validation/critic/loss')


def resolve_dataset(args, env_name) -> tuple[Dataset, Dataset | None]:
    path = args.dataset_path
    if path is None:
        path = os.path.join(args.dataset_dir, f'{env_name}.npz')
        if not os.path.exists(path):
            from impls.data.generate import generate

            print(f'No dataset at {path}: generating {args.generate_episodes} episodes of {env_name} locally.')
            generate(env_name, args.generate_episodes, args.dataset_dir, seed=0, progress=not args.no_progress)
    train = load_dataset(path)
    val_path = args.val_dataset_path or val_path_for(path)
    val = load_dataset(val_path) if os.path.exists(val_path) else None
    if args.val_dataset_path and val is None:
        raise DatasetError(f'--val_dataset_path {val_path} does not exist.')
    if args.val_fraction:
        if val is not None:
            raise DatasetError(f'--val_fraction holds out episodes of the training file, but {val_path} is already '
                               f'the validation data; pass one of the two.')
        train, val = split_episodes(train, args.val_fraction)
        print(f'Validation: {val.path}, held out of training ({val.num_valid} transitions).')
    return train, val


def dataset_stem(path: str) -> str:
    """'data/pointmaze-medium-navigate-v0.npz' -> 'pointmaze-medium-navigate-v0' (a '-val' suffix dropped)."""
    stem = os.path.basename(os.path.normpath(path))
    stem = stem[:-4] if stem.endswith('.npz') else stem
    return stem[:-4] if stem.endswith('-val') else stem


def resolve_env(args):
    """The evaluation environment: --env_name, else the OGBench env the dataset file is named after, else None
    (a dataset of the user's own, e.g. driving frames with no simulator: training without evaluation)."""
    if args.env_name is not None or args.dataset_path is None:
        if args.env_name is None:
            raise TrainingError('no --dataset_path and no --env_name: pass the dataset to train on (--dataset_path '
                                'PATH.npz), or an OGBench env to generate one for (--env_name pointmaze-medium-navigate-v0).')
        return args.env_name
    env_name = ogbench_env_for(dataset_stem(args.dataset_path))
    if env_name is None and args.eval_episodes > 0:
        print(f'No environment: {args.dataset_path} is not named after an OGBench env and --env_name is not set, '
              f'so evaluation is off (pass --env_name to evaluate in an OGBench env).')
    return env_name


def build_config(args, spec, dataset: Dataset):
    config = agent_config(args, spec)
    overrides = args.agent_overrides
    if 'discrete' in overrides and bool(config.discrete) != dataset.discrete:
        kind = 'integer (discrete)' if dataset.discrete else 'float (continuous)'
        raise DatasetError(
            f'--agent.discrete={config.discrete} but {dataset.path} has {kind} actions of dtype '
            f'{dataset["actions"].dtype}; drop --agent.discrete (it is set from the data) or convert the actions.'
        )
    with config.unlocked():  # set from the data
        config.discrete = dataset.discrete
        config.action_dim = dataset.action_dim()
    encoder = config.get('encoder')
    if dataset.pixels and encoder is None and 'encoder' not in overrides:
        with config.unlocked():
            config.encoder = encoder = 'impala_small'
        print(f'{dataset.path} has uint8 image observations {dataset.observation_shape}: using the impala_small image '
              f'encoder (--agent.encoder=impala|impala_small|impala_debug to choose; --preset cmd_driving is the '
              f'visual driving setting: frame stack 4, block-shuffle loader, batch 64, random crops).')
    if dataset.pixels and encoder is None:
        raise DatasetError(
            f'{dataset.path} has uint8 image observations {dataset.observation_shape} but --agent.encoder=None asks '
            f'for no image encoder; use --agent.encoder=impala_small (or --preset cmd_driving).'
        )
    if not dataset.pixels and encoder is not None:
        raise DatasetError(
            f'--agent.encoder={encoder} expects uint8 images but {dataset.path} has {dataset["observations"].dtype} '
            f'state observations {dataset.observation_shape}; drop --agent.encoder.'
        )
    return config


def check_env_matches(env_name: str, dataset: Dataset):
    """The evaluation env must take the dataset's observations (and goals) and actions."""
    import gymnasium

    env = make_eval_env(env_name)
    obs_shape = tuple(env.observation_space.shape)
    if obs_shape != dataset.observation_shape:
        raise DatasetError(
            f'--env_name {env_name} has observations (and goals) of shape {obs_shape} but {dataset.path} has '
            f'{dataset.observation_shape}; use the dataset of that environment, or --eval_episodes 0.'
        )
    env_discrete = isinstance(env.action_space, gymnasium.spaces.Discrete)
    if env_discrete != dataset.discrete:
        raise DatasetError(
            f'--env_name {env_name} has a {type(env.action_space).__name__} action space but {dataset.path} has '
            f'{dataset["actions"].dtype} actions; discrete actions must be integers, continuous ones floats.'
        )
    if not env_discrete:
        env_dim, data_shape = int(np.prod(env.action_space.shape)), dataset['actions'].shape[1:]
        if data_shape != (env_dim,):
            raise DatasetError(
                f'--env_name {env_name} takes actions of shape ({env_dim},) but {dataset.path} has actions of shape '
                f'{data_shape}; use the dataset recorded in that environment (actions (N, {env_dim})), or '
                f'--eval_episodes 0 to train without evaluating.'
            )
    env.close()


def check_val_matches(train: Dataset, val: Dataset):
    if val.observation_shape != train.observation_shape or val['actions'].shape[1:] != train['actions'].shape[1:]:
        raise DatasetError(
            f'validation dataset {val.path} has observations {val.observation_shape} / actions '
            f'{val["actions"].shape[1:]} but the training dataset has {train.observation_shape} / '
            f'{train["actions"].shape[1:]}; pass the matching --val_dataset_path.'
        )


def run_offline(args, spec):
    env_name = resolve_env(args)
    eval_episodes = args.eval_episodes if env_name is not None else 0
    train, val = resolve_dataset(args, env_name)
    config = build_config(args, spec, train)
    if val is not None:
        check_val_matches(train, val)
    else:
        print(f'No validation data (no {val_path_for(train.path)}): validation/* metrics are not logged. Pass '
              f'--val_fraction 0.05 to hold out the last 5% of the episodes, or --val_dataset_path.')
    if eval_episodes > 0:
        check_env_matches(env_name, train)
    batch_size = int(config.batch_size)
    primary = is_primary()  # with --distributed, process 0 alone logs and prints
    monitor = make_monitor(args, health_context(json_safe(config)), primary)

    num_seeds = args.num_seeds
    if num_seeds < 1:
        raise TrainingError(f'--num_seeds must be at least 1, got {num_seeds}.')
    seeds = [args.seed + i for i in range(num_seeds)]  # --num_seeds N: seeds S..S+N-1, vmapped in one process

    def make_index_source(seed):
        index_kwargs = dict(steps_per_epoch=args.steps)
        if args.block_size is not None or args.chunk_size is not None:
            block = args.block_size or 150
            return BlockShuffleIndices(
                train, batch_size, block, args.chunk_size or block * 14, seed=seed, shuffle_seed=args.shuffle_seed,
                frame_stack=config.frame_stack, **index_kwargs,
            )
        return UniformIndices(train, batch_size, **index_kwargs)

    index_sources = [make_index_source(seed) for seed in seeds]  # each seed its own data order
    try:
        mesh = data_mesh(args.num_devices)  # data parallel over the devices (None: one device)
        check_divisible(batch_size, mesh)
    except ShardingError as e:
        raise TrainingError(str(e)) from e
    index_source = index_sources[0]
    total = args.train_steps
    if args.epochs is not None:
        by_epochs = args.epochs * index_source.steps_per_epoch
        if total is not None and total != by_epochs:
            raise TrainingError(f'--train_steps {total} disagrees with --epochs x steps per epoch = {by_epochs}.')
        total = by_epochs
    total = total or DEFAULT_TRAIN_STEPS
    eval_interval = args.eval_interval or total
    # Several checkpoints by default (the last 3 are kept), so a corrupt or unwanted one has a predecessor.
    ckpt_every = args.ckpt_every or (eval_interval if eval_interval < total else max(1, total // 5))

    sampler = GoalSampler(train, config)
    val_sampler = GoalSampler(val, config) if val is not None else None
    example = make_batch(sampler, UniformIndices(train, 2), args.seed, 0)
    action_dim = int(config.action_dim)
    agent = spec.agent_cls.create(args.seed, example, config)
    if num_seeds > 1:
        try:
            check_seed_memory(agent, make_batch(sampler, index_source, args.seed, 0), num_seeds,
                              args.updates_per_dispatch)
        except SeedMemoryError as e:
            raise TrainingError(str(e)) from e
        agent = stack_agents([agent] + [spec.agent_cls.create(s, example, config) for s in seeds[1:]])
    agent = replicate(agent, mesh)

    run_name = env_name or dataset_stem(train.path)
    record = dict(
        algorithm=args.algorithm, agent=json_safe(config), seed=args.seed, example_batch=example_spec(example),
        env_name=env_name, dataset_path=train.path, observation_shape=list(train.observation_shape),
        num_seeds=num_seeds,
    )
    session = RunSession(args, run_name, record, monitor, total, primary)
    run_dir, ckpt_dir = session.run_dir, session.ckpt_dir
    start = 0
    if args.resume:
        agent, meta, _ = session.restore(agent, {'num_seeds': num_seeds} if num_seeds > 1 else None)
        agent = replicate(agent, mesh)
        start = int(meta['step'])
        print(f'Resumed {run_dir} at step {start}.')
    session.start(start)
    bar = session.bar

    plan = make_plan(start, total, (args.log_interval, eval_interval, ckpt_every), args.updates_per_dispatch)
    probe_interval = 5 * args.log_interval if args.health_probe_interval is None else args.health_probe_interval
    probe_data = probe_batch(val_sampler or sampler, val or train, 256, args.seed) if probe_interval else None

    def make_segment(seg_start, n):
        if num_seeds == 1:  # (n, B, ...)
            return shard_batch(stacked_batches(sampler, index_source, args.seed, seg_start, n), mesh, 1)
        per_seed = [stacked_batches(sampler, src, seed, seg_start, n) for src, seed in zip(index_sources, seeds)]
        return shard_batch({k: np.stack([b[k] for b in per_seed], axis=1) for k in per_seed[0]}, mesh, 2)

    def seed_metrics(prefix, info):
        """Per-seed arrays -> the mean over seeds under `prefix/key`, and each seed under `prefix/key/seedI`."""
        out = {}
        for k, v in info.items():
            v = np.asarray(v)
            out[f'{prefix}/{k}'] = float(np.mean(v)) if num_seeds > 1 else v
            if num_seeds > 1:
                out.update({f'{prefix}/{k}/seed{s}': float(x) for s, x in zip(seeds, v)})
        return out

    def seed_agent(agent, index):
        """Seed `index` as a plain agent (the agent itself when there is one seed), for evaluation and probes;
        with several processes a host-local copy, so that each process runs them on its own."""
        return host_local(agent if num_seeds == 1 else unstack_agent(agent, index))

    prefetcher = Prefetcher(make_segment, plan)
    last_eval = None
    in_flight = []  # (updates, info) dispatched but not yet counted on the bar
    last_train = {}
    run_start = time.perf_counter()
    timer_start, timer_steps, train_seconds, waited = time.perf_counter(), 0, 0.0, 0.0
    try:
        for seg_start, n, batches in prefetcher:
            agent, info = scan_updates(agent, batches) if num_seeds == 1 else scan_seed_updates(agent, batches)
            step = seg_start + n
            timer_steps += n
            # The bar counts finished updates: one dispatch stays queued behind the running one, and the bar
            # moves when the earlier of the two has finished (not when it was dispatched).
            in_flight.append((n, info))
            while len(in_flight) > 1:
                finished, finished_info = in_flight.pop(0)
                jax.block_until_ready(finished_info)
                bar.update(finished)
            if due(step, args.log_interval, total):
                info = jax.device_get(info)
                bar.update(sum(k for k, _ in in_flight))
                in_flight.clear()
                elapsed = time.perf_counter() - timer_start
                train_seconds += elapsed
                metrics = seed_metrics('training', info)
                if not all(np.all(np.isfinite(v)) for v in metrics.values()):
                    monitor.observe(step, metrics)
                    session.check_finite(step, metrics, 'Lower --agent.lr or check the data.', show_value=True)
                if probe_data is not None and due(step, probe_interval, total):
                    probe = goal_sensitivity(seed_agent(agent, 0), probe_data, num_alt_goals=4, seed=args.seed)
                    metrics['health/probe/action_sensitivity'] = probe['action_sensitivity']
                    metrics['health/probe/value_auc'] = probe['value_auc']
                if val_sampler is not None:
                    val_batch = make_batch(val_sampler, UniformIndices(val, batch_size), args.seed + 1, step)
                    local = host_local(agent)
                    if num_seeds == 1:
                        val_info = local.loss_info(val_batch)
                    else:
                        val_info = jax.vmap(lambda a: a.loss_info(val_batch))(local)
                    metrics.update(seed_metrics('validation', jax.device_get(val_info)))
                metrics['training/epoch'] = index_source.epoch_of(step - 1)
                metrics['time/steps_per_second'] = timer_steps / elapsed
                metrics['time/train_seconds'] = train_seconds
                metrics['time/data_wait_fraction'] = min(1.0, (prefetcher.wait_seconds - waited) / elapsed)
                waited = prefetcher.wait_seconds
                metrics = session.log('train', step, metrics)
                last_train = dict(step=step, metrics=metrics)
                bar.set_postfix(loss=f"{np.mean(info.get('critic/loss', 0)):.3g}")
                timer_start, timer_steps = time.perf_counter(), 0
            if eval_episodes > 0 and due(step, eval_interval, total):
                from impls.runs.evaluation import evaluate

                t0 = time.perf_counter()
                results = [evaluate(seed_agent(agent, i), env_name, eval_episodes, seed=s * 1000 + step,
                                    frame_stack=config.frame_stack) for i, s in enumerate(seeds)]
                result = {k: float(np.mean([r[k] for r in results])) for k in results[0]}
                if num_seeds > 1:
                    result['per_seed_success'] = [r['overall_success'] for r in results]
                last_eval = result
                if num_seeds == 1:
                    eval_metrics = {f'evaluation/{k}': v for k, v in results[0].items()}
                else:
                    eval_metrics = seed_metrics('evaluation', {k: [r[k] for r in results] for k in results[0]})
                session.log('eval', step, eval_metrics)
                tasks = ' '.join(f'{v:.2f}' for k, v in result.items() if k.startswith('task'))
                bar.write(f'step {step}: success {result["overall_success"]:.3f} (tasks {tasks}) '
                          f'[{result["seconds"]:.0f}s eval]')
                timer_start += time.perf_counter() - t0
            if due(step, ckpt_every, total):
                t0 = time.perf_counter()
                session.save(step, agent, dict(epoch=index_source.epoch_of(step - 1), num_seeds=num_seeds))
                timer_start += time.perf_counter() - t0
    finally:
        prefetcher.close()
        session.close()
    if primary and last_train:
        shown = [k for k in SUMMARY_KEYS if k in last_train['metrics']]
        values = ', '.join(f'{k.removeprefix("training/")} {float(np.mean(last_train["metrics"][k])):.4g}' for k in shown)
        wall = time.perf_counter() - run_start
        print(f'Trained {args.algorithm} to step {last_train["step"]} of {total} in {wall:.0f} s '
              f'({train_seconds:.0f} s of updates, {(last_train["step"] - start) / max(train_seconds, 1e-9):.1f} steps/s). '
              f'Last log: {values}.')
        print(monitor.summary_line(run_dir))
        latest = session.checkpointer.latest_step()
        if latest is not None:
            where = run_dir if os.path.abspath(ckpt_dir) == os.path.abspath(os.path.join(run_dir, 'checkpoints')) else ckpt_dir
            print(f'Checkpoints in {ckpt_dir} (latest: step {latest}); next: python test_goal_conditioning.py '
                  f'--checkpoint {where}')
    if last_eval is not None:
        num_tasks = sum(k.startswith('task') for k in last_eval)
        seeds_note = f' (mean of {num_seeds} seeds: {last_eval["per_seed_success"]})' if num_seeds > 1 else ''
        print(f'Final success rate over {num_tasks} tasks x {eval_episodes} episodes: '
              f'{last_eval["overall_success"]:.3f}{seeds_note}')
        if args.random_baseline:
            from impls.runs.evaluation import RandomPolicy, evaluate

            baseline = evaluate(RandomPolicy(action_dim, bool(config.discrete), args.seed), env_name,
                                eval_episodes, seed=args.seed * 1000 + total)
            print(f'Uniform random policy on the same tasks and episodes:  {baseline["overall_success"]:.3f}')
            last_eval = dict(last_eval, random_baseline_success=baseline['overall_success'])
    print(f'Run saved in {run_dir}')
    return dict(agent=agent, eval=last_eval, run_dir=run_dir)

