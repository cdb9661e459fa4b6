"""Train any impls agent: `python train.py --algorithm NAME [flags] [--agent.KEY=VALUE ...]`.

With no arguments it runs the quick start: generates a small pointmaze-medium-navigate dataset (no
network) if none is cached, trains CRL for a CPU-sized budget, evaluates on the env's 5 tasks and
prints the success rate. Paper-sized settings live in configs/ (`--preset NAME`).

The algorithm is looked up in impls.agents.AGENTS; the loop is chosen by the agent's kind, never by
its name.
"""

from __future__ import annotations

import argparse
import os
import sys

from impls.utils.config import KNOB_ALIASES, ConfigError, Literal, load_preset, split_agent_flags

CONFIGS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'configs')


def build_parser():
    p = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='Agent hyperparameters: --agent.KEY=VALUE (see get_config() in impls/agents/<algorithm>.py).',
    )
    a = p.add_argument
    a('--preset', default=None, help='Named preset from configs/ (its values become the defaults below). '
      'With no arguments at all, train.py runs the "quickstart" preset.')
    a('--algorithm', default='crl', help='Agent name (impls.agents.AGENTS).')
    a('--env_name', default=None,
      help='Offline agents: OGBench dataset/env name, the evaluation env ("none": no environment). Default: taken '
      'from --dataset_path when its file is named after an OGBench env, else no environment (evaluation off). '
      'Online agents: a gymnasium id (CartPole-v1, ALE/Breakout-v5).')
    a('--env_entry_point', default=None, help='Online agents: MODULE:CLASS of a gymnasium.Env outside the registry.')
    a('--num_envs', type=int, default=1, help='Online agents: parallel environments.')
    a('--env_backend', default='gymnasium', choices=['gymnasium', 'jax'],
      help='Online agents: "jax" runs an environment written in jax (impls/envs/jax_envs.py: CartPole-v1; goal '
      'agents: impls/envs/goal_envs.py: point_mass) with acting, replay and updates compiled into one jitted loop.')
    a('--expert', default=None, help='Online agents: expert for the curriculum: "cartpole", a run directory of a trained online agent, or MODULE:CALLABLE.')
    a('--learning_starts', type=int, default=10_000, help='Online agents: environment steps before the first update.')
    a('--training_steps_per_sample', type=float, default=0.1,
      help='Online agents: gradient updates per environment step (the replay ratio; a fraction accumulates).')
    a('--train_ratio', type=float, default=None,
      help='Online agents: replayed steps per environment step, as DreamerV3 counts it (sets '
      '--training_steps_per_sample = train_ratio / replayed steps per update: batch_size x sequence_length for '
      'sequence replay, batch_size for transitions). DreamerV3 with batch 16 x 64: 1024 = one update per step.')
    a('--pixels', type=int, default=None, metavar='N',
      help='Online agents: observe N x N RGB renders of the environment (render_mode rgb_array), resized when '
      'collected.')
    a('--buffer_size', type=int, default=10_000, help='Online agents: replay capacity (transitions).')
    a('--expert_ratio_start', type=float, default=0.0,
      help='Online agents, with --expert: probability an episode is driven by the expert, at the start.')
    a('--expert_ratio_floor', type=float, default=0.0, help='... and its floor after the decay.')
    a('--expert_decay_fraction', type=float, default=0.5,
      help='Fraction of training over which the expert ratio decays linearly to its floor.')
    a('--reward_bound', type=float, default=None,
      help='Online agents: |r|max, for the value-divergence bound |r|max / (1 - gamma).')
    a('--slope_window', type=int, default=20, help='Online agents: episodes in the reward-slope window.')
    a('--dataset_path', default=None, help='OGBench-layout .npz or a directory of .npy files (memory-mapped). '
      'Default: DATASET_DIR/ENV_NAME.npz, generated locally if missing.')
    a('--dataset_dir', default='data/quickstart', help='Where generated datasets are cached.')
    a('--generate_episodes', type=int, default=200, help='Episodes to generate when no dataset is cached.')
    a('--val_dataset_path', default=None, help='Validation dataset (default: NAME-val.npz beside the dataset).')
    a('--val_fraction', type=float, default=0.0,
      help='Hold out this fraction of the dataset\'s episodes (the last ones) as validation data, for a file with no '
      '-val file beside it (0: none).')
    a('--save_dir', default=None, help='Run directory: train.csv, eval.csv, config.json, checkpoints. '
      'Default: runs/ALGORITHM-ENV_NAME-sSEED.')
    a('--ckpt_dir', default=None, help='Checkpoint directory (default: SAVE_DIR/checkpoints).')
    a('--ckpt_every', '--save_interval', type=int, default=None,
      help='Checkpoint interval in steps (default: eval_interval). --save_interval is OGBench\'s name for it.')
    a('--resume', action='store_true', help='Continue the run in SAVE_DIR from its latest checkpoint, with the '
      'settings saved in SAVE_DIR/config.json (flags given now override them; the agent config must match).')
    a('--project', default='impls', help='wandb project.')
    a('--run_group', default=None, help='wandb group (OGBench\'s flag).')
    a('--wandb_mode', default=None, choices=['online', 'offline', 'disabled'],
      help='wandb mode (default: $WANDB_MODE, else offline).')
    a('--seed', type=int, default=0, help='Seed for parameters, batches and evaluation.')
    a('--num_devices', type=int, default=0,
      help='Offline agents: data-parallel over this many devices (0: all local devices; the batch is split).')
    a('--distributed', action='store_true',
      help='Several processes / hosts, data parallel (offline agents): jax.distributed from SLURM / Open MPI / '
           'Kubernetes, or from JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID.')
    a('--num_seeds', type=int, default=1,
      help='Offline agents, and goal agents on a jax environment: train seeds SEED..SEED+N-1 at once in one process '
           '(vmapped), each with its own data order and evaluation; logs each seed and the mean.')
    a('--train_steps', type=int, default=None,
      help='Offline: gradient steps (default 20000, or steps x epochs). Online: environment steps (default 50000).')
    a('--steps', type=int, default=None, help='Steps per epoch (default: one pass over the data).')
    a('--epochs', type=int, default=None, help='Epochs; train_steps = steps x epochs.')
    a('--batch_size', type=int, default=None, help='Batch size (sets --agent.batch_size).')
    a('--frame_stack', type=int, default=None, help='Frames to stack (sets --agent.frame_stack).')
    a('--block_size', type=int, default=None, help='Block-shuffle loader: consecutive transitions per block.')
    a('--chunk_size', type=int, default=None, help='Block-shuffle loader: transitions read at a time.')
    a('--shuffle_seed', type=int, default=None, help='Block-shuffle loader: fixed block order for every epoch.')
    a('--log_interval', type=int, default=1000, help='Steps between training/validation log rows.')
    a('--eval_interval', type=int, default=None, help='Steps between evaluations (default: train_steps).')
    a('--eval_episodes', type=int, default=20, help='Evaluation episodes per task (0 skips evaluation).')
    a('--eval_temperature', type=float, default=None,
      help='Actor temperature at evaluation (sets --agent.eval_temperature; default 0: the mode).')
    a('--precision', default='float32', type=str.lower,
      help='float32 (default) or bf16: matmuls and convolutions in bfloat16 with float32 accumulation; parameters, '
      'optimiser state and everything else float32. Fast on CPUs with AVX512-BF16 / AMX and on recent GPUs.')
    a('--updates_per_dispatch', type=int, default=8, help='Updates fused into one jitted call (lax.scan).')
    a('--health', nargs='*', default=[], metavar='DETECTOR.FIELD=VALUE',
      help='Training-health thresholds (see impls/health/), e.g. value_divergence.growth=20.')
    a('--health_disable', default='', help='Comma-separated health detectors to switch off.')
    a('--health_probe_interval', type=int, default=None,
      help='Steps between goal-sensitivity probes of goal-conditioned agents (default: 5 x log_interval; 0: off).')
    a('--eval_runs', type=int, default=4,
      help='In-context agents: fresh contexts per held-out goal at evaluation (each runs --eval_episodes episodes).')
    a('--history_source', default='q_learning', choices=['q_learning', 'q_optimistic', 'noisy_optimal'],
      help='In-context agents: the source algorithm of the learning histories written when --dataset_path is not '
      'given and data/darkroom/histories.npz does not exist (--generate_episodes episodes per history).')
    a('--random_baseline', action='store_true', help='Also evaluate a uniform random policy at the end.')
    a('--no_progress', action='store_true', help='No progress bar.')
    return p


def _saved_run(argv):
    """--resume with a --save_dir that holds config.json: that run's saved flags and agent config."""
    if '--resume' not in argv:
        return None
    save_dir = None
    for i, arg in enumerate(argv):
        if arg == '--save_dir' and i + 1 < len(argv):
            save_dir = argv[i + 1]
        elif arg.startswith('--save_dir='):
            save_dir = arg.split('=', 1)[1]
    if save_dir is None:
        return None
    path = os.path.join(save_dir, 'config.json')
    if not os.path.exists(path):
        if not {a.split('=', 1)[0] for a in argv} & {'--preset', '--algorithm'}:
            raise ConfigError(f'--resume: {path} does not exist, so there is no run to continue in {save_dir}. '
                              f'Check --save_dir, or drop --resume to start a new run there.')
        return None  # the run is described on the command line; the loop checks for a checkpoint
    import json

    with open(path) as f:
        return json.load(f)


def parse_args(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    named = {a.split('=', 1)[0] for a in argv}
    saved = _saved_run(argv)
    if saved is None and not named & {'--preset', '--algorithm', '-h', '--help'}:
        # No agent chosen: the quick start (so `python train.py --no_progress` is the quick start too).
        argv = ['--preset', 'quickstart', *argv]
    argv, agent_overrides = split_agent_flags(argv)
    parser = build_parser()
    known, unknown_flags = parser.parse_known_args(argv)
    for flag in unknown_flags:
        name = flag.split('=', 1)[0].lstrip('-').replace('-', '_')
        if name in KNOB_ALIASES:
            raise ConfigError(f'unknown flag {flag.split("=", 1)[0]}: impls calls this setting {KNOB_ALIASES[name]}.')
    preset_agent = {}
    if saved is not None:
        # Continue the saved run: its flags are the defaults (flags given now still win), its agent config the base.
        flags = {k: v for k, v in saved.get('flags', {}).items()
                 if k in vars(known) and k not in ('resume', 'save_dir', 'preset')}
        parser.set_defaults(**flags)
        preset_agent = {k: Literal(tuple(v) if isinstance(v, list) else v) for k, v in saved.get('agent', {}).items()}
    elif known.preset:
        preset = load_preset(known.preset, CONFIGS_DIR)
        preset_agent = preset.pop('agent')
        unknown = [k for k in preset if k not in vars(known)]
        if unknown:
            raise ConfigError(f'preset {known.preset!r} sets unknown flags {unknown}.')
        parser.set_defaults(**preset)
    args = parser.parse_args(argv)
    if saved is not None and str(args.algorithm).lower() != str(saved.get('algorithm', '')).lower():
        preset_agent = {}  # another algorithm than the saved run's: the checkpoint check will say so
    args.agent_overrides = {**preset_agent, **agent_overrides}
    if args.env_name is not None and args.env_name.lower() == 'none':
        args.env_name = None
    return args


def main(argv=None):
    from impls.agents import UnknownAlgorithmError, get_agent
    from impls.data.datasets import DatasetError
    from impls.utils.checkpoints import CheckpointError
    from impls.envs.gym import EnvError
    from impls.health import HealthConfigError
    from impls.runs.offline import TrainingError, run_offline
    from impls.runs.goal_online import run_goal_online
    from impls.runs.in_context import run_in_context
    from impls.runs.online import run_online
    from impls.utils.precision import check_bf16_support, set_precision
    from impls.utils.sharding import ShardingError, initialize_distributed

    try:
        args = parse_args(argv)
        if args.distributed:
            initialize_distributed()
        args.precision = set_precision(args.precision)
        if args.precision == 'bf16' and (warning := check_bf16_support()):
            print(f'warning: {warning}', file=sys.stderr)
        spec = get_agent(args.algorithm)
        args.algorithm = spec.name  # one canonical (lower-case) name in run names, config.json and checkpoints
        loops = {'offline_gc': run_offline, 'online': run_online, 'online_goal': run_goal_online,
                 'in_context': run_in_context}
        return loops[spec.kind](args, spec)
    except (ConfigError, UnknownAlgorithmError, TrainingError, DatasetError, CheckpointError, HealthConfigError,
            EnvError, ShardingError) as e:
        print(f'error: {e}', file=sys.stderr)
        raise SystemExit(2)


if __name__ == '__main__':
    main()
