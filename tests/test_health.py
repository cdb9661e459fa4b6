"""Each detector: a synthetic metric stream that must trigger it and a healthy one that must not."""

import json
import math

import numpy as np
import pytest

from impls.health import DETECTORS, HealthConfigError, HealthMonitor, parse_health_overrides
from impls.health.__main__ import main


def run(stream, context=None, **overrides):
    """Feed [(step, metrics)] to a monitor; returns (monitor, {detector: first firing step})."""
    printed = []
    monitor = HealthMonitor(context or {}, parse_health_overrides([f'{k}={v}' for k, v in overrides.items()]),
                            printer=printed.append)
    values = [monitor.observe(step, metrics) for step, metrics in stream]
    return monitor, {a.detector: a.step for a in reversed(monitor.alarms)}, values, printed


def steps(n, every=1000):
    return range(every, (n + 1) * every, every)


def test_value_divergence_growth_bound_and_collapse():
    # The user's Q range: [0.15, 324] -> [-1.5, 2000] -> collapse to [-3, 16].
    q_max = [5 + 0.5 * i for i in range(20)] + [50, 200, 800, 2000] + [16] * 5
    stream = [(s, {'training/critic/q_max': q, 'training/critic/q_min': 0.1}) for s, q in zip(steps(len(q_max)), q_max)]
    monitor, fired, values, printed = run(stream, {'value_bound': 100.0})
    assert fired['value_divergence'] == 22_000  # 200 > 1.5 x 100 and 13x growth within the window
    assert any('collapsed from 2e+03' in a.message for a in monitor.alarms)
    assert 'lower tau' in printed[0]
    healthy = [(s, {'training/critic/q_max': 10 + 0.1 * i}) for i, s in enumerate(steps(40))]
    assert 'value_divergence' not in run(healthy, {'value_bound': 100.0})[1]
    # A critic learning a long horizon: 13 -> 280 within the window, under the bound 333 (Dreamer on CartPole).
    horizon = [(s, {'training/critic/v_max': v}) for s, v in zip(steps(10), np.geomspace(13, 280, 10))]
    assert 'value_divergence' not in run(horizon, {'value_bound': 333.0})[1]
    assert 'value_divergence' in run(horizon)[1]  # with no bound known, the same rise is suspect


def test_objective_mismatch_needs_both_slopes_significant():
    rng = np.random.default_rng(0)
    stream = []
    for i, s in enumerate(steps(10)):
        stream.append((s, {'training/critic/loss': 1.0 - 0.08 * i + 0.005 * rng.normal()}))
        stream.append((s, {'evaluation/overall_success': 0.8 - 0.07 * i + 0.01 * rng.normal()}))
    assert run(stream)[1].get('objective_mismatch') is not None
    improving = [(s, {'training/critic/loss': 1.0 - 0.08 * i, 'evaluation/overall_success': 0.1 + 0.05 * i})
                 for i, s in enumerate(steps(10))]
    assert 'objective_mismatch' not in run(improving)[1]


def test_goal_ignoring_from_the_probe_after_warmup():
    stream = [(s, {'training/actor/bc_loss': 50.0, 'training/actor/q_loss': -1.0,
                   'health/probe/action_sensitivity': 0.01}) for s in steps(10)]
    # The probe runs every other log; between probes the detector keeps its state (one warning, not one per probe).
    stream = [(s, m if i % 2 else {k: v for k, v in m.items() if not k.startswith('health/')})
              for i, (s, m) in enumerate(stream)]
    monitor, fired, _, _ = run(stream)
    assert fired['goal_ignoring'] == 6000 and len(monitor.alarms) == 1  # the first probe after the warmup
    healthy = [(s, {'training/actor/bc_loss': 0.3, 'training/actor/q_loss': -1.0,
                    'health/probe/action_sensitivity': 0.6}) for s in steps(10)]
    assert 'goal_ignoring' not in run(healthy)[1]


def test_epoch_shock_only_at_boundaries():
    rng = np.random.default_rng(1)
    stream, q = [], -10.0
    for i, s in enumerate(steps(60, every=10)):
        epoch = i // 10
        q += 0.05 * rng.normal()
        if i and i % 10 == 0:
            q -= 3.0  # the drop at each epoch boundary
        stream.append((s, {'training/actor/q_mean': q, 'training/epoch': epoch}))
    monitor, fired, values, _ = run(stream)
    assert fired['epoch_shock'] == 210  # the second boundary (the first log of epoch 2)
    smooth = [(s, {'training/actor/q_mean': -10 + 0.05 * rng.normal(), 'training/epoch': i // 10})
              for i, s in enumerate(steps(60, every=10))]
    assert 'epoch_shock' not in run(smooth)[1]


def test_gradient_swings_clipping_vanishing_and_nan():
    norms = [5.0, 6.0, 4.8, 80.0, 4.8]  # a spike to 16x the median
    stream = [(s, {'training/grad/norm': n}) for s, n in zip(steps(5), norms)]
    assert run(stream)[1]['gradient'] == 4000
    # Large at the start and decaying (a loss scale's first updates) is not a spike.
    decay = [(s, {'training/grad/norm': n}) for s, n in zip(steps(8), [2115, 46, 38, 29, 27, 23, 20, 20])]
    assert 'gradient' not in run(decay)[1]
    clipped = [(1000, {'training/grad/norm': 5.0, 'training/grad/clipped_fraction': 0.87})]
    assert 'clipping active on 87%' in run(clipped)[0].alarms[0].message
    kl = [(s, {'training/grad/norm': 1.0, 'training/grad/kl_norm': 0.0}) for s in steps(6)]
    monitor, fired, _, _ = run(kl)
    assert fired['gradient'] == 5000 and 'free-bits' in monitor.alarms[0].message
    nan = [(1000, {'training/grad/norm': 1.0}), (2000, {'training/critic/q_mean': math.nan, 'training/grad/norm': 1.0})]
    assert run(nan)[1]['gradient'] == 2000
    steady = [(s, {'training/grad/norm': 5 + 0.5 * np.sin(i), 'training/grad/kl_norm': 0.2}) for i, s in enumerate(steps(30))]
    assert 'gradient' not in run(steady)[1]


def test_target_tracking_half_life():
    monitor, fired, values, _ = run([(1000, {'time/steps_per_second': 50.0})], {'tau': 0.012})
    assert fired['target_tracking'] == 1000
    assert values[0]['health/target_tracking'] == pytest.approx(math.log(2) / -math.log(1 - 0.012))
    assert '70% of the way' in monitor.alarms[0].message  # 1 - 0.988^100
    assert 'target_tracking' not in run([(1000, {})], {'tau': 0.005})[1]  # half-life 138 steps


def test_entropy_collapse():
    ent = [1.0, 0.8, 0.5, 0.2, 0.04, 0.01]
    fired = run([(s, {'training/actor/entropy': e}) for s, e in zip(steps(6), ent)])[1]
    assert fired['entropy'] == 5000
    assert 'entropy' not in run([(s, {'training/actor/entropy': 1.0 - 0.05 * i}) for i, s in enumerate(steps(6))])[1]
    # A constant-std Gaussian actor cannot collapse.
    assert 'entropy' not in run([(s, {'training/actor/std': 1.0}) for s in steps(6)], {'const_std': True})[1]


def test_return_collapse_after_a_peak():
    # A Dreamer CartPole run's greedy returns: 452 at step 6000, then 172 and 168.
    curve = [9.8, 90.9, 222.4, 115.5, 296.6, 452.1, 171.9, 167.5]
    monitor, fired, values, printed = run([(s, {'evaluation/episode_return': r}) for s, r in zip(steps(8), curve)])
    assert fired['return_collapse'] == 8000  # two evaluations in a row below 452 - 0.5 (452 - 9.8) = 231
    assert values[6]['health/return_collapse'] == pytest.approx((452.1 - 171.9) / (452.1 - 9.8))
    assert 'peaked at 452 (step 6000)' in printed[0] and '--train_ratio' in printed[0]
    # One bad evaluation between good ones, and steady learning, do not fire.
    dip = [10, 200, 400, 150, 420, 450, 430]
    assert 'return_collapse' not in run([(s, {'evaluation/episode_return': r}) for s, r in zip(steps(7), dip)])[1]
    assert 'return_collapse' not in run([(s, {'evaluation/episode_return': 10.0 * i}) for i, s in enumerate(steps(9))])[1]
    # A rise within evaluation noise is not progress: Pendulum returns -1349, -1495, -1237, -1362, -1486.
    noise = [-1349, -1495, -1237, -1362, -1486, -1492]
    assert 'return_collapse' not in run([(s, {'evaluation/episode_return': r}) for s, r in zip(steps(6), noise)])[1]

def test_seed_outlier_names_the_seed_the_mean_hides():
    # A point-mass GCSL run, 8 seeds vmapped: seed 2 fails (0.18, 0.09, 0.08) while the others learn; mean 0.73.
    curves = [[0.89, 0.75, 0.18, 0.79, 0.8, 0.76, 0.82, 0.75], [0.84, 0.86, 0.09, 0.82, 0.9, 0.79, 0.78, 0.79],
              [0.89, 0.87, 0.08, 0.83, 0.79, 0.88, 0.71, 0.81]]
    rows = [(s, {'evaluation/overall_success': float(np.mean(c)), **{f'evaluation/success_seed{i}': v
                                                                       for i, v in enumerate(c)}})
            for s, c in zip(steps(3, 10_000), curves)]
    monitor, fired, values, printed = run(rows)
    assert fired['seed_outlier'] == 20_000  # below half the median for the second evaluation in a row
    assert values[1]['health/seed_outlier'] == pytest.approx(0.09 / np.median(curves[1]))
    assert 'seed 2 at 0.09' in printed[0] and 'median 0.805' in printed[0] and '--num_seeds 1' in printed[0]
    # The offline loops' per-seed keys too; a seed at 0.70 against 0.885 is spread, not an outlier; nor are 2 seeds.
    spread = [[0.84, 0.83, 0.78, 0.79, 0.76, 0.79, 0.82, 0.67], [0.85, 0.92, 0.87, 0.94, 0.92, 0.96, 0.81, 0.72],
              [0.89, 0.94, 0.88, 0.92, 0.87, 0.98, 0.84, 0.7]]
    offline = lambda cs: [(s, {f'evaluation/overall_success/seed{i}': v for i, v in enumerate(c)})  # noqa: E731
                          for s, c in zip(steps(3, 10_000), cs)]
    assert run(offline(curves))[1]['seed_outlier'] == 20_000
    assert 'seed_outlier' not in run(offline(spread))[1]
    assert 'seed_outlier' not in run(offline([c[1:3] for c in curves]))[1]
    # One bad evaluation is not enough; nor is a low median (nothing learned yet).
    blip = [curves[0], [0.84, 0.86, 0.8, 0.82, 0.9, 0.79, 0.78, 0.79], curves[1]]
    assert 'seed_outlier' not in run(offline(blip))[1]
    assert 'seed_outlier' not in run(offline([[0.05, 0.0, 0.06, 0.04]] * 3))[1]


def test_action_collapse_goal_ignored_one_action_and_loss_without_success():
    def row(inv, pred=0.8, data=0.8, loss=1.0):
        return {'training/collapse/goal_invariance': inv, 'training/collapse/pred_action_entropy': pred,
                'training/collapse/data_action_entropy': data, 'training/actor/loss': loss}

    collapsing = [row(0.5), row(0.97, 0.3), row(0.98, 0.05, 0.5), row(0.99, 0.04, 0.05), row(0.99, 0.03, 0.04),
                  row(0.99, 0.03, 0.03)]
    monitor, fired, values, printed = run(list(zip(steps(6), collapsing)))
    assert fired['action_collapse'] == 4000  # invariance > 0.95 for 3 logs (steps 2000-4000)
    text = '\n'.join(printed)
    assert 'ignores its goal' in text and 'nearly) one action' in text and 'collected data have collapsed' in text
    assert values[1]['health/action_collapse'] == pytest.approx(0.97)
    # Loss falling steadily while success stays flat at 0.1.
    stream = []
    for i, s in enumerate(steps(10)):
        stream.append((s, row(0.5, loss=2.0 - 0.1 * i)))
        stream.append((s, {'evaluation/overall_success': 0.1 + 0.01 * (-1) ** i}))
    assert 'loss falls while success does not' in '\n'.join(run(stream)[3])
    # A healthy run: goal read, actions varied, success rising with the falling loss.
    healthy = []
    for i, s in enumerate(steps(10)):
        healthy.append((s, row(0.4, loss=2.0 - 0.1 * i)))
        healthy.append((s, {'evaluation/overall_success': 0.1 + 0.08 * i}))
    assert 'action_collapse' not in run(healthy)[1]

def test_healthy_stream_raises_no_alarm_at_all():
    rng = np.random.default_rng(2)
    stream = []
    for i, s in enumerate(steps(30)):
        stream.append((s, {'training/critic/q_max': -5 + 0.1 * rng.normal(), 'training/actor/q_mean': -20 + rng.normal(),
                           'training/critic/loss': 0.5 - 0.005 * i, 'training/grad/norm': 3 + 0.3 * rng.normal(),
                           'training/actor/bc_loss': 0.5, 'training/actor/q_loss': 1.0, 'training/epoch': i // 10,
                           'health/probe/action_sensitivity': 0.5}))
        if i % 5 == 4:
            stream.append((s, {'evaluation/overall_success': 0.2 + 0.01 * i}))
    assert run(stream, {'value_bound': 100.0, 'tau': 0.005})[0].alarms == []


def test_a_failing_detector_is_disabled_not_fatal():
    printed = []
    monitor = HealthMonitor({'value_bound': 'oops'}, printer=printed.append)  # a bound that breaks the arithmetic
    monitor.observe(1000, {'training/critic/q_max': 1.0, 'training/epoch': 'not a number'})
    assert 'value_divergence' in monitor.failures and any('disabled' in p for p in printed)
    assert all(d.name != 'value_divergence' for d in monitor.detectors)
    assert 'health/gradient' not in monitor.observe(2000, {'training/critic/q_max': 2.0})  # the others keep running


def test_bad_configuration_is_reported():
    with pytest.raises(HealthConfigError, match="unknown health detector 'value_divergnce'"):
        parse_health_overrides(['value_divergnce.growth=3'])
    with pytest.raises(HealthConfigError, match='has no setting'):
        parse_health_overrides(['value_divergence.grow=3'])
    with pytest.raises(HealthConfigError, match='expected DETECTOR.FIELD=VALUE'):
        parse_health_overrides(['growth'])
    with pytest.raises(HealthConfigError, match='unknown health detector'):
        parse_health_overrides([], disable=['nope'])
    assert parse_health_overrides(['value_divergence.growth=3']) == {'value_divergence': {'growth': 3.0}}
    assert set(DETECTORS) == {'value_divergence', 'objective_mismatch', 'goal_ignoring', 'critic_at_chance', 'epoch_shock', 'gradient',
                              'target_tracking', 'entropy', 'world_model', 'return_collapse',
                              'action_collapse', 'in_context', 'data_wait', 'seed_outlier'}


def test_report_on_demand_with_gaps_and_nans(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2 and 'no train.csv' in capsys.readouterr().err
    rows = ['step,training/critic/q_max,training/grad/norm']
    for i, s in enumerate(range(1000, 31000, 1000)):
        q = '' if i % 7 == 3 else ('nan' if i == 29 else f'{5 * 1.6 ** max(0, i - 20):.3f}')
        rows.append(f'{s},{q},{1.0 + 0.1 * (i % 3)}')
    (tmp_path / 'train.csv').write_text('\n'.join(rows) + '\n')
    (tmp_path / 'config.json').write_text(json.dumps({'agent': {'discount': 0.99}}))
    assert main([str(tmp_path)]) == 0
    summary = json.loads((tmp_path / 'health.json').read_text())
    assert 'value_divergence' in summary['fired'] and 'gradient' in summary['fired']  # growth, then the NaN
    assert (tmp_path / 'health.md').exists() and (tmp_path / 'health_value_divergence.png').exists()


def test_values_rising_towards_their_bound_are_not_divergence():
    # A DQN learning CartPole: |Q| rises from 3 to 90 (the bound is 100) -- healthy.
    q = np.linspace(3, 90, 30)
    stream = [(s, {'training/critic/q_max': v}) for s, v in zip(steps(30), q)]
    assert 'value_divergence' not in run(stream, {'value_bound': 100.0})[1]
    # Without a known bound, the same 10x growth within the window is flagged.
    fast = [(s, {'training/critic/q_max': v}) for s, v in zip(steps(10), np.geomspace(3, 90, 10))]
    assert 'value_divergence' in run(fast)[1]


def test_world_model_floor_lag_and_optimism():
    def row(kl=2.0, below=0.0, fresh=1.0, old=1.0, imagined=10.0, real=10.0):
        return {'training/world_model/kl_dyn': kl, 'training/world_model/kl_below_floor': below,
                'training/world_model/loss_fresh': fresh, 'training/world_model/loss_old': old,
                'training/imagination/start_return': imagined, 'training/imagination/replay_return': real,
                'training/grad/prior_norm': 0.0 if below >= 0.99 else 1.0}

    context = {'free_nats': 1.0, 'free_bits': 'clip'}
    healthy = [(s, row()) for s in steps(10)]
    monitor, fired, values, _ = run(healthy, context)
    assert 'world_model' not in fired and values[0]['health/world_model'] == 2.0
    floor = [(s, row(kl=0.5, below=1.0)) for s in steps(6)]
    monitor, fired, _, _ = run(floor, context)
    assert fired['world_model'] == 5000 and fired['gradient'] == 5000  # the prior's gradient norm vanished too
    assert any('no gradient' in a.message for a in monitor.alarms if a.detector == 'world_model')
    assert 'world_model' not in run(floor, {'free_nats': 1.0, 'free_bits': 'straight_through'})[1]
    lag = [(s, row(fresh=2.0, old=1.0)) for s in steps(4)]
    monitor, fired, _, _ = run(lag, context)
    assert fired['world_model'] == 3000 and 'lags the policy' in monitor.alarms[0].message
    optimistic = [(s, row(imagined=40.0, real=10.0)) for s in steps(4)]
    monitor, fired, _, _ = run(optimistic, context)
    assert fired['world_model'] == 3000 and 'exploiting errors' in monitor.alarms[0].message
    ends = {'training/world_model/cont_at_terminal': 0.95, 'training/world_model/terminal_fraction': 0.01}
    monitor, fired, _, _ = run([(s, {**row(), **ends}) for s in steps(4)], context)
    assert fired['world_model'] == 3000 and 'does not recognise the states that end' in monitor.alarms[0].message
    # 0.7 at episode ends: discounted, not ignored, under the head's probability; ignored in full under its mode.
    soft = {**ends, 'training/world_model/cont_at_terminal': 0.7}
    assert 'world_model' not in run([(s, {**row(), **soft}) for s in steps(4)], context)[1]
    monitor, fired, _, _ = run([(s, {**row(), **soft}) for s in steps(4)], {**context, 'imag_cont': 'mode'})
    assert fired['world_model'] == 3000 and 'imag_cont=prob' in monitor.alarms[0].message
    no_ends = {**ends, 'training/world_model/terminal_fraction': 0.0}  # nothing ended: nothing to recognise
    assert 'world_model' not in run([(s, {**row(), **no_ends}) for s in steps(4)], context)[1]
    blur = {'training/world_model/rec_unexplained_worst': 0.3}
    monitor, fired, _, _ = run([(s, {**row(), **blur}) for s in steps(4)], context)
    assert fired['world_model'] == 3000 and 'blurs an observation dimension' in monitor.alarms[0].message
    sharp = {'training/world_model/rec_unexplained_worst': 0.02}
    assert 'world_model' not in run([(s, {**row(), **sharp}) for s in steps(4)], context)[1]


def test_in_context_tells_not_learning_from_not_in_context_from_fading():
    chance = float(np.log(5))
    at_chance = [(s, {'training/actor/ce': chance * 0.99, 'training/actor/chance_loss': chance}) for s in steps(8)]
    _, fired, values, printed = run(at_chance)
    assert fired['in_context'] == 5000  # logs 3, 4, 5 after the 2 warmup logs
    assert values[0]['health/in_context'] == pytest.approx(0.99)
    assert any('no better than a uniform guess' in p for p in printed)
    learning = [(s, {'training/actor/ce': chance * (0.99 - 0.1 * i), 'training/actor/chance_loss': chance})
                for i, s in enumerate(steps(8))]
    assert 'in_context' not in run(learning)[1]

    def with_gains(gains):
        rows = []
        for i, g in enumerate(gains):
            rows.append(((2 * i + 1) * 1000, {'training/actor/ce': 0.5, 'training/actor/chance_loss': chance}))
            rows.append(((2 * i + 2) * 1000, {'evaluation/in_context_gain': g}))
        return run(rows)

    _, fired, _, printed = with_gains([0.1, 0.3, 0.2])
    assert fired['in_context'] == 4000 and any('not in context' in p for p in printed)
    _, fired, _, printed = with_gains([0.5, 4.0, 5.0, 1.5, 2.0])
    assert fired['in_context'] == 10_000 and any('fading' in p for p in printed)
    assert 'in_context' not in with_gains([0.5, 3.0, 5.0, 6.0])[1]


def test_data_wait_on_the_mean_of_the_last_four_intervals_not_the_first():
    # The first log (compilation, the loader's start) is skipped. A chunked loader waits in bursts: 0.6 and 0.02 in
    # turn average 0.31 > 0.25 over four intervals, which fires at the fourth counted log (the fifth overall).
    waits = [0.9, 0.6, 0.02, 0.6, 0.02, 0.6]
    stream = [(s, {'time/data_wait_fraction': w}) for s, w in zip(steps(len(waits)), waits)]
    monitor, fired, values, printed = run(stream)
    assert fired['data_wait'] == 5000
    assert values[4]['health/data_wait'] == pytest.approx(0.31)
    assert len(printed) == 1 and '--block_size' in printed[0] and 'waiting on data' in printed[0]
    # Steady short waits, or one slow interval among fast ones, do not fire.
    for quiet in ([0.9] + [0.2] * 6, [0.9, 0.05, 0.05, 0.8, 0.05, 0.05, 0.05]):
        assert 'data_wait' not in run([(s, {'time/data_wait_fraction': w}) for s, w in zip(steps(len(quiet)), quiet)])[1]


def test_prefetcher_counts_the_time_the_loop_waits():
    import time

    from impls.data.loader import Prefetcher

    def slow(start, n):
        time.sleep(0.1)
        return start

    fetcher = Prefetcher(slow, [(i, 1) for i in range(4)])
    assert [start for start, _, _ in fetcher] == [0, 1, 2, 3]
    fetcher.close()
    assert fetcher.wait_seconds > 0.25  # four 0.1 s items consumed at once: the consumer waited for nearly all
