"""Compressed Algorithm Distillation: AD (impls/agents/ad.py) whose older history is compressed, segment by segment,
into `n_latent` latent tokens, so the raw context can stay short while the model still sees many episodes.

A training sample is one window of a learning history, split (per sample) into
    depth d ~ uniform{0, ..., max_compression_depth}            (a balanced distribution over depths)
    d segments of lengths c_i ~ uniform[min_compress_length, max_compress_length], oldest first
    the raw part: the last u ~ uniform[min_uncompressed_length, max_uncompressed_length] transitions
Compression, one round per segment, oldest first (gradient flows through every round):
    z_0 = learned initial latents;  z_i = Encoder([z_{i-1}; Dense(tokens of segment i)])[:n_latent]
    (encoder_n_layer bidirectional blocks with their own positions)
Prediction: the causal transformer (as AD's: tf_n_layer, tf_n_embd, tf_n_head, tf_dropout, tf_attn_dropout) over
[z_d ; Dense(tokens of the raw part)] (no latents when d = 0), the action read at every raw token;
loss = CE_smooth over the raw part. Logged per batch: the mean depth and the loss at each depth.

Acting: the raw context fills one token per step through a key-value cache; when it holds max_uncompressed_length
transitions, its oldest `eval_compress_length` are compressed into the latents (one encoder pass) and the cache is
rebuilt over [latents ; the rest] (one full pass), so a step costs about one token between compressions. Two
memories (`eval_memory`): 'recurrent' folds each segment into the latents so far, so a long evaluation compresses
far more rounds (~50 in 2,000 steps) than training ever did (<= max_compression_depth); 'window' keeps the last
max_compression_depth compressed segments' raw tokens and recomputes the latents from the learned initial ones over
them at each compression, so evaluation sees exactly the depths it was trained on and forgets what lies further
back (max_compression_depth * eval_compress_length + max_uncompressed_length transitions at most).

Token layout: one token (s_t, a_{t-1}, r_{t-1}) per transition (impls/utils/history_tokens.py, 'joint').
"""

from __future__ import annotations

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from impls.utils.flax_utils import nonpytree_field
from impls.utils.history_tokens import (action_loss, chance_loss, check_obs_encoding, feature_size, imitation_step,
                                        optimizer_config, sample_action, state_token, window_tokens)
from impls.utils.optim import make_optimizer
from impls.utils.precision import Dense
from impls.utils.transformer import CachedBlock, CausalTransformer, attention_mask


class CompressedHistoryModel(nn.Module):
    num_actions: int
    dim: int
    heads: int
    layers: int
    encoder_layers: int
    n_latent: int
    max_segment: int
    max_raw: int
    dropout: float = 0.0
    attn_dropout: float = 0.0

    def setup(self):
        self.embed = Dense(self.dim)
        self.init_latents = self.param('init_latents', nn.initializers.normal(0.02), (self.n_latent, self.dim))
        self.enc_pos = self.param('enc_pos', nn.initializers.normal(0.02), (self.n_latent + self.max_segment, self.dim))
        self.encoder = [CachedBlock(self.dim, self.heads, dropout=self.dropout, attn_dropout=self.attn_dropout)
                        for _ in range(self.encoder_layers)]
        self.enc_norm = nn.LayerNorm()
        self.decoder = CausalTransformer(self.dim, self.heads, self.layers, self.n_latent + self.max_raw, self.dropout,
                                         self.attn_dropout)
        self.head = Dense(self.num_actions)

    def compress(self, latents, has_latents, tokens, valid, deterministic: bool = True):
        """latents (B, n, dim) (the learned initial latents where has_latents (B,) is false), a segment's tokens
        (B, S, F) with valid (B, S) -> new latents (B, n, dim)."""
        B = tokens.shape[0]
        z = jnp.where(has_latents[:, None, None], latents, self.init_latents[None])
        S = tokens.shape[1]
        x = jnp.concatenate([z, self.embed(tokens)], 1) + self.enc_pos[None, :self.n_latent + S]
        full = jnp.concatenate([jnp.ones((B, self.n_latent), bool), valid], 1)
        mask = attention_mask(full, full, causal=False)
        for block in self.encoder:
            x, _ = block(x, mask, deterministic=deterministic)
        return self.enc_norm(x[:, :self.n_latent])

    def __call__(self, latents, has_latents, tokens, valid, deterministic: bool = True):
        """A full pass over [latents ; raw tokens (B, T, F)] -> (logits at the raw tokens (B, T, A), keys/values)."""
        B, T, _ = tokens.shape
        x = jnp.concatenate([latents, self.embed(tokens)], 1)
        full = jnp.concatenate([jnp.broadcast_to(has_latents[:, None], (B, self.n_latent)), valid], 1)
        positions = jnp.broadcast_to(jnp.arange(self.n_latent + T), (B, self.n_latent + T))
        h, kvs = self.decoder(x, positions, attention_mask(full, full), deterministic=deterministic)
        return self.head(h[:, self.n_latent:]), kvs

    def step(self, token, caches, index, key_valid):
        """One raw token (B, F) at cache position `index`, keys visible where key_valid (B, S): (logits, caches)."""
        B = token.shape[0]
        mask = (key_valid & (jnp.arange(key_valid.shape[1]) <= index)[None])[:, None, None]
        h, kvs = self.decoder(self.embed(token)[:, None], jnp.full((B, 1), index), mask, caches, index)
        return self.head(h[:, 0]), kvs


def window_length(c) -> int:
    """Transitions in a training window: every compressed segment at its longest, then the raw part."""
    return c['max_compression_depth'] * c['max_compress_length'] + c['max_uncompressed_length']


def split_window(key, batch_size: int, c):
    """Per sample: depth, which compression slots are active (B, D), segment token indices and validity
    (B, D, max_c), raw indices and validity (B, max_u), within a window of window_length(c) transitions."""
    D, W = c['max_compression_depth'], window_length(c)
    max_c, max_u = c['max_compress_length'], c['max_uncompressed_length']
    k_d, k_c, k_u = jax.random.split(key, 3)
    depth = jax.random.randint(k_d, (batch_size,), 0, D + 1)
    lengths = jax.random.randint(k_c, (batch_size, D), c['min_compress_length'], max_c + 1)
    raw = jax.random.randint(k_u, (batch_size,), c['min_uncompressed_length'], max_u + 1)
    active = jnp.arange(D)[None] >= D - depth[:, None]
    lengths = jnp.where(active, lengths, 0)
    later = jnp.flip(jnp.cumsum(jnp.flip(lengths, 1), 1), 1) - lengths  # transitions of later slots
    start = (W - raw)[:, None] - later - lengths
    seg_idx = jnp.clip(start[..., None] + jnp.arange(max_c), 0, W - 1)
    seg_valid = jnp.arange(max_c)[None, None] < lengths[..., None]
    raw_idx = jnp.clip((W - raw)[:, None] + jnp.arange(max_u), 0, W - 1)
    raw_valid = jnp.arange(max_u)[None] < raw[:, None]
    return depth, active, seg_idx, seg_valid, raw_idx, raw_valid


class CADAgent(flax.struct.PyTreeNode):
    rng: Any
    params: Any
    opt_state: Any
    step: Any
    network: Any = nonpytree_field()
    tx: Any = nonpytree_field()
    config: Any = nonpytree_field()

    action_kinds = ('discrete',)

    def _apply(self, params, *args, method=None, key=None, **kwargs):
        rngs = {} if key is None else {'dropout': key}
        if key is not None:
            kwargs['deterministic'] = False
        return self.network.apply({'params': params}, *args, method=method, rngs=rngs, **kwargs)

    def _forward(self, params, window, key, drop_key=None):
        c = self.config
        tokens, _ = window_tokens('joint', c['num_observations'], c['action_dim'], window, c['obs_encoding'])
        B = tokens.shape[0]
        depth, active, seg_idx, seg_valid, raw_idx, raw_valid = split_window(key, B, c)
        take = jax.vmap(lambda t, i: t[i])
        latents = jnp.zeros((B, c['n_latent'], c['tf_n_embd']))
        has = jnp.zeros((B,), bool)
        keys = [None] * (c['max_compression_depth'] + 1) if drop_key is None else list(
            jax.random.split(drop_key, c['max_compression_depth'] + 1))
        for r in range(c['max_compression_depth']):
            new = self._apply(params, latents, has, take(tokens, seg_idx[:, r]), seg_valid[:, r],
                              method=CompressedHistoryModel.compress, key=keys[r])
            on = active[:, r]
            latents, has = jnp.where(on[:, None, None], new, latents), has | on
        logits, _ = self._apply(params, latents, has, take(tokens, raw_idx), raw_valid, key=keys[-1])
        return logits, take(window['actions'], raw_idx), raw_valid, depth

    def _metrics(self, logits, actions, valid, depth):
        c = self.config
        w = valid.astype(jnp.float32)
        loss, ce, acc = action_loss(logits, actions, c['label_smoothing'], w)
        per_sample = (optax.softmax_cross_entropy_with_integer_labels(logits, actions) * w).sum(1) / w.sum(1)
        probs = jax.nn.softmax(logits)
        entropy = (-(probs * jax.nn.log_softmax(logits)).sum(-1) * w).sum() / w.sum()
        info = {'actor/loss': loss, 'actor/ce': ce, 'actor/accuracy': acc, 'actor/entropy': entropy,
                'actor/chance_loss': jnp.asarray(chance_loss(c['action_dim'])),
                'compression/depth_mean': depth.astype(jnp.float32).mean()}
        for d in range(c['max_compression_depth'] + 1):
            at = (depth == d).astype(jnp.float32)
            info[f'compression/ce_depth{d}'] = (per_sample * at).sum() / jnp.maximum(at.sum(), 1.0)
        return loss, info

    def loss(self, params, batch, key):
        k_split, k_drop = jax.random.split(key)
        return self._metrics(*self._forward(params, batch, k_split, k_drop))

    @jax.jit
    def update(self, batch):
        """One step on a batch of windows (B, window_length) of observations, actions, rewards, prev_actions,
        prev_rewards."""
        return imitation_step(self, batch)

    @jax.jit
    def loss_info(self, batch):
        """Validation metrics (no dropout), with the window split drawn from the agent's key."""
        return self._metrics(*self._forward(self.params, batch, self.rng))[1]

    # ---- acting in context -----------------------------------------------------------------------------------------
    def initial_carry(self, batch_size: int):
        c = self.config
        S = c['n_latent'] + c['max_uncompressed_length']
        zeros = jnp.zeros((batch_size, S, c['tf_n_head'], c['tf_n_embd'] // c['tf_n_head']))
        return dict(cache=[(zeros, zeros) for _ in range(c['tf_n_layer'])],
                    latents=jnp.zeros((batch_size, c['n_latent'], c['tf_n_embd'])), has=jnp.zeros((), bool),
                    tokens=jnp.zeros((batch_size, c['max_uncompressed_length'],
                                      feature_size(c['num_observations'], c['action_dim'], c['obs_encoding']))),
                    segments=jnp.zeros((batch_size, c['max_compression_depth'], c['max_compress_length'],
                                        feature_size(c['num_observations'], c['action_dim'], c['obs_encoding']))),
                    fill=jnp.zeros((), jnp.int32), rounds=jnp.zeros((), jnp.int32),
                    prev_action=jnp.full((batch_size,), c['action_dim'], jnp.int32),
                    prev_reward=jnp.zeros((batch_size,)))

    def _compress(self, carry):
        """The oldest eval_compress_length raw transitions into the latents; the cache rebuilt over the rest."""
        c = self.config
        e, max_u, max_c = c['eval_compress_length'], c['max_uncompressed_length'], c['max_compress_length']
        B = carry['tokens'].shape[0]
        segment = jnp.pad(carry['tokens'][:, :e], ((0, 0), (0, max_c - e), (0, 0)))
        seg_valid = jnp.broadcast_to(jnp.arange(max_c) < e, (B, max_c))
        segments = jnp.concatenate([carry['segments'][:, 1:], segment[:, None]], 1)
        if c['eval_memory'] == 'window':  # the last D segments, compressed afresh from the initial latents
            D = c['max_compression_depth']
            latents, has = carry['latents'], jnp.zeros((B,), bool)
            for r in range(D):
                new = self._apply(self.params, latents, has, segments[:, r], seg_valid,
                                  method=CompressedHistoryModel.compress)
                on = r >= D - 1 - jnp.minimum(carry['rounds'], D - 1)  # slots holding a segment so far
                latents, has = jnp.where(on, new, latents), has | on
        else:
            has = jnp.broadcast_to(carry['has'], (B,))
            latents = self._apply(self.params, carry['latents'], has, segment, seg_valid,
                                  method=CompressedHistoryModel.compress)
        tokens = jnp.roll(carry['tokens'], -e, axis=1)
        fill = carry['fill'] - e
        valid = jnp.broadcast_to(jnp.arange(max_u) < fill, (B, max_u))
        _, kvs = self._apply(self.params, latents, jnp.ones((B,), bool), tokens, valid)
        return dict(carry, cache=kvs, latents=latents, has=jnp.ones((), bool), tokens=tokens, segments=segments,
                    fill=fill, rounds=carry['rounds'] + 1)

    def _feed(self, carry, token):
        c = self.config
        n, max_u = c['n_latent'], c['max_uncompressed_length']
        carry = jax.lax.cond(carry['fill'] >= max_u, self._compress, lambda x: x, carry)
        B = token.shape[0]
        key_valid = jnp.concatenate([jnp.broadcast_to(carry['has'], (B, n)), jnp.ones((B, max_u), bool)], 1)
        logits, kvs = self._apply(self.params, token, carry['cache'], n + carry['fill'], key_valid,
                                  method=CompressedHistoryModel.step)
        tokens = jax.lax.dynamic_update_slice_in_dim(carry['tokens'], token[:, None], carry['fill'], axis=1)
        return dict(carry, cache=kvs, tokens=tokens, fill=carry['fill'] + 1), logits

    def act(self, carry, observations, goals, key, mode='eval', progress=None):
        """a_t for observations (B,) (the goal is not observed), sampled at eval_temperature."""
        c = self.config
        token = state_token('joint', c['num_observations'], c['action_dim'], observations.astype(jnp.int32),
                            carry['prev_action'], carry['prev_reward'], c['obs_encoding'])
        carry, logits = self._feed(carry, token)
        return sample_action(logits, key, c['eval_temperature']), carry

    def record(self, carry, actions, rewards):
        return dict(carry, prev_action=actions.astype(jnp.int32), prev_reward=rewards.astype(jnp.float32))

    # ---- config ------------------------------------------------------------------------------------------------
    @staticmethod
    def replay(config) -> dict:
        return dict(kind='history_windows', length=window_length(config))

    @staticmethod
    def check_config(config):
        c = config
        check_obs_encoding(c)
        if c['tf_n_embd'] % c['tf_n_head']:
            raise ValueError(f"--agent.tf_n_embd={c['tf_n_embd']} is not divisible by --agent.tf_n_head="
                             f"{c['tf_n_head']}.")
        for lo, hi in (('min_compress_length', 'max_compress_length'),
                       ('min_uncompressed_length', 'max_uncompressed_length')):
            if not 1 <= c[lo] <= c[hi]:
                raise ValueError(f'--agent.{lo}={c[lo]} and --agent.{hi}={c[hi]}: need 1 <= {lo} <= {hi}.')
        if c['max_compression_depth'] < 1 or c['n_latent'] < 1 or c['encoder_n_layer'] < 1:
            raise ValueError('--agent.max_compression_depth, --agent.n_latent and --agent.encoder_n_layer must be at '
                             'least 1 (for no compression, use --algorithm ad).')
        if c['eval_memory'] not in ('recurrent', 'window'):
            raise ValueError(f"--agent.eval_memory={c['eval_memory']!r}: use 'recurrent' (each segment folded into the "
                             f"latents so far) or 'window' (the last max_compression_depth segments, compressed "
                             f"afresh).")
        e = c['eval_compress_length']
        if not c['min_compress_length'] <= e <= c['max_compress_length']:
            raise ValueError(f"--agent.eval_compress_length={e} lies outside the trained segment lengths "
                             f"[{c['min_compress_length']}, {c['max_compress_length']}].")
        if e >= c['max_uncompressed_length']:
            raise ValueError(f"--agent.eval_compress_length={e} does not fit the raw context of "
                             f"--agent.max_uncompressed_length={c['max_uncompressed_length']} transitions: a full "
                             f"context must keep at least one raw transition after compressing. Shorten the segments "
                             f"or lengthen the raw context.")

    @classmethod
    def create(cls, seed, example_batch, config):
        c = config
        rng, init_rng = jax.random.split(jax.random.PRNGKey(seed))
        network = CompressedHistoryModel(int(c['action_dim']), c['tf_n_embd'], c['tf_n_head'], c['tf_n_layer'],
                                         c['encoder_n_layer'], c['n_latent'], c['max_compress_length'],
                                         c['max_uncompressed_length'], c['tf_dropout'], c['tf_attn_dropout'])
        F = feature_size(c['num_observations'], c['action_dim'], c['obs_encoding'])
        max_c, max_u, n = c['max_compress_length'], c['max_uncompressed_length'], c['n_latent']

        def init(model):
            z = model.compress(jnp.zeros((1, n, c['tf_n_embd'])), jnp.zeros((1,), bool), jnp.zeros((1, max_c, F)),
                               jnp.ones((1, max_c), bool))
            return model(z, jnp.ones((1,), bool), jnp.zeros((1, max_u, F)), jnp.ones((1, max_u), bool))

        params = network.init(init_rng, method=init)['params']
        tx = make_optimizer(optimizer_config(c))
        return cls(rng=rng, params=params, opt_state=tx.init(params), step=jnp.zeros((), jnp.int32), network=network,
                   tx=tx, config=flax.core.FrozenDict(**c))


def get_config():
    return ml_collections.ConfigDict(
        dict(
            agent_name='cad',
            tf_n_embd=64,  # Token width (decoder and encoder).
            tf_n_layer=4,  # Causal transformer blocks.
            tf_n_head=4,  # Attention heads.
            n_latent=16,  # Latent tokens the compressed history is held in.
            encoder_n_layer=2,  # Bidirectional blocks of the compressing encoder.
            max_compression_depth=3,  # Compression rounds in a training window (depth drawn uniformly in 0..this).
            min_compress_length=20,  # Transitions per compressed segment, at least ...
            max_compress_length=40,  # ... and at most.
            min_uncompressed_length=20,  # Raw transitions after the compressed part, at least ...
            max_uncompressed_length=60,  # ... and at most (the raw context at evaluation).
            eval_compress_length=40,  # At evaluation, transitions compressed when the raw context is full.
            eval_memory='recurrent',  # At evaluation: 'recurrent' (each segment folded into the latents so far,
            # unbounded rounds) or 'window' (the last max_compression_depth segments compressed afresh: training's depths).
            tf_dropout=0.1,  # Dropout on the embeddings and residual branches.
            tf_attn_dropout=0.0,  # Dropout on the attention weights.
            label_smoothing=0.05,  # Label smoothing of the action cross-entropy.
            batch_size=64,  # Windows per update (the researcher's train_batch_size; --batch_size).
            lr=1e-3,  # Adam's peak learning rate.
            num_warmup_steps=1000,  # Linear warmup (updates).
            max_grad_norm=1.0,  # Global-norm gradient clipping.
            eval_temperature=0.3,  # In-context evaluation samples actions at this temperature (0: greedy); 0.3 chosen
            # on training goals (benchmarks/RESULTS.md): at 1.0 sampling errors compound over 2,000 steps, greedy gets stuck.
            obs_encoding='index',  # Observation features: 'index' (one-hot cell) or 'grid' (one-hot x, one-hot y of a
            # square grid; impls/utils/history_tokens.py).
            num_observations=ml_collections.config_dict.placeholder(int),  # From the dataset.
            action_dim=ml_collections.config_dict.placeholder(int),  # From the dataset.
            horizon=ml_collections.config_dict.placeholder(int),  # Episode length, from the dataset.
        )
    )
