"""Command-line overrides of agent configs (`--agent.KEY=VALUE`) and named presets (`configs/NAME.py`).

Values are parsed to the type of the default: numbers, booleans (true/false/1/0), tuples and lists
(`--agent.value_hidden_dims=256,256` or `(256, 256)`), strings, and None. Unknown keys and values
of the wrong type raise ConfigError naming the key, the expected type and the closest known keys.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import os

import ml_collections



class ConfigError(ValueError):
    pass


# Names other code bases (and hand-written DQN configs) use for our settings, refused with our equivalent, as
# top-level flags (--gamma) or agent keys (--agent.gamma).
KNOB_ALIASES = {
    'gamma': '--agent.discount',
    'use_soft_target': '--agent.tau (soft target rate; 0 turns soft updates off, e.g. --agent.tau=0.005)',
    'soft_target_tau': '--agent.tau',
    'gradient_accumulation_steps': '--agent.grad_accum',
    'clamp_targets': '--agent.target_clamp=LOW,HIGH (unset: no clamp)',
    'target_clamp_value': '--agent.target_clamp=LOW,HIGH (a range, e.g. -50,50)',
    'expert_ratio_min': '--expert_ratio_floor',
    'hard_target_refresh_every_steps': '--agent.hard_update_every (counted in optimiser steps)',
    'target_update_freq': '--agent.hard_update_every (counted in optimiser steps)',
    'target_network_frequency': '--agent.hard_update_every (counted in optimiser steps)',
    'learning_rate': '--agent.lr',
    'total_timesteps': '--train_steps',
    'num_steps': '--train_steps',
    'env_id': '--env_name',
    'max_grad_norm': '--agent.max_grad_norm',
    'train_batch_size': '--batch_size (or --agent.batch_size)',
    'train_timesteps': '--train_steps (updates, for the in-context agents)',
}

# Loop settings (how a run collects data and trains), given as train.py flags, not agent hyperparameters.
LOOP_SETTINGS = ('learning_starts', 'training_steps_per_sample', 'buffer_size', 'expert_ratio_start',
                 'expert_ratio_floor', 'expert_decay_fraction')


def _parse_value(key, text, default, field_type):
    if text.lower() in ('none', 'null'):
        return None
    target = field_type or (type(default) if default is not None else None)
    try:
        if target is bool:
            if text.lower() in ('true', '1', 'yes'):
                return True
            if text.lower() in ('false', '0', 'no'):
                return False
            raise ValueError(text)
        if target in (int, float):
            value = ast.literal_eval(text)
            if target is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(text)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(text)
            return target(value)
        if target in (tuple, list):
            value = ast.literal_eval(text if text.strip()[:1] in '([' else f'({text},)')
            return target(value)
        if target is str:
            return text
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        kind = target.__name__ if target else 'a Python literal'
        raise ConfigError(f'--agent.{key}={text!r}: expected {kind} (default {default!r}).') from None


class Literal:
    """A value to set as it is (e.g. from a saved config.json), never parsed as command-line text."""

    def __init__(self, value):
        self.value = value


def apply_overrides(config: ml_collections.ConfigDict, overrides: dict) -> ml_collections.ConfigDict:
    """Apply {key: text or value} to config; values that are not strings (or are wrapped in Literal) are used
    as they are."""
    for key, text in overrides.items():
        if key not in config and key in LOOP_SETTINGS:
            raise ConfigError(f'--agent.{key} is a loop setting, not a hyperparameter of the agent: pass --{key}.')
        if key not in config and key in KNOB_ALIASES:
            raise ConfigError(f'--agent.{key} does not exist for agent {config.get("agent_name", "?")!r}: impls calls '
                              f'this setting {KNOB_ALIASES[key]}.')
        if key not in config:
            close = difflib.get_close_matches(key, list(config.keys()), n=3)
            hint = f' Did you mean {", ".join(close)}?' if close else ''
            raise ConfigError(f'--agent.{key} does not exist for agent {config.get("agent_name", "?")!r}.{hint} '
                              f'Known keys: {", ".join(sorted(config.keys()))}.')
        default = config[key]
        field = config._fields.get(key) if hasattr(config, '_fields') else None
        field_type = getattr(field, '_field_type', None) if isinstance(field, ml_collections.FieldReference) else None
        if isinstance(text, Literal):
            value = text.value
        else:
            value = _parse_value(key, text, default, field_type) if isinstance(text, str) else text
        with config.unlocked():
            config[key] = value
    return config


def split_agent_flags(argv):
    """Separate `--agent.KEY=VALUE` (or `--agent.KEY VALUE`) from the other command-line arguments."""
    rest, overrides = [], {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith('--agent.'):
            body = arg[len('--agent.'):]
            if '=' in body:
                key, value = body.split('=', 1)
            elif i + 1 < len(argv):
                key, value = body, argv[i + 1]
                i += 1
            else:
                raise ConfigError(f'{arg} has no value; write --agent.KEY=VALUE.')
            overrides[key] = value
        else:
            rest.append(arg)
        i += 1
    return rest, overrides


def available_presets(configs_dir: str):
    if not os.path.isdir(configs_dir):
        return []
    return sorted(f[:-3] for f in os.listdir(configs_dir) if f.endswith('.py') and not f.startswith('_'))


def load_preset(name: str, configs_dir: str) -> dict:
    """configs/NAME.py defines PRESET = dict(flag=value, ..., agent=dict(key=value, ...))."""
    path = name if name.endswith('.py') else os.path.join(configs_dir, f'{name}.py')
    if not os.path.exists(path):
        raise ConfigError(f'unknown --preset {name!r}; available: {", ".join(available_presets(configs_dir))}.')
    spec = importlib.util.spec_from_file_location(f'impls_preset_{os.path.basename(path)[:-3]}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    preset = dict(module.PRESET)
    preset['agent'] = dict(preset.get('agent', {}))
    return preset
