"""Does a trained goal-conditioned agent use its goal?

    python test_goal_conditioning.py --checkpoint runs/crl-pointmaze --algorithm crl [--dataset_path P]
        [--env_name E] [--json report.json]

Loads the checkpoint (a run directory means its latest checkpoint) with the config saved beside it and
reports, on states from the validation data (else the training data) with their future goals:
  * action sensitivity: how much the policy's action moves when only the goal is swapped for other goals
    of the data, relative to how much it moves across states (discrete: total variation, argmax agreement);
  * value sensitivity: the spread of Q / -distance over goals, and a per-state AUC of the true future goal
    against random goals;
  * with an environment: success with the true goals vs with goals shuffled between tasks.
Exit code: 0 when the goal is used, 1 when weakly used, 3 when it is ignored (2 is a usage error), so
it can gate scripts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

EXIT_CODES = {'uses the goal': 0, 'weakly uses the goal': 1, 'ignores the goal': 3}


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--checkpoint', required=True, help='Run directory, its checkpoints/ directory, or one step directory.')
    p.add_argument('--algorithm', default=None,
                   help='Algorithm the checkpoint was trained with, in any case (checked; default: the one it records).')
    p.add_argument('--dataset_path', default=None, help='Dataset for probe states (default: the run\'s, -val first).')
    p.add_argument('--env_name', default=None, help='Env for the success test (default: the run\'s; "none" skips).')
    p.add_argument('--num_states', type=int, default=1024, help='Probe states.')
    p.add_argument('--num_alt_goals', type=int, default=8, help='Alternative goals per state.')
    p.add_argument('--eval_episodes', type=int, default=10, help='Episodes per task for the success test.')
    p.add_argument('--uses_threshold', type=float, default=0.2, help='Action sensitivity meaning "uses the goal".')
    p.add_argument('--weak_threshold', type=float, default=0.05, help='Action sensitivity below which it is ignored.')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--json', default=None, help='Also write the report as JSON to this file.')
    return p


def run(args):
    from impls.runs.restore import load_agent
    from impls.data.datasets import load_dataset, val_path_for
    from impls.data.sampler import GoalSampler
    from impls.health.probe import Thresholds, goal_sensitivity, probe_batch

    agent, record, step = load_agent(args.checkpoint, args.algorithm, allow_online=False)
    dataset_path = args.dataset_path or record['dataset_path']
    if args.dataset_path is None and os.path.exists(val_path_for(dataset_path)):
        dataset_path = val_path_for(dataset_path)
    dataset = load_dataset(dataset_path)
    expected = tuple(record['observation_shape'])
    if dataset.observation_shape != expected:
        raise ValueError(
            f'{dataset_path} has observations of shape {dataset.observation_shape} but the agent was trained on '
            f'{expected}; pass the dataset of the same environment.'
        )
    sampler = GoalSampler(dataset, agent.config)
    batch = probe_batch(sampler, dataset, args.num_states, args.seed)
    thresholds = Thresholds(uses=args.uses_threshold, weak=args.weak_threshold)
    report = dict(checkpoint=os.path.abspath(args.checkpoint), algorithm=record['algorithm'], step=step,
                  dataset=dataset_path, thresholds=dict(uses=thresholds.uses, weak=thresholds.weak))
    report.update(goal_sensitivity(agent, batch, args.num_alt_goals, args.seed, thresholds))

    env_name = args.env_name or record.get('env_name')
    if env_name and env_name.lower() != 'none' and args.eval_episodes > 0:
        report.update(success_test(agent, env_name, args, expected))
    elif args.eval_episodes > 0:
        report['env_note'] = 'no environment recorded for this run (pass --env_name to add the success test)'
    return report


def success_test(agent, env_name, args, expected_shape):
    """Success with the true goals vs goals shuffled between tasks. A failure here (an env whose observations do
    not match the agent's, an env that cannot be made) is reported beside the probe results, not raised."""
    from impls.envs.ogbench import make_eval_env
    from impls.runs.evaluation import evaluate

    try:
        env = make_eval_env(env_name)
        env_shape = tuple(env.observation_space.shape)
        env.close()
        if env_shape != expected_shape:
            return dict(env_note=f'success test skipped: {env_name} has observations {env_shape} but the agent was '
                                 f'trained on {expected_shape}; pass the --env_name the data was recorded in.')
        frame_stack = agent.config['frame_stack']
        true = evaluate(agent, env_name, args.eval_episodes, seed=args.seed, frame_stack=frame_stack)
        shuffled = evaluate(agent, env_name, args.eval_episodes, seed=args.seed, frame_stack=frame_stack,
                            shuffle_goals=True)
    except Exception as e:  # the probe results above stand on their own
        return dict(env_note=f'success test in {env_name} failed ({type(e).__name__}: {str(e)[:300]})')
    return dict(env_name=env_name, success_true_goals=true['overall_success'],
                success_shuffled_goals=shuffled['overall_success'])


def format_report(r):
    lines = [f'Goal conditioning of {r["algorithm"]} at step {r["step"]} ({r["checkpoint"]})',
             f'  probe states from {r["dataset"]}']
    rows = [
        ('action sensitivity', r['action_sensitivity'], 'action change from the goal / across states'),
        ('  action change (goal)', r['action_change_goal'], 'mean over alternative goals'),
        ('  action change (state)', r['action_change_state'], 'mean over random state pairs'),
    ]
    if 'argmax_agreement' in r:
        rows.append(('  argmax agreement', r['argmax_agreement'], 'same greedy action under another goal'))
    rows += [
        ('value sensitivity', r['value_sensitivity'], 'std of Q over goals / over states'),
        ('value AUC', r['value_auc'], 'true future goal ranked above random goals (0.5 = chance)'),
    ]
    if 'success_true_goals' in r:
        rows += [('success, true goals', r['success_true_goals'], r['env_name']),
                 ('success, shuffled goals', r['success_shuffled_goals'], 'goals of another task')]
    lines += [f'  {name:<26}{value:8.3f}   {note}' for name, value, note in rows]
    if 'env_note' in r:
        lines.append(f'  ({r["env_note"]})')
    t = r['thresholds']
    lines.append(f'Verdict: {r["verdict"].upper()} (action sensitivity {r["action_sensitivity"]:.3f}; '
                 f'uses >= {t["uses"]}, ignores < {t["weak"]})')
    return '\n'.join(lines)


def main(argv=None):
    args = build_parser().parse_args(argv)
    from impls.data.datasets import DatasetError
    from impls.utils.checkpoints import CheckpointError

    try:
        report = run(args)
    except (CheckpointError, DatasetError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    print(format_report(report))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(report, f, indent=2)
    return EXIT_CODES[report['verdict']]


if __name__ == '__main__':
    sys.exit(main())
