"""The training-health detectors: each reads the metric stream (one metric name per quantity: see
docs/ARCHITECTURE.md, "Metric vocabulary") and names a failure while it happens.

Each detector returns a `health/<name>` number every log interval and, when it starts firing, one
plain-language warning: what it saw (numbers, steps), the general causes and the knobs that usually fix it.
Thresholds are the fields of its dataclass, set with `--health NAME.FIELD=VALUE` on train.py.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Optional

import numpy as np


@dataclasses.dataclass
class Alarm:
    detector: str
    step: int
    message: str


def _first(metrics, keys):
    for key in keys:
        if key in metrics and metrics[key] is not None and np.isfinite(metrics[key]):
            return key, float(metrics[key])
    return None, None


def _slope_t(x, y):
    """Least-squares slope of y on x and its t statistic."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or np.ptp(x) == 0:
        return 0.0, 0.0
    xc = x - x.mean()
    slope = np.sum(xc * (y - y.mean())) / np.sum(xc**2)
    resid = y - y.mean() - slope * xc
    se = np.sqrt(np.sum(resid**2) / (len(x) - 2) / np.sum(xc**2))
    return float(slope), float(slope / se) if se > 0 else (math.copysign(np.inf, slope) if slope else 0.0)


class Detector:
    """Base class. Subclasses are dataclasses whose fields are their documented thresholds."""

    name = 'detector'
    keys: tuple = ()  # metrics the report plots

    def reset_state(self):
        self.history = []  # (step, metrics) rows seen
        self.firing = False

    def observe(self, step: int, metrics: dict, context: dict) -> tuple[Optional[float], Optional[str]]:
        """Return (health value or None, warning text if the detector starts firing now)."""
        raise NotImplementedError


@dataclasses.dataclass
class ValueDivergence(Detector):
    """Q/value scale growing by more than `growth` within `window` logs (past `growth_min_fraction` of the
    bound when one is known: healthy learning also raises |Q| from ~0), or leaving the bound
    `bound_margin` x |r|max / (1 - gamma); and the collapse that often follows (the scale falling by
    `collapse` x from its peak). health/value_divergence = scale / bound."""

    growth: float = 10.0
    window: int = 10
    bound_margin: float = 1.5
    collapse: float = 10.0
    min_scale: float = 1.0  # growth below this scale is ignored (values start near 0)
    # With a bound, growth counts only above this fraction of it: a critic that learns a long horizon (Dreamer on
    # CartPole: ~13 -> ~280 for a bound of 333) rises 10x or more on its way to a value near the bound.
    growth_min_fraction: float = 0.9
    name = 'value_divergence'

    def reset_state(self):
        super().reset_state()
        self.active = set()

    keys = ('training/critic/q_max', 'training/critic/q_min', 'training/actor/q_mean', 'training/value/v_min',
            'training/critic/v_max', 'training/critic/v_min',
            'training/critic/target_max', 'training/critic/target_min')

    def observe(self, step, metrics, context):
        scales = [abs(float(metrics[k])) for k in self.keys if k in metrics and np.isfinite(metrics[k])]
        if not scales:
            return None, None
        scale = max(scales)
        self.history.append((step, scale))
        bound = context.get('value_bound')
        recent = [s for _, s in self.history[-self.window - 1 :]]
        peak_step, peak = max(self.history, key=lambda r: r[1])
        problems = {}
        if bound and scale > self.bound_margin * bound:
            problems['bound'] = f'|Q| reached {scale:.3g}, beyond the bound |r|max/(1-gamma) = {bound:.3g}'
        low = min(recent)
        # Values rise from ~0 towards their true scale while a policy improves: with a known bound, growth
        # only counts once it carries |Q| past `growth_min_fraction` of the bound.
        big_enough = scale >= self.min_scale and (not bound or scale > self.growth_min_fraction * bound)
        if big_enough and scale > self.growth * max(low, 1e-8) and low > 0:
            start = self.history[-len(recent)][0]
            problems['growth'] = f'|Q| grew {scale / low:.1f}x in {step - start} steps ({low:.3g} -> {scale:.3g})'
        if peak >= self.min_scale and scale < peak / self.collapse and step > peak_step:
            problems['collapse'] = f'|Q| collapsed from {peak:.3g} (step {peak_step}) to {scale:.3g}'
        value = scale / bound if bound else scale
        new = set(problems) - self.active
        self.active = set(problems)
        if not new:  # warn once per kind of trouble while it lasts
            return value, None
        return value, (
            f'value divergence at step {step}: ' + '; '.join(problems.values()) + '. Likely causes: learning rate too '
            'high, target network tracking the online one too closely, long n-step returns, too many updates per '
            'sample, unclipped rewards. Knobs: lower lr (--agent.lr, by 3-10x), lower tau (--agent.tau; a half-life of '
            'several hundred updates, e.g. 0.005) or add a periodic hard target refresh, shorter n-step, gradient '
            'clipping, target clamping, reward scaling.'
        )


@dataclasses.dataclass
class ObjectiveMismatch(Detector):
    """Training loss improving while evaluation worsens over the last `window` evaluations: both slopes
    significant (|t| > `t_threshold`) with opposite meaning. health/objective_mismatch = the loss-slope
    t statistic times the eval-slope t statistic (positive when both fall)."""

    window: int = 5
    t_threshold: float = 2.0
    loss_keys: tuple = ('training/critic/loss',)
    eval_keys: tuple = ('evaluation/overall_success', 'evaluation/episode_return')
    name = 'objective_mismatch'
    keys = loss_keys + eval_keys

    def reset_state(self):
        super().reset_state()
        self.losses, self.evals = [], []

    def observe(self, step, metrics, context):
        _, loss = _first(metrics, self.loss_keys)
        if loss is not None:
            self.losses.append((step, loss))
        eval_key, ev = _first(metrics, self.eval_keys)
        if ev is not None:
            self.evals.append((step, ev))
        if len(self.evals) < self.window:
            return None, None
        evals = self.evals[-self.window :]
        start = evals[0][0]
        losses = [(s, v) for s, v in self.losses if s >= start]
        if len(losses) < 3:
            return None, None
        loss_slope, loss_t = _slope_t(*zip(*losses))
        ev_slope, ev_t = _slope_t(*zip(*evals))
        value = loss_t * ev_t
        mismatch = loss_t < -self.t_threshold and ev_t < -self.t_threshold
        if not mismatch:
            self.firing = False
            return value, None
        if self.firing:
            return value, None
        self.firing = True
        return value, (
            f'objective mismatch at step {step}: the training loss fell (slope {loss_slope:.3g}/step, t = {loss_t:.1f}) '
            f'while {eval_key} fell too (slope {ev_slope:.3g}/step, t = {ev_t:.1f}) over steps {start}-{step}. '
            'Likely causes: the loss measures fit to targets that have drifted (bootstrapping on a diverging critic), '
            'overfitting a small or stale dataset, a BC term that improves imitation but not the task. Knobs: check '
            'value divergence, lower lr, more data or augmentation, lower alpha, early stopping on evaluation.'
        )


@dataclasses.dataclass
class GoalIgnoring(Detector):
    """Goal-conditioned agents: the BC term dominating the actor loss (|bc_loss| / |q_loss| above
    `bc_ratio`), and the periodic goal probe (impls.health.probe, the measure of
    test_goal_conditioning.py) finding action sensitivity below `min_sensitivity` after `warmup` steps.
    health/goal_ignoring = the action sensitivity when probed, else the BC/Q ratio."""

    bc_ratio: float = 10.0
    min_sensitivity: float = 0.05
    warmup: int = 5000
    name = 'goal_ignoring'
    keys = ('training/actor/bc_loss', 'training/actor/q_loss', 'health/probe/action_sensitivity')

    def observe(self, step, metrics, context):
        ratio = None
        if 'training/actor/bc_loss' in metrics and 'training/actor/q_loss' in metrics:
            ratio = abs(metrics['training/actor/bc_loss']) / max(abs(metrics['training/actor/q_loss']), 1e-8)
        sensitivity = metrics.get('health/probe/action_sensitivity')
        if ratio is None and sensitivity is None:
            return None, None
        value = sensitivity if sensitivity is not None else ratio
        if sensitivity is None:  # no probe at this log: keep the current state
            return value, None
        if step < self.warmup or sensitivity >= self.min_sensitivity:
            self.firing = False
            return value, None
        if self.firing:
            return value, None
        self.firing = True
        detail = f'; the BC term is {ratio:.1f}x the Q term' if ratio is not None else ''
        return value, (
            f'goal ignoring at step {step}: swapping the goal moves the policy\'s action by only '
            f'{sensitivity:.3f} of its variation across states (threshold {self.min_sensitivity}){detail}. The agent '
            'imitates the data instead of reaching goals (it takes the same action whatever the goal). Likely causes: BC weight alpha too '
            'large for this data (alpha near 1 lets imitation drown the Q term), data whose actions do not depend on the '
            'goal. Knobs: lower --agent.alpha (try 0.1-0.3), more goal-reaching data, check with '
            'test_goal_conditioning.py.'
        )


@dataclasses.dataclass
class CriticAtChance(Detector):
    """Contrastive critics (CRL, CMD): categorical accuracy -- how often the true future goal gets the highest
    logit among the batch's goals -- still below `factor` x chance (1 / batch size) after `warmup` steps, for
    `patience` logs in a row. Such a critic has not left the constant, goal-blind solution: every goal looks the
    same to it, and an actor trained on it ignores the goal. health/critic_at_chance = accuracy / chance."""

    factor: float = 2.0
    warmup: int = 1000
    patience: int = 2
    name = 'critic_at_chance'
    keys = ('training/critic/categorical_accuracy', 'training/critic/loss', 'training/critic/logits_pos',
            'training/critic/logits_neg')

    def reset_state(self):
        super().reset_state()
        self.count = 0

    def observe(self, step, metrics, context):
        accuracy = metrics.get('training/critic/categorical_accuracy')
        batch = context.get('batch_size')
        if accuracy is None or not batch:
            return None, None
        chance = 1.0 / batch
        ratio = accuracy / chance
        stuck = step >= self.warmup and ratio < self.factor
        self.count = self.count + 1 if stuck else 0
        if self.count < self.patience:
            self.firing = False
            return ratio, None
        if self.firing:
            return ratio, None
        self.firing = True
        pos, neg = metrics.get('training/critic/logits_pos'), metrics.get('training/critic/logits_neg')
        logits = f'; positive and negative logits {pos:.3g} vs {neg:.3g}' if pos is not None and neg is not None else ''
        return ratio, (
            f'critic at chance at step {step}: categorical accuracy {accuracy:.4f} is {ratio:.1f}x chance (1/{batch}) '
            f'for {self.count} logs{logits}. The contrastive critic gives every goal the same score: it has not '
            'learned anything about goals, and the actor trained on it cannot use them. Likely causes: the critic '
            'settled in the constant solution (logits all at the base rate; for CMD without a logit bias the '
            'distances grow to ~sqrt(D) log(B - 1) through a goal-independent offset), too few distinct goals, a '
            'learning rate too low or too high. Knobs: keep --agent.logit_bias on (CMD), --agent.lr, a larger batch, '
            'check the data with test_goal_conditioning.py.'
        )


@dataclasses.dataclass
class EpochShock(Detector):
    """Metric jumps at loader epoch boundaries: the jump of `metric` across a boundary larger than
    `factor` x the median jump between other consecutive logs, at `min_boundaries` boundaries.
    health/epoch_shock = the last boundary jump / the median other jump."""

    factor: float = 4.0
    min_boundaries: int = 2
    metric: str = 'training/actor/q_mean'
    name = 'epoch_shock'
    keys = ('training/actor/q_mean', 'training/epoch')

    def reset_state(self):
        super().reset_state()
        self.prev = None
        self.other_jumps, self.boundary_jumps = [], []

    def observe(self, step, metrics, context):
        if self.metric not in metrics or 'training/epoch' not in metrics:
            return None, None
        value, epoch = float(metrics[self.metric]), int(metrics['training/epoch'])
        result = None
        if self.prev is not None:
            jump = abs(value - self.prev[1])
            if epoch != self.prev[0]:
                self.boundary_jumps.append((step, jump))
            else:
                self.other_jumps.append(jump)
        self.prev = (epoch, value)
        if not self.boundary_jumps or len(self.other_jumps) < 5:
            return result, None
        typical = float(np.median(self.other_jumps)) or 1e-8
        ratios = [j / typical for _, j in self.boundary_jumps]
        shocks = [(s, r) for (s, _), r in zip(self.boundary_jumps, ratios) if r > self.factor]
        if len(shocks) < self.min_boundaries or self.firing:
            return ratios[-1], None
        self.firing = True
        listed = ', '.join(f'step {s} ({r:.1f}x)' for s, r in shocks[-5:])
        return ratios[-1], (
            f'epoch-boundary shocks: {self.metric} jumps at loader epoch boundaries {listed} the median jump '
            f'between other logs ({typical:.3g}). Likely causes: the block-shuffle loader changes the data order at '
            'each epoch while consecutive batches are correlated (blocks of one chunk). Knobs: a fixed --shuffle_seed, '
            'smaller --block_size or larger --chunk_size, or i.i.d. sampling for data that fits in memory.'
        )


@dataclasses.dataclass
class GradientTrouble(Detector):
    """Gradient norm spikes (the newest norm above `swing` x the median of the `window` logs before it, at least 3:
    a norm that starts high and decays, as at the start of training, is no spike), a clipped fraction above
    `max_clip_fraction`, a loss term whose gradient norm stays below `vanish` for `vanish_logs` logs
    (any `training/grad/<term>_norm` metric), and NaN/inf in any metric. health/gradient = the newest grad norm
    over that median."""

    window: int = 10
    swing: float = 10.0
    max_clip_fraction: float = 0.5
    vanish: float = 1e-8
    vanish_logs: int = 5
    name = 'gradient'
    keys = ('training/grad/norm', 'training/grad/clipped_fraction')

    def reset_state(self):
        super().reset_state()
        self.norms = []
        self.small = {}
        self.reported = set()

    def _once(self, kind, text):
        if kind in self.reported:
            return None
        self.reported.add(kind)
        return text

    def observe(self, step, metrics, context):
        bad = [k for k, v in metrics.items() if isinstance(v, (int, float)) and not np.isfinite(v)]
        if bad:
            return math.nan, self._once('nan', (
                f'non-finite values at step {step}: {", ".join(bad[:5])}. The run stops; the last checkpoint is intact. '
                'Likely causes: divergence (see value_divergence), a learning rate too high, log of 0, bad data.'
            ))
        messages = []
        for key, value in metrics.items():
            if key.startswith('training/grad/') and key.endswith('_norm') and key != 'training/grad/norm':
                count = self.small.get(key, 0) + 1 if abs(value) < self.vanish else 0
                self.small[key] = count
                if count >= self.vanish_logs:
                    messages.append(self._once(f'vanish:{key}', (
                        f'vanishing gradient at step {step}: {key} has stayed below {self.vanish} for {count} logs; '
                        'that loss term no longer trains anything (e.g. a KL held at its free-bits floor by '
                        'max(KL, free), which has zero gradient below the floor). Knobs: a smaller free-bits value, a '
                        'straight-through floor, or a loss scale for that term.'
                    )))
        clip = metrics.get('training/grad/clipped_fraction')
        if clip is not None and clip > self.max_clip_fraction:
            messages.append(self._once('clip', (
                f'gradient clipping active on {100 * clip:.0f}% of updates at step {step} (threshold '
                f'{100 * self.max_clip_fraction:.0f}%). The clip norm now sets the step size. Knobs: lower lr, raise '
                'max_grad_norm, Huber instead of MSE, check value divergence.'
            )))
        value = None
        if 'training/grad/norm' in metrics:
            newest = float(metrics['training/grad/norm'])
            before = self.norms[-self.window :]
            self.norms.append(newest)
            if before:
                median = float(np.median(before))
                value = newest / max(median, 1e-12)
                if len(before) >= 3 and value > self.swing:
                    messages.append(self._once(f'swing:{len(self.norms) // self.window}', (
                        f'gradient norm spikes to {value:.1f}x its median over the {len(before)} logs before step '
                        f'{step} ({median:.3g} -> {newest:.3g}). Likely causes: a few large TD errors (priorities, '
                        'outliers), lr too high. Knobs: gradient clipping, Huber loss, lower lr, larger batch.'
                    )))
        messages = [m for m in messages if m]
        return value, ('\n'.join(messages) if messages else None)


@dataclasses.dataclass
class TargetTracking(Detector):
    """Soft target updates target <- tau * online + (1 - tau) * target: the target's half-life is
    ln 2 / -ln(1 - tau) updates (and that many / steps_per_second seconds). Fires when it is below
    `min_half_life` updates. health/target_half_life = half-life in updates."""

    min_half_life: float = 100.0
    name = 'target_tracking'
    keys = ()  # the report plots health/target_tracking (the half-life) itself

    def observe(self, step, metrics, context):
        tau = context.get('tau')
        if not tau:
            return None, None
        updates_per_step = context.get('updates_per_step', 1.0)
        half_life = math.log(2) / -math.log1p(-tau) / updates_per_step
        if half_life >= self.min_half_life or self.firing:
            return half_life, None
        self.firing = True
        sps = metrics.get('time/steps_per_second')
        seconds = f' ({half_life / sps:.2g} s at {sps:.0f} steps/s)' if sps else ''
        tracked = 1 - (1 - tau) ** (100 * updates_per_step)
        return half_life, (
            f'target network tracks the online one closely: tau = {tau} gives a half-life of {half_life:.0f} steps'
            f'{seconds}; after 100 steps the target has moved {100 * tracked:.0f}% of the way. A target that follows '
            'the online network this fast gives little of the stability it is for. Knobs: lower tau (--agent.tau, e.g. '
            '0.005, a half-life of ~140 updates), or a periodic hard refresh instead.'
        )


@dataclasses.dataclass
class EntropyCollapse(Detector):
    """Stochastic actors: entropy (or mean std) falling below `fraction` of its first logged value.
    health/entropy = entropy / first entropy."""

    fraction: float = 0.05
    name = 'entropy'
    keys = ('training/actor/entropy', 'training/actor/std')

    def reset_state(self):
        super().reset_state()
        self.first = None

    def observe(self, step, metrics, context):
        key, value = _first(metrics, self.keys)
        if value is None:
            return None, None
        if self.first is None:
            self.first = (key, value)
        if key != self.first[0] or self.first[1] <= 0:
            return None, None
        ratio = value / self.first[1]
        if key == 'training/actor/std' and context.get('const_std'):
            return ratio, None  # a constant std cannot collapse
        if ratio >= self.fraction or self.firing:
            self.firing = ratio < self.fraction
            return ratio, None
        self.firing = True
        return ratio, (
            f'policy entropy collapse at step {step}: {key} fell to {value:.3g}, {100 * ratio:.1f}% of its first value '
            f'{self.first[1]:.3g}. The policy is nearly deterministic and stops exploring or hedging. Knobs: an entropy '
            'bonus (Dreamer: actor entropy 3e-4), a lower actor lr, a larger BC/temperature term.'
        )


@dataclasses.dataclass
class WorldModelHealth(Detector):
    """World-model agents (Dreamer). (1) The dynamics KL at or below its free-nats floor for `floor_logs` logs under
    DreamerV3's max(KL, free): the prior then learns nothing (training/grad/prior_norm is 0). (2) The world model
    fitting the newest data worse than older data, loss_fresh / loss_old above `lag_ratio` for `lag_logs` logs: the
    model lags the policy now collecting data. (3) Imagined returns above the real lambda-returns of the same replayed
    states by more than `optimism` of their size for `optimism_logs` logs: the actor exploits model errors.
    (4) The continue head, at replayed steps that really ended an episode, above `terminal_cont` (0.5 when imagination
    uses its mode: every such step then continues in full; `terminal_cont_prob` when it uses its probability) for
    `terminal_logs` logs: the model does not recognise the states that end episodes, so imagination runs through
    them. (5) The decoder leaving more than `unexplained` of some observation dimension's variance for
    `unexplained_logs` logs: the state blurs that dimension. health/world_model = dynamics KL / free nats."""

    floor_logs: int = 5
    lag_ratio: float = 1.5
    lag_logs: int = 3
    optimism: float = 0.5
    optimism_logs: int = 3
    terminal_cont: float = 0.5
    terminal_cont_prob: float = 0.9
    terminal_logs: int = 3
    unexplained: float = 0.15
    unexplained_logs: int = 3
    name = 'world_model'
    keys = ('training/world_model/kl_dyn', 'training/world_model/loss_fresh', 'training/world_model/loss_old',
            'training/imagination/start_return', 'training/imagination/replay_return', 'training/grad/prior_norm',
            'training/world_model/cont_at_terminal', 'training/world_model/rec_unexplained_worst')

    def reset_state(self):
        super().reset_state()
        self.counts = {'floor': 0, 'lag': 0, 'optimism': 0, 'terminal': 0, 'unexplained': 0}
        self.reported = set()

    def _count(self, kind, condition, needed, text):
        self.counts[kind] = self.counts[kind] + 1 if condition else 0
        if self.counts[kind] >= needed and kind not in self.reported:
            self.reported.add(kind)
            return text
        return None

    def observe(self, step, metrics, context):
        kl = metrics.get('training/world_model/kl_dyn')
        if kl is None or not np.isfinite(kl):
            return None, None
        free = context.get('free_nats') or 0.0
        messages = []
        below = metrics.get('training/world_model/kl_below_floor', 0.0)
        prior_norm = metrics.get('training/grad/prior_norm', float('nan'))
        if free and context.get('free_bits', 'clip') == 'clip':
            messages.append(self._count('floor', below >= 0.99, self.floor_logs, (
                f'the dynamics KL sits at its floor: {100 * below:.0f}% of steps below free nats {free:g} (mean KL '
                f'{kl:.3g}) for {self.floor_logs} logs at step {step}, and under max(KL, free) the prior gets no '
                f'gradient there (training/grad/prior_norm = {prior_norm:.3g}). '
                'Usually harmless once the model is good; if predictions from imagination are poor, use '
                '--agent.free_bits=straight_through (the gradient passes below the floor) or lower '
                '--agent.free_nats.')))
        fresh, old = metrics.get('training/world_model/loss_fresh'), metrics.get('training/world_model/loss_old')
        if fresh is not None and old is not None and old > 0:
            ratio = fresh / old
            messages.append(self._count('lag', ratio > self.lag_ratio, self.lag_logs, (
                f'the world model lags the policy: its loss on the newest data is {ratio:.2f}x that on older data for '
                f'{self.lag_logs} logs at step {step}. The actor is reaching states the model has not learned, so its '
                'imagination is wrong there. Knobs: a higher --train_ratio (more model updates per step), a larger '
                'model, a lower actor learning rate.')))
        imagined = metrics.get('training/imagination/start_return')
        real = metrics.get('training/imagination/replay_return')
        if imagined is not None and real is not None:
            gap = (imagined - real) / max(1.0, abs(real))
            messages.append(self._count('optimism', gap > self.optimism, self.optimism_logs, (
                f'imagined returns exceed real ones: from the same replayed states the model imagines {imagined:.3g}, '
                f'the real rewards give {real:.3g} ({100 * gap:.0f}% more) for {self.optimism_logs} logs at step '
                f'{step}. '
                'The actor is exploiting errors of the world model. Knobs: a higher --train_ratio, a shorter '
                '--agent.imag_horizon, a larger world model.')))
        cont = metrics.get('training/world_model/cont_at_terminal')
        if cont is not None and metrics.get('training/world_model/terminal_fraction', 1.0) > 0:
            mode = context.get('imag_cont', 'prob') == 'mode'
            limit = self.terminal_cont if mode else self.terminal_cont_prob
            messages.append(self._count('terminal', cont > limit, self.terminal_logs, (
                f'the world model does not recognise the states that end episodes: at replayed terminal steps its '
                f'continue head says {cont:.2f} on average (target 0) for {self.terminal_logs} logs at step {step}, '
                'so imagined rollouts run through the failures and the actor cannot see them coming. Knobs: '
                + ('--agent.imag_cont=prob (an uncertain head still discounts the steps near an end; with mode, '
                   'anything above 0.5 continues in full), ' if mode else '')
                + 'a higher --train_ratio, a larger world model, --agent.rec_scale (vector observations).')))
        unexplained = metrics.get('training/world_model/rec_unexplained_worst')
        if unexplained is not None:
            messages.append(self._count('unexplained', unexplained > self.unexplained, self.unexplained_logs, (
                f'the world model blurs an observation dimension: its decoder leaves {100 * unexplained:.0f}% of '
                f'that dimension\'s variance unexplained for {self.unexplained_logs} logs at step {step}. Squared '
                'error is a unit-variance likelihood, so detail much smaller than 1 (in symlog units) costs more KL '
                'than it saves; what the state does not hold, the actor and critic cannot use. Knobs: '
                '--agent.rec_scale (e.g. 100 for small-valued vector observations), a larger world model, a higher '
                '--train_ratio.')))
        messages = [m for m in messages if m]
        return (kl / free if free else kl), ('\n'.join(messages) if messages else None)


@dataclasses.dataclass
class ReturnCollapse(Detector):
    """Peak-then-collapse: the evaluation score falls back from its best by more than `drop` of the progress made
    (best - first evaluation) and stays there for `evals` evaluations in a row. Progress counts once it is at least
    `min_progress` of the scores' size (max(|first|, |best|)): smaller rises are evaluation noise. health/return_collapse
    = (best - current) / (best - first): 0 at the best, 1 back at the start."""

    drop: float = 0.5
    evals: int = 2
    min_progress: float = 0.25
    name = 'return_collapse'
    keys = ('evaluation/episode_return', 'evaluation/overall_success', 'evaluation/return_mean')

    def reset_state(self):
        super().reset_state()
        self.first = self.best = None
        self.below = 0

    def observe(self, step, metrics, context):
        key, value = _first(metrics, self.keys)
        if value is None:
            return None, None
        if self.first is None:
            self.first = (key, value)
            self.best = (step, value)
            return 0.0, None
        if key != self.first[0]:
            return None, None
        if value > self.best[1]:
            self.best = (step, value)
        progress = self.best[1] - self.first[1]
        if progress <= 0 or progress < self.min_progress * max(abs(self.first[1]), abs(self.best[1])):
            self.below = 0
            return 0.0, None
        fallen = (self.best[1] - value) / progress
        self.below = self.below + 1 if fallen > self.drop else 0
        if self.below < self.evals:
            self.firing = False
            return fallen, None
        if self.firing:
            return fallen, None
        self.firing = True
        return fallen, (
            f'performance collapse at step {step}: {key} peaked at {self.best[1]:.3g} (step {self.best[0]}) and has '
            f'been below {self.best[1] - self.drop * progress:.3g} for {self.below} evaluations (now {value:.3g}; it '
            f'started at {self.first[1]:.3g}). The policy found a good behaviour and lost it. Usual causes: the policy '
            'changing faster than the value or model that trains it can follow, a critic or world model fitted to '
            'data the new policy no longer visits, too few evaluation episodes to tell (noise). Knobs: a lower actor '
            'learning rate, more updates per environment step (--train_ratio), a larger replay (--buffer_size), more '
            '--eval_episodes.'
        )


@dataclasses.dataclass
class ActionCollapse(Detector):
    """Goal-conditioned supervised learning (GCSL) collapsing to one action, which its own data then confirm.
    (1) The goal stops mattering: the fraction of states whose predicted action is unchanged under another goal
    (training/collapse/goal_invariance) above `invariance` for `logs` logs. (2) One action everywhere: the entropy of
    the predicted-action histogram below `entropy` (a fraction of log #actions) for `logs` logs. (3) The collected data
    have collapsed too: the data's action entropy below `entropy`. (4) The loss falling while success does not: over
    the last `window` evaluations the loss slope significant (t < -`t_threshold`), success not rising significantly
    (t < `success_t`) and on average below `success_ceiling`. health/action_collapse = the goal invariance.
    Calibration (benchmarks/RESULTS.md, issue 15): healthy GCSL runs keep the invariance at 0.2-0.45; a transformer
    that processes state and goal separately climbed to 0.84 on LunarLander while success stayed near 0.1."""

    invariance: float = 0.75
    entropy: float = 0.1
    logs: int = 3
    window: int = 5
    t_threshold: float = 2.0
    success_t: float = 1.0
    success_ceiling: float = 0.5
    name = 'action_collapse'
    keys = ('training/collapse/goal_invariance', 'training/collapse/pred_action_entropy',
            'training/collapse/data_action_entropy', 'training/actor/loss', 'evaluation/overall_success')

    def reset_state(self):
        super().reset_state()
        self.counts = {'invariant': 0, 'one_action': 0, 'data': 0}
        self.reported = set()
        self.losses, self.evals = [], []

    def _count(self, kind, condition, text):
        self.counts[kind] = self.counts[kind] + 1 if condition else 0
        if self.counts[kind] >= self.logs and kind not in self.reported:
            self.reported.add(kind)
            return text
        return None

    def observe(self, step, metrics, context):
        messages = []
        success = metrics.get('evaluation/overall_success')
        if success is not None and np.isfinite(success):
            self.evals.append((step, float(success)))
            messages.append(self._loss_without_success(step))
        invariance = metrics.get('training/collapse/goal_invariance')
        if invariance is None or not np.isfinite(invariance):
            messages = [m for m in messages if m]
            return None, ('\n'.join(messages) if messages else None)
        loss = metrics.get('training/actor/loss')
        if loss is not None and np.isfinite(loss):
            self.losses.append((step, float(loss)))
        pred = metrics.get('training/collapse/pred_action_entropy', 1.0)
        data = metrics.get('training/collapse/data_action_entropy', 1.0)
        knobs = ('Knobs: merge state and goal early in the network (one MLP over [s, g]), more random collection '
                 '(--agent.random_steps) or sampled collection (--agent.collect=sample), a regulariser on the '
                 'representation (VICReg), a lower learning rate.')
        messages.append(self._count('invariant', invariance > self.invariance, (
            f'the policy ignores its goal: for {100 * invariance:.0f}% of states the predicted action does not change '
            f'when the goal is swapped for another ({self.logs} logs to step {step}). A goal-conditioned policy that '
            f'does not read its goal reaches goals only by chance, and its own data then teach it the same. {knobs}')))
        messages.append(self._count('one_action', pred < self.entropy, (
            f'the policy predicts (nearly) one action: the entropy of its predicted actions is {100 * pred:.0f}% of '
            f'the maximum for {self.logs} logs to step {step}. {knobs}')))
        messages.append(self._count('data', data < self.entropy, (
            f'the collected data have collapsed: the entropy of the actions in replay batches is {100 * data:.0f}% '
            f'of the maximum for {self.logs} logs to step {step}; supervised learning on them can only confirm the '
            f'collapse. {knobs}')))
        messages = [m for m in messages if m]
        return invariance, ('\n'.join(messages) if messages else None)

    def _loss_without_success(self, step):
        if len(self.evals) < self.window or 'loss' in self.reported:
            return None
        evals = self.evals[-self.window:]
        losses = [(s, v) for s, v in self.losses if s >= evals[0][0]]
        if len(losses) < 3:
            return None
        loss_slope, loss_t = _slope_t(*zip(*losses))
        _, success_t = _slope_t(*zip(*evals))
        mean_success = float(np.mean([v for _, v in evals]))
        if loss_t < -self.t_threshold and success_t < self.success_t and mean_success < self.success_ceiling:
            self.reported.add('loss')
            return (f'the loss falls while success does not: the training loss fell (t = {loss_t:.1f}) over steps '
                    f'{evals[0][0]}-{step} while success stayed at {mean_success:.2f} on average (not rising '
                    f'significantly, t = {success_t:.1f}). The '
                    'policy fits its own data better without reaching more goals: often the data collapsing onto '
                    'fewer actions (see training/collapse/*). Knobs: more random or sampled collection, a smaller '
                    'learning rate, a network that merges state and goal early.')
        return None


@dataclasses.dataclass
class InContextHealth(Detector):
    """In-context RL (AD, compressed AD) trained on learning histories, three failures told apart:
    (1) not learning: the action cross-entropy (training/actor/ce) within `margin` of chance (ln A,
        training/actor/chance_loss) for `logs` logs after the first `warmup_logs`;
    (2) learning, but not in context: the loss clearly below chance (under (1 - learned) x chance) while the in-context
        gain (evaluation/in_context_gain: last-10 minus first-10 episode returns) stays under `min_gain` for `evals`
        evaluations in a row;
    (3) in-context ability fading: the gain reached at least 2 x min_gain, then fell under half its best for `evals`
        evaluations in a row.
    health/in_context = the cross-entropy as a fraction of chance."""

    margin: float = 0.03
    logs: int = 3
    warmup_logs: int = 2
    learned: float = 0.2
    min_gain: float = 1.0
    evals: int = 2
    name = 'in_context'
    keys = ('training/actor/ce', 'training/actor/chance_loss', 'evaluation/in_context_gain')

    def reset_state(self):
        super().reset_state()
        self.train_logs = self.at_chance = self.flat = self.faded = 0
        self.ce = self.best_gain = None
        self.fired = set()

    def _fire(self, kind, text):
        if kind in self.fired:
            return None
        self.fired.add(kind)
        return text

    def observe(self, step, metrics, context):
        ce, chance = metrics.get('training/actor/ce'), metrics.get('training/actor/chance_loss')
        gain = metrics.get('evaluation/in_context_gain')
        value, warning = None, None
        if ce is not None and chance:
            self.train_logs += 1
            self.ce, value = (ce, chance), ce / chance
            at = ce >= (1 - self.margin) * chance
            self.at_chance = self.at_chance + 1 if at and self.train_logs > self.warmup_logs else 0
            if self.at_chance >= self.logs:
                warning = self._fire('chance', (
                    f'the action loss sits at chance level at step {step}: cross-entropy {ce:.3f} against ln A = '
                    f'{chance:.3f} for {self.at_chance} logs. The model predicts the histories\' actions no better than '
                    'a uniform guess: it is not learning at all. Usual causes: a learning rate too high or too low '
                    '(--agent.lr, --agent.num_warmup_steps), the actions not reaching the loss (token layout), and for '
                    'compressed AD gradients lost through the compression rounds (compare compression/ce_depth0 with '
                    'the deeper depths; lower --agent.max_compression_depth to start).'))
        if gain is not None and np.isfinite(gain):
            self.best_gain = gain if self.best_gain is None else max(self.best_gain, gain)
            learned = self.ce is not None and self.ce[0] < (1 - self.learned) * self.ce[1]
            self.flat = self.flat + 1 if learned and gain < self.min_gain else 0
            if self.flat >= self.evals:
                warning = self._fire('flat', (
                    f'the model learns the histories but not in context at step {step}: the loss is well below chance '
                    f'({self.ce[0]:.3f} against {self.ce[1]:.3f}) while the last 10 in-context episodes beat the first '
                    f'10 by only {gain:.2f} for {self.flat} evaluations. It imitates an average policy instead of '
                    'improving from its context. Usual causes: the evaluation\'s sampling temperature (at 1 small errors '
                    'compound over thousands of steps, at 0 the policy gets stuck; try --eval_temperature 0.2-0.5), a '
                    'context shorter than a few episodes (--agent.seq_len), '
                    'histories whose policy changes too slowly within a context (a faster source, subsampled '
                    'episodes), too few histories per task (memorising the training tasks), or too few updates.')) \
                    or warning
            strong = self.best_gain >= 2 * self.min_gain
            self.faded = self.faded + 1 if strong and gain < 0.5 * self.best_gain else 0
            if self.faded >= self.evals:
                warning = self._fire('fade', (
                    f'in-context ability fading at step {step}: the in-context gain reached {self.best_gain:.2f} and '
                    f'has been below half of it for {self.faded} evaluations (now {gain:.2f}). In-context learning can '
                    'appear and then give way to memorising the training tasks. Knobs: more tasks or histories per '
                    'task, more dropout (--agent.tf_dropout), stop at the checkpoint of the best gain.')) or warning
        return value, warning


@dataclasses.dataclass
class DataWait(Detector):
    """The training loop waiting on its data: the fraction of the time the loop spent blocked on the next prefetched
    batches (time/data_wait_fraction per log interval), averaged over the last `window` logs, above `fraction` (the
    first log, which includes compilation and the loader's start, is skipped). A window, not a streak: a chunked
    loader waits in bursts at chunk boundaries, so single intervals alternate between long and no waits.
    health/data_wait = that average."""

    fraction: float = 0.25
    window: int = 4
    name = 'data_wait'
    keys = ('time/data_wait_fraction',)

    def reset_state(self):
        super().reset_state()
        self.seen, self.recent = 0, []

    def observe(self, step, metrics, context):
        value = metrics.get('time/data_wait_fraction')
        if value is None:
            return None, None
        self.seen += 1
        if self.seen == 1:
            return float(value), None
        self.recent = (self.recent + [float(value)])[-self.window:]
        mean = sum(self.recent) / len(self.recent)
        if len(self.recent) < self.window or mean <= self.fraction or self.firing:
            self.firing = self.firing and mean > self.fraction
            return mean, None
        self.firing = True
        return mean, (
            f'the training loop is waiting on data at step {step}: {100 * mean:.0f}% of the last {self.window} log '
            f'intervals went to waiting for the next batches (above {100 * self.fraction:.0f}%), so the loader, not the '
            'update, sets the speed. Likely causes: a dataset on a slow or network disk, or a memory-mapped dataset '
            'larger than the page cache read at random. Knobs: a larger --block_size and --chunk_size (fewer, longer '
            'sequential reads), the dataset on a local SSD or loaded into memory (an .npz), a larger '
            '--updates_per_dispatch.'
        )


_SEED_KEY = re.compile(r'^evaluation/(overall_success|episode_return|return_mean|success)(?:_seed|/seed)(\d+)$')


@dataclasses.dataclass
class SeedOutlier(Detector):
    """One seed of a --num_seeds run far behind the others, which the mean over seeds hides: a seed whose evaluation
    score is below `ratio` of the seeds' median for `evals` evaluations in a row, once the median is at least
    `min_median` (per-seed keys: evaluation/success_seedN, evaluation/KEY/seedN; 3 seeds or more).
    health/seed_outlier = the worst seed's score over the median."""

    ratio: float = 0.5
    evals: int = 2
    min_median: float = 0.1
    name = 'seed_outlier'

    def reset_state(self):
        super().reset_state()
        self.behind = {}

    def observe(self, step, metrics, context):
        per_seed = {}
        for key, value in metrics.items():
            m = _SEED_KEY.match(key)
            if m and value is not None and math.isfinite(value):
                per_seed.setdefault(m.group(1), {})[int(m.group(2))] = float(value)
        if not per_seed:
            return None, None
        metric, scores = next(iter(per_seed.items()))
        median = float(np.median(list(scores.values())))
        if len(scores) < 3 or median < self.min_median:
            self.behind = {}
            return None, None
        worst = min(scores, key=scores.get)
        self.behind = {s: self.behind.get(s, 0) + 1 for s, v in scores.items() if v < self.ratio * median}
        lagging = [s for s, n in self.behind.items() if n >= self.evals]
        if not lagging:
            self.firing = False
            return scores[worst] / median, None
        if self.firing:
            return scores[worst] / median, None
        self.firing = True
        listed = ', '.join(f'seed {s} at {scores[s]:.3g}' for s in sorted(lagging))
        return scores[worst] / median, (
            f'{listed} against the seeds\' median {median:.3g} (evaluation/{metric} per seed, below {self.ratio:g} of '
            f'it for {self.evals} evaluations in a row, step {step}). The mean over seeds hides a seed that fails '
            'while the others learn. It points at a fragile setting rather than noise: an exploration problem only '
            'some seeds get past, or an early mistake the seed\'s own data then confirm (a collapse). Look at that '
            'seed alone (its column in eval.csv; a run with --seed N --num_seeds 1 starts it the same way) and report '
            'the spread over seeds with the mean. Knobs: more or better exploration at the start (--agent.random_steps '
            'and the exploration options of the agent), a lower learning rate, more seeds to see how often it happens.'
        )


DETECTORS = {cls.name: cls for cls in (ValueDivergence, ObjectiveMismatch, GoalIgnoring, CriticAtChance, EpochShock,
                                       GradientTrouble, TargetTracking, EntropyCollapse, WorldModelHealth,
                                       ReturnCollapse, ActionCollapse, InContextHealth, DataWait, SeedOutlier)}


