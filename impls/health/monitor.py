"""Training-health monitor: detectors that read the metric stream and name a failure while it happens.

train.py feeds every log row (training/..., validation/..., evaluation/..., time/...) to a HealthMonitor.
Each detector
  * returns a `health/<name>` number every log interval (logged like any other metric),
  * when it fires, prints one plain-language warning -- what it saw (numbers, steps), the likely causes and
    the knobs that usually fix it -- once per episode of trouble,
  * is summarised in RUN_DIR/health.json and RUN_DIR/health.md (with PNG plots of the metrics involved) at
    the end of the run, or on demand: `python -m impls.health RUN_DIR`.
A detector that raises is reported and disabled; the monitor never stops a run (NaN/inf is reported
here, and the training loop itself stops on it).

Detectors read only metrics the agents log (plus `context`: discount, reward bound, target tau). Their
thresholds are fields of their dataclasses, set with `--health NAME.FIELD=VALUE` on train.py.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import sys
from typing import Optional

from impls.health.detectors import DETECTORS, Alarm
class HealthConfigError(ValueError):
    pass


def parse_health_overrides(items, disable=()):
    """['value_divergence.growth=20', ...] -> {detector: {field: value}}; unknown names raise."""
    overrides = {}
    for name in disable:
        if name not in DETECTORS:
            raise HealthConfigError(f'unknown health detector {name!r}; known: {", ".join(DETECTORS)}.')
    for item in items or ():
        try:
            key, value = item.split('=', 1)
            name, field = key.split('.', 1)
        except ValueError:
            raise HealthConfigError(f'--health {item!r}: expected DETECTOR.FIELD=VALUE.') from None
        if name not in DETECTORS:
            raise HealthConfigError(f'unknown health detector {name!r}; known: {", ".join(DETECTORS)}.')
        fields = {f.name: f for f in dataclasses.fields(DETECTORS[name])}
        if field not in fields:
            raise HealthConfigError(f'health detector {name!r} has no setting {field!r}; it has {", ".join(fields)}.')
        default = fields[field].default
        try:
            parsed = type(default)(value) if not isinstance(default, tuple) else tuple(value.split(','))
        except ValueError:
            raise HealthConfigError(f'--health {item}: expected {type(default).__name__}.') from None
        overrides.setdefault(name, {})[field] = parsed
    return overrides


class HealthMonitor:
    """Runs the detectors on every log row; never raises into the training loop."""

    def __init__(self, context: Optional[dict] = None, overrides: Optional[dict] = None, disable=(), printer=None):
        self.context = dict(context or {})
        self.detectors = []
        for name, cls in DETECTORS.items():
            if name in disable:
                continue
            detector = cls(**(overrides or {}).get(name, {}))
            detector.reset_state()
            self.detectors.append(detector)
        self.alarms: list[Alarm] = []
        self.failures: dict[str, str] = {}
        self.rows: list[tuple[int, dict]] = []
        self.printer = printer or (lambda text: print(text, file=sys.stderr, flush=True))

    def observe(self, step: int, metrics: dict) -> dict:
        """Feed one log row; returns {'health/<name>': value} for the detectors that have a value."""
        clean = {}
        for k, v in metrics.items():
            try:
                clean[k] = float(v)
            except (TypeError, ValueError):
                continue
        self.rows.append((step, clean))
        out = {}
        for detector in list(self.detectors):
            try:
                value, warning = detector.observe(step, clean, self.context)
            except Exception as e:  # a broken detector is reported and disabled, never fatal
                self.failures[detector.name] = f'{type(e).__name__}: {e}'
                self.detectors.remove(detector)
                self.printer(f'[health] detector {detector.name} failed at step {step} ({e}); disabled.')
                continue
            if value is not None:
                out[f'health/{detector.name}'] = value
            if warning:
                self.alarms.append(Alarm(detector.name, step, warning))
                self.printer(f'[health] WARNING {warning}')
        return out

    def replay(self, rows):
        """Rebuild the detectors' state from logged rows (a resumed run), without printing again."""
        printer, self.printer = self.printer, (lambda text: None)
        try:
            for step, metrics in rows:
                self.observe(step, metrics)
        finally:
            self.printer = printer

    def summary(self) -> dict:
        return dict(
            alarms=[dataclasses.asdict(a) for a in self.alarms],
            fired={d: min(a.step for a in self.alarms if a.detector == d) for d in {a.detector for a in self.alarms}},
            detectors={d.name: dataclasses.asdict(d) for d in self.detectors},
            failed=self.failures,
            context=self.context,
        )

    def summary_line(self, run_dir: str) -> str:
        """One line for the end of a run: how many warnings, from which detectors, and where the report is."""
        report = os.path.join(run_dir, 'health.md')
        if not self.alarms:
            return f'Health: no warnings ({len(self.detectors)} detectors watched the run); report in {report}'
        fired = ', '.join(f'{a.detector} (step {a.step})' for a in self.alarms)
        return f'Health: {len(self.alarms)} warning(s): {fired}; details and plots in {report}'

    @staticmethod
    def report_files(run_dir: str) -> list:
        """health.md, health.json and the plots written by write_report."""
        names = sorted(f for f in os.listdir(run_dir) if f in ('health.md', 'health.json')
                       or (f.startswith('health_') and f.endswith('.png')))
        return [os.path.join(run_dir, f) for f in names]

    def write_report(self, run_dir: str):
        """health.json, health.md and one PNG per detector that fired (or per detector with metrics)."""
        summary = self.summary()
        with open(os.path.join(run_dir, 'health.json'), 'w') as f:
            json.dump(summary, f, indent=2, default=str)
        lines = ['# Training health', '']
        if not self.alarms:
            lines.append('No detector fired.')
        for alarm in self.alarms:
            lines += [f'## {alarm.detector} (step {alarm.step})', '', alarm.message, '']
        if self.failures:
            lines += ['## Detectors that failed', ''] + [f'- {k}: {v}' for k, v in self.failures.items()] + ['']
        plots = _plot(self, run_dir)
        for name, path in plots.items():
            lines += [f'![{name}]({os.path.basename(path)})', '']
        lines += ['## Thresholds', '', '```', json.dumps(summary['detectors'], indent=2, default=str), '```']
        with open(os.path.join(run_dir, 'health.md'), 'w') as f:
            f.write('\n'.join(lines) + '\n')
        return summary


def _plot(monitor: HealthMonitor, run_dir: str) -> dict:
    try:
        import matplotlib

        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except Exception:
        return {}
    fired = {a.detector for a in monitor.alarms}
    paths = {}
    for detector in monitor.detectors:
        if detector.name not in fired:
            continue
        keys = [k for k in detector.keys if any(k in row for _, row in monitor.rows)]
        keys.append(f'health/{detector.name}')
        keys = [k for k in keys if any(k in row for _, row in monitor.rows)]
        if not keys:
            continue
        fig, axes = plt.subplots(len(keys), 1, figsize=(7, 2.2 * len(keys)), sharex=True, squeeze=False)
        for ax, key in zip(axes[:, 0], keys):
            pts = [(s, row[key]) for s, row in monitor.rows if key in row]
            ax.plot(*zip(*pts), lw=1)
            ax.set_ylabel(key.removeprefix('training/').removeprefix('health/'), fontsize=7)
            for alarm in monitor.alarms:
                if alarm.detector == detector.name:
                    ax.axvline(alarm.step, color='r', ls='--', lw=0.8)
        axes[-1, 0].set_xlabel('step')
        fig.suptitle(detector.name)
        fig.tight_layout()
        path = os.path.join(run_dir, f'health_{detector.name}.png')
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths[detector.name] = path
    return paths


def read_run_metrics(run_dir: str, until_step: Optional[int] = None):
    """The rows of train.csv and eval.csv as the loop logged them: [(step, metrics)], a step's training row
    before its evaluation row, without the monitor's own health/<detector> outputs."""
    own = {f'health/{name}' for name in DETECTORS}
    rows = []
    found = False
    for order, name in enumerate(('train.csv', 'eval.csv')):
        path = os.path.join(run_dir, name)
        if not os.path.exists(path):
            continue
        found = True
        with open(path, newline='') as f:
            for row in csv.DictReader(f):
                if not row.get('step'):
                    continue
                step = int(float(row['step']))
                if until_step is not None and step > until_step:
                    continue
                metrics = {}
                for k, v in row.items():
                    if k == 'step' or k in own or v in ('', None):
                        continue
                    try:
                        metrics[k] = float(v)
                    except ValueError:
                        continue
                rows.append((step, order, metrics))
    if not found:
        raise FileNotFoundError(f'{run_dir} has no train.csv or eval.csv: not a run directory written by train.py.')
    return [(step, metrics) for step, _, metrics in sorted(rows, key=lambda r: (r[0], r[1]))]


def context_from_run(run_dir: str) -> dict:
    path = os.path.join(run_dir, 'config.json')
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        record = json.load(f)
    return health_context(record.get('agent', {}))


def health_context(agent_config) -> dict:
    """What the detectors may know about an agent: discount, value bound (|r| <= 1), tau, const_std, free nats and
    Dreamer's imagined discount (imag_cont)."""
    context = {}
    discount = agent_config.get('discount')
    if not discount and agent_config.get('horizon'):  # Dreamer: the discount is 1 - 1 / horizon
        discount = 1.0 - 1.0 / agent_config['horizon']
    if agent_config.get('free_nats') is not None:
        context['free_nats'] = float(agent_config['free_nats'])
        context['free_bits'] = agent_config.get('free_bits', 'clip')
    if agent_config.get('imag_cont'):
        context['imag_cont'] = agent_config['imag_cont']
    if discount:
        context['discount'] = discount
        context['value_bound'] = agent_config.get('reward_bound', 1.0) / (1.0 - discount)
    if agent_config.get('tau'):
        context['tau'] = agent_config['tau']
    context['const_std'] = bool(agent_config.get('const_std', False))
    if agent_config.get('batch_size'):
        context['batch_size'] = int(agent_config['batch_size'])
    return context
