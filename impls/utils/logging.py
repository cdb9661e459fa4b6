"""Metrics to local CSV files (always) and to wandb (offline by default, so a run with no network
and no API key works and can be uploaded later with `wandb sync`)."""

from __future__ import annotations

import csv
import os
import secrets
from typing import Mapping

import numpy as np

WANDB_MODES = ('online', 'offline', 'disabled')


def resolve_wandb_mode(flag: str | None) -> str:
    """--wandb_mode if given, else $WANDB_MODE, else 'offline'."""
    mode = flag or os.environ.get('WANDB_MODE') or 'offline'
    if mode == 'dryrun':
        mode = 'offline'
    if mode not in WANDB_MODES:
        raise ValueError(f'--wandb_mode / WANDB_MODE is {mode!r}; use one of {", ".join(WANDB_MODES)}.')
    return mode


def _scalar(value):
    value = np.asarray(value)
    return value.item() if value.size == 1 else None


class CsvLogger:
    """Appends rows of scalars to a CSV file. New keys in a later row rewrite the header (rare). On
    resume, rows logged after the resume step are dropped, so an exact resume gives the same file."""

    def __init__(self, path: str, resume_step: int | None = None):
        self.path = path
        self.fields: list[str] = []
        self.rows: list[dict] = []
        if resume_step is not None and os.path.exists(path):
            with open(path, newline='') as f:
                reader = csv.DictReader(f)
                self.fields = list(reader.fieldnames or [])
                self.rows = [r for r in reader if r.get('step') and int(float(r['step'])) <= resume_step]
            self._rewrite()
        elif os.path.exists(path):
            os.remove(path)

    def _rewrite(self):
        tmp = self.path + '.tmp'
        with open(tmp, 'w', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=self.fields)
            writer.writeheader()
            writer.writerows(self.rows)
        os.replace(tmp, self.path)

    def log(self, step: int, metrics: Mapping):
        row = {'step': step}
        for k, v in metrics.items():
            s = _scalar(v)
            if s is not None:
                row[k] = s
        self.rows.append(row)
        new = [k for k in row if k not in self.fields]
        if new:
            self.fields += new
            self._rewrite()
            return
        with open(self.path, 'a', newline='') as f:
            csv.DictWriter(f, fieldnames=self.fields).writerow(row)


class NullLogger:
    """What processes other than process 0 log with in a multi-process run: nothing."""

    def log(self, kind: str, step: int, metrics: Mapping):
        pass

    def attach(self, paths):
        pass

    def close(self):
        pass


class Logger:
    """train.csv / eval.csv in the run directory, plus one wandb run."""

    def __init__(self, run_dir: str, project: str, run_name: str, config: dict, wandb_mode: str | None = None,
                 resume_step: int | None = None, group: str | None = None):
        self.csv = {
            'train': CsvLogger(os.path.join(run_dir, 'train.csv'), resume_step),
            'eval': CsvLogger(os.path.join(run_dir, 'eval.csv'), resume_step),
            'episodes': CsvLogger(os.path.join(run_dir, 'episodes.csv'), resume_step),  # online agents
        }
        self.mode = resolve_wandb_mode(wandb_mode)
        self.wandb = None
        if self.mode != 'disabled':
            import wandb

            os.environ.setdefault('WANDB_SILENT', 'true')
            id_file = os.path.join(run_dir, 'wandb_id.txt')
            run_id = open(id_file).read().strip() if os.path.exists(id_file) else secrets.token_hex(4)
            with open(id_file, 'w') as f:
                f.write(run_id)
            self.wandb = wandb.init(
                project=project, name=run_name, id=run_id, dir=run_dir, config=config, mode=self.mode, group=group,
                resume='allow', settings=wandb.Settings(console='wrap', x_disable_stats=True),
            )

    def log(self, kind: str, step: int, metrics: Mapping):
        self.csv[kind].log(step, metrics)
        if self.wandb is not None:
            self.wandb.log({k: _scalar(v) for k, v in metrics.items() if _scalar(v) is not None}, step=step)

    def attach(self, paths):
        """Copy files (the health report and its plots) into the wandb run; PNGs are also logged as images."""
        if self.wandb is None or not paths:
            return
        import wandb

        base = os.path.dirname(os.path.abspath(paths[0]))
        images = {}
        for path in paths:
            self.wandb.save(os.path.abspath(path), base_path=base, policy='now')
            if path.endswith('.png'):
                images[f'health/plots/{os.path.basename(path)[:-4]}'] = wandb.Image(path)
        if images:
            self.wandb.log(images)

    def close(self):
        if self.wandb is not None:
            self.wandb.finish()
