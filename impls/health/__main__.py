"""`python -m impls.health RUN_DIR`: the health report of a finished or running run."""

from __future__ import annotations

import argparse
import os
import sys

from impls.health.monitor import (HealthConfigError, HealthMonitor, context_from_run, parse_health_overrides,
                                  read_run_metrics)


def main(argv=None):
    p = argparse.ArgumentParser(
        description='Health report of a finished or running run: python -m impls.health RUN_DIR')
    p.add_argument('run_dir')
    p.add_argument('--health', nargs='*', default=[], help='DETECTOR.FIELD=VALUE threshold overrides.')
    p.add_argument('--disable', default='', help='Comma-separated detectors to skip.')
    args = p.parse_args(argv)
    try:
        disable = [d for d in args.disable.split(',') if d]
        monitor = HealthMonitor(context_from_run(args.run_dir), parse_health_overrides(args.health, disable), disable,
                                printer=print)
        rows = read_run_metrics(args.run_dir)
    except (FileNotFoundError, HealthConfigError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    if not rows:
        print(f'error: {args.run_dir} has no metric rows yet.', file=sys.stderr)
        return 2
    for step, metrics in rows:
        monitor.observe(step, metrics)
    summary = monitor.write_report(args.run_dir)
    print(f'{len(summary["alarms"])} warning(s); report in {os.path.join(args.run_dir, "health.md")}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
