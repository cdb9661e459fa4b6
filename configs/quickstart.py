"""The quick start (`python train.py` with no arguments): CRL on a 200-episode pointmaze-medium dataset
generated locally, with a CPU-sized network and budget (about 5 minutes on 2 cores)."""

PRESET = dict(
    algorithm='crl',
    env_name='pointmaze-medium-navigate-v0',
    dataset_dir='data/quickstart',
    generate_episodes=200,
    train_steps=30_000,
    batch_size=256,
    eval_episodes=20,
    random_baseline=True,
    agent=dict(
        value_hidden_dims=(256, 256),
        actor_hidden_dims=(256, 256),
        latent_dim=256,
        alpha=0.03,  # OGBench's pointmaze setting for CRL
    ),
)
