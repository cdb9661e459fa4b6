"""One run session, shared by every loop: the run directory and its config.json, the logger, the progress bar,
the health monitor, checkpoints (the agent through orbax, the loop's own state as an atomic pickle beside it),
the interval plan and the non-finite stop. A loop builds its agent and data, opens a RunSession, and from
then on only trains: everything a run writes goes through here.

config.json has one layout for every algorithm:
    algorithm, agent (the agent's config, every hyperparameter once), seed, example_batch ({key: {shape, dtype}},
    what `create` needs to rebuild the agent), env_name, plus what the loop adds (dataset_path, num_seeds, ...),
    and flags (the command line, without the settings folded into the agent config).
"""

from __future__ import annotations

import json
import os
import pickle

import jax
import numpy as np
from tqdm import tqdm

from impls.health import HealthMonitor, parse_health_overrides, read_run_metrics
from impls.utils.checkpoints import Checkpointer
from impls.utils.config import apply_overrides
from impls.utils.logging import Logger, NullLogger


# Flags that set an agent key (--batch_size is --agent.batch_size): config.json keeps their value once, in `agent`.
AGENT_FLAGS = ('batch_size', 'frame_stack', 'eval_temperature')


class TrainingError(ValueError):
    """A run that cannot start or continue; the message says why and what to do."""


def make_plan(start: int, total: int, boundaries, group: int):
    """Segments (start, n) covering [start, total) that end on every multiple of each boundary
    interval and are at most `group` long."""
    plan, step = [], start
    while step < total:
        end = min(total, step + group)
        for interval in boundaries:
            if interval:
                end = min(end, (step // interval + 1) * interval)
        plan.append((step, end - step))
        step = end
    return plan


def due(step, interval, total):
    """Whether a step ends an interval (or the run)."""
    return step == total or bool(interval and step % interval == 0)


def next_multiple(step, interval):
    """The first multiple of `interval` after `step`."""
    return (step // interval + 1) * interval


def trend_slope(values):
    """Least-squares slope of a sequence per item (0 for fewer than 3 values)."""
    if len(values) < 3:
        return 0.0
    x = np.arange(len(values), dtype=float)
    return float(np.polyfit(x, np.asarray(values, float), 1)[0])


def example_spec(batch: dict) -> dict:
    """{key: {shape, dtype}} of an example batch (without its batch axis), for config.json."""
    return {k: dict(shape=list(np.shape(v)[1:]), dtype=str(np.asarray(v).dtype)) for k, v in batch.items()}


def agent_config(args, spec):
    """The agent's get_config() with the preset's and the command line's --agent.KEY values and the flags that set
    agent keys (AGENT_FLAGS) applied, then the agent's own check: the config every loop starts from."""
    config = spec.get_config()
    overrides = dict(args.agent_overrides)
    overrides.update({k: getattr(args, k) for k in AGENT_FLAGS if getattr(args, k, None) is not None})
    apply_overrides(config, overrides)
    check_agent_config(spec, config)
    return config


def check_agent_config(spec, config):
    """The agent's own check of its config (its class's check_config, when it has one), as a TrainingError."""
    check = getattr(spec.agent_cls, 'check_config', None)
    if check is not None:
        try:
            check(config)
        except ValueError as e:
            raise TrainingError(str(e)) from e


def make_monitor(args, context: dict, primary: bool = True) -> HealthMonitor:
    """The health monitor with --health / --health_disable applied (raises HealthConfigError on a bad name)."""
    disable = [d for d in args.health_disable.split(',') if d]
    return HealthMonitor(context, parse_health_overrides(args.health, disable), disable,
                         printer=(lambda text: tqdm.write(text)) if primary else (lambda text: None))


class RunSession:
    """The run directory, config.json, logger, progress bar, health monitor and checkpoints of one run.

    args: train.py's flags (save_dir, ckpt_dir, resume, project, run_group, wandb_mode, no_progress);
    run_name: the default directory's middle part (runs/ALGORITHM-RUN_NAME-sSEED); record: config.json's
    entries (algorithm, agent, ...); total: the run's length in steps (the progress bar's end);
    primary: whether this process writes (process 0 of a multi-process run).
    """

    def __init__(self, args, run_name: str, record: dict, monitor: HealthMonitor, total: int, primary: bool = True,
                 desc: str | None = None, step_name: str = 'step'):
        self.args, self.total, self.primary, self.monitor = args, total, primary, monitor
        self.step_name = step_name  # 'step' (gradient steps) or 'environment step', in messages
        self.desc = desc or f'{args.algorithm} {run_name}'
        self.run_dir = args.save_dir or os.path.join('runs', f'{args.algorithm}-{run_name}-s{args.seed}')
        self.ckpt_dir = args.ckpt_dir or os.path.join(self.run_dir, 'checkpoints')
        self._prepare_run_dir()
        flags = {k: v for k, v in vars(args).items() if k not in ('agent_overrides', *AGENT_FLAGS)}
        self.record = dict(record, flags=flags)
        self.meta = dict(algorithm=record['algorithm'], agent=record['agent'])
        self.checkpointer = Checkpointer(self.ckpt_dir)
        self.logger, self.bar = None, None
        self.episodes = []  # (step, return, length, expert-driven) finished since the last write

    def _prepare_run_dir(self):
        args, run_dir, ckpt_dir = self.args, self.run_dir, self.ckpt_dir
        has_ckpt = os.path.isdir(ckpt_dir) and any(name.isdigit() for name in os.listdir(ckpt_dir))
        if has_ckpt and not args.resume:
            raise TrainingError(
                f'{run_dir} already holds checkpoints ({ckpt_dir}); pass --resume to continue that run, or choose '
                f'another --save_dir. Nothing was overwritten.'
            )
        if args.resume and not has_ckpt:
            raise TrainingError(f'--resume given but {ckpt_dir} holds no checkpoint to resume from.')
        os.makedirs(run_dir, exist_ok=True)

    # -- resume ------------------------------------------------------------------------------------------------
    def restore(self, template, expect_extra: dict | None = None):
        """(agent, meta, loop state or None) from the latest checkpoint, the metadata checked against this run's
        (algorithm, agent config, and `expect_extra`); replays the logged metrics into the monitor."""
        agent, meta = self.checkpointer.restore(template, expect=dict(self.meta, **(expect_extra or {})))
        loop_path = os.path.join(self.ckpt_dir, f'loop_{meta["step"]}.pkl')
        loop = None
        if os.path.exists(loop_path):
            with open(loop_path, 'rb') as f:
                loop = pickle.load(f)
        self.monitor.replay(read_run_metrics(self.run_dir, until_step=int(meta['step'])))
        return agent, meta, loop

    # -- writing -----------------------------------------------------------------------------------------------
    def start(self, step: int):
        """Writes config.json (the run directory's, and the checkpoint directory's so that a checkpoint directory
        alone rebuilds its agent), opens the logger and the progress bar at `step`."""
        args = self.args
        if self.primary:
            for path in dict.fromkeys((self.run_dir, self.ckpt_dir)):
                with open(os.path.join(path, 'config.json'), 'w') as f:
                    json.dump(self.record, f, indent=2, default=str)
            self.logger = Logger(self.run_dir, args.project, os.path.basename(os.path.abspath(self.run_dir)),
                                 self.record, args.wandb_mode, resume_step=step if args.resume else None,
                                 group=args.run_group)
        else:
            self.logger = NullLogger()
        self.bar = tqdm(total=self.total, initial=step, desc=self.desc, unit='step',
                        disable=args.no_progress or not self.primary, dynamic_ncols=True)

    def _last_good(self) -> str:
        latest = self.checkpointer.latest_step()
        if latest is None:
            return f'No checkpoint had been written in {self.ckpt_dir} yet.'
        return f'The last good checkpoint in {self.ckpt_dir} (step {latest}) is intact.'

    def check_finite(self, step: int, metrics: dict, knobs: str, show_value: bool = False):
        """Stops the run on a non-finite training metric, the last good checkpoint untouched."""
        bad = [k for k, v in metrics.items() if k.startswith('training/') and not np.all(np.isfinite(v))]
        if bad:
            value = f' = {metrics[bad[0]]}' if show_value else ''
            raise TrainingError(
                f'non-finite {bad[0]}{value} at {self.step_name} {step}; stopping. {self._last_good()} {knobs}')

    def check_finite_updates(self, step: int, names, table, knobs: str):
        """Stops the run at the first update of an interval whose metrics (a row of `table`, (updates, metrics)) are
        not all finite, naming the terms that went bad in that update (later updates are NaN everywhere)."""
        finite = np.isfinite(table)
        if finite.all():
            return
        row = int(np.argmin(finite.all(1)))
        bad = [n for n, ok in zip(names, finite[row]) if not ok]
        raise TrainingError(
            f'non-finite {", ".join(bad)} in update {row + 1} of the interval ending at {self.step_name} {step}; '
            f'stopping. {self._last_good()} {knobs}')

    def log(self, kind: str, step: int, metrics: dict) -> dict:
        """Feeds a row to the health monitor and logs it with the monitor's health/* values; returns the row."""
        metrics = dict(metrics)
        metrics.update(self.monitor.observe(step, metrics))
        self.logger.log(kind, step, metrics)
        return metrics

    def flush_episodes(self):
        """Every finished episode, as CleanRL logs it (episodes.csv and wandb), written once an interval (and before
        a checkpoint) to keep file and wandb calls off the per-step path."""
        for episode_step, ret, length, expert_driven in self.episodes:
            self.logger.log('episodes', episode_step, {'charts/episodic_return': ret, 'charts/episodic_length': length,
                                                       'charts/expert_driven': expert_driven})
        self.episodes.clear()

    def save(self, step: int, agent, meta_extra: dict | None = None, loop=None):
        """A checkpoint at `step`: the agent, its metadata, and (when given) the loop's own state, each atomic. An
        agent with non-finite parameters is never saved: the last good checkpoint stays the latest."""
        leaves = [x for x in jax.tree.leaves(agent) if np.issubdtype(np.asarray(x).dtype, np.floating)]
        if not all(bool(np.isfinite(np.asarray(x)).all()) for x in leaves):
            raise TrainingError(
                f'the agent\'s parameters are non-finite at {self.step_name} {step}; not saving them. '
                f'{self._last_good()} Lower --agent.lr.')
        if self.episodes:
            self.flush_episodes()
        if loop is not None:
            tmp = os.path.join(self.ckpt_dir, f'.loop_{step}.pkl.tmp')
            with open(tmp, 'wb') as f:
                pickle.dump(loop, f)
            os.replace(tmp, os.path.join(self.ckpt_dir, f'loop_{step}.pkl'))
        self.checkpointer.save(step, agent, dict(self.meta, step=step, **(meta_extra or {})))
        if loop is not None:
            kept = {int(s) for s in self.checkpointer.manager.all_steps()}
            for name in os.listdir(self.ckpt_dir):
                if name.startswith('loop_') and int(name[5:-4]) not in kept:
                    os.remove(os.path.join(self.ckpt_dir, name))

    def close(self):
        """Closes the bar, writes the health report (attached to the wandb run) and closes the logger."""
        if self.bar is not None:
            self.bar.close()
        if self.logger is None:
            return
        if self.episodes:
            self.flush_episodes()
        if self.primary:
            self.monitor.write_report(self.run_dir)
            self.logger.attach(self.monitor.report_files(self.run_dir))
        self.logger.close()
