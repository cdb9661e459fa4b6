"""Checkpoints with orbax: atomic (orbax writes into a temporary directory and renames it when the
write is complete, so a run killed mid-write leaves the previous checkpoint usable), the agent's full
state (parameters, optimiser state, step, RNG), and a JSON record of what produced it (algorithm,
agent config, training step) that is checked before anything is restored."""

from __future__ import annotations

import json
import os
from typing import Any

import flax


class CheckpointError(ValueError):
    pass


def _orbax():
    import orbax.checkpoint as ocp

    return ocp


class Checkpointer:
    """Saves and restores `agent` pytrees plus a JSON `meta` dict under `directory/<step>/`."""

    def __init__(self, directory: str, max_to_keep: int = 3):
        ocp = _orbax()
        self.directory = os.path.abspath(directory)
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, enable_async_checkpointing=False, create=True),
        )

    def latest_step(self):
        return self.manager.latest_step()

    def save(self, step: int, agent, meta: dict):
        ocp = _orbax()
        state = flax.serialization.to_state_dict(agent)
        self.manager.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
            force=True,
        )
        self.manager.wait_until_finished()

    def read_meta(self, step: int | None = None) -> dict:
        ocp = _orbax()
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f'no checkpoint in {self.directory}.')
        try:
            return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
        except Exception as e:
            raise CheckpointError(
                f'checkpoint {self.directory}/{step} has no readable metadata ({_short_reason(e)}); it is corrupt or was '
                f'not written by impls. {self._fallback_hint(step)}'
            ) from None

    def restore(self, template, step: int | None = None, expect: dict | None = None) -> tuple[Any, dict]:
        """Restore onto `template` (a freshly created agent of the same algorithm and config).

        `expect` holds meta entries that must match (e.g. algorithm, agent config); a mismatch raises
        CheckpointError naming the differing keys, before any array is read."""
        ocp = _orbax()
        step = self.latest_step() if step is None else step
        meta = self.read_meta(step)
        for key, want in (expect or {}).items():
            have = meta.get(key)
            if key == 'algorithm' and isinstance(have, str) and isinstance(want, str):
                have, want = have.lower(), want.lower()  # names are case-insensitive (older runs stored 'CMD')
            if have != want:
                if isinstance(want, dict) and isinstance(have, dict):
                    diff = {k: (have.get(k), want.get(k)) for k in sorted(set(want) | set(have)) if have.get(k) != want.get(k)}
                    detail = ', '.join(f'{k}: checkpoint {a!r} vs now {b!r}' for k, (a, b) in diff.items())
                else:
                    detail = f'checkpoint {have!r} vs now {want!r}'
                raise CheckpointError(
                    f'checkpoint {self.directory}/{step} was written with a different {key} ({detail}). Resume with '
                    f'the same settings, or start a new run in another --save_dir.'
                )
        try:
            restored = self.manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(flax.serialization.to_state_dict(template)),
                    meta=ocp.args.JsonRestore(),
                ),
            )
            agent = flax.serialization.from_state_dict(template, restored.state)
        except Exception as e:
            raise CheckpointError(
                f'cannot restore checkpoint {self.directory}/{step}: {_short_reason(e)}. It is corrupt (e.g. a file '
                f'truncated by a full disk or a copy cut short) or from another network shape. '
                f'{self._fallback_hint(step)}'
            ) from None
        return agent, meta

    def _fallback_hint(self, step):
        earlier = sorted((s for s in self.manager.all_steps() if s < step), reverse=True)
        if not earlier:
            return 'There is no earlier checkpoint in this directory; the run must be started again.'
        return (f'Earlier checkpoints here: steps {", ".join(map(str, earlier))}. Move {self.directory}/{step} aside '
                f'(nothing is deleted for you) and --resume continues from step {earlier[0]}.')


def _short_reason(e: Exception) -> str:
    """The first line of an error, without the storage spec dumps orbax / TensorStore append to it."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else ''
    for marker in (' [source locations=', ' tensorstore_spec', "{'driver'", '{"driver"'):
        text = text.split(marker)[0]
    return f'{type(e).__name__}: {text[:300]}'


def json_safe(config) -> dict:
    """A config (ConfigDict / FrozenDict / dict) as plain JSON types (tuples become lists)."""
    if hasattr(config, 'to_dict'):
        config = config.to_dict()
    return json.loads(json.dumps(dict(config), default=list))
