"""OGBench environments for evaluating offline goal-conditioned agents (made locally, no dataset download)."""

from __future__ import annotations

import warnings


def make_eval_env(env_name: str):
    """The OGBench evaluation env for a dataset name (no dataset download)."""
    import ogbench

    try:
        with warnings.catch_warnings():  # MuJoCo probing for a display, gymnasium's float64 bounds notes
            warnings.filterwarnings('ignore', message='.*DISPLAY.*')
            warnings.filterwarnings('ignore', message='.*precision lowered.*')
            return ogbench.make_env_and_datasets(env_name, env_only=True)
    except Exception as e:  # gymnasium raises several error types for unknown ids.
        raise ValueError(
            f'cannot make the evaluation env for --env_name {env_name!r} ({type(e).__name__}: {e}). Use an OGBench '
            f'dataset name such as pointmaze-medium-navigate-v0, or --eval_episodes 0 to skip evaluation.'
        ) from e


def ogbench_env_for(stem: str) -> str | None:
    """The OGBench dataset name `stem` when it names one (its environment is registered), else None."""
    import gymnasium
    import ogbench  # noqa: F401  (registers OGBench's environments)

    from impls.data.generate import split_dataset_name

    try:
        env_id, _ = split_dataset_name(stem)
    except ValueError:
        return None
    return stem if env_id in gymnasium.registry else None
