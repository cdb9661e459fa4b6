"""The training-health monitor: detectors that read the metric stream and name a failure while it happens
(detectors.py), the monitor that runs them on every log row and writes the report (monitor.py), the goal
probe of goal-conditioned agents (probe.py), and `python -m impls.health RUN_DIR`."""

from impls.health.detectors import DETECTORS, Alarm, Detector
from impls.health.monitor import (HealthConfigError, HealthMonitor, context_from_run, health_context,
                                  parse_health_overrides, read_run_metrics)

__all__ = ['DETECTORS', 'Alarm', 'Detector', 'HealthConfigError', 'HealthMonitor', 'context_from_run',
           'health_context', 'parse_health_overrides', 'read_run_metrics']
