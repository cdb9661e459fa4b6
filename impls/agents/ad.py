"""Algorithm Distillation (Laskin et al. 2022): a causal transformer trained by imitation on the learning histories of
a source RL algorithm, spanning several episodes, so that at test time it improves its policy in context, with its
weights frozen, on tasks it never saw.

Input: a window of `seq_len` consecutive transitions of one history (several episodes), as tokens
(impls/utils/history_tokens.py: one token (s_t, a_{t-1}, r_{t-1}) per transition, or separate s, a, r tokens).
    h = CausalTransformer(Dense(tokens) + pos)            (tf_n_layer blocks, width tf_n_embd, tf_n_head heads,
                                                         dropout tf_dropout, attention dropout tf_attn_dropout)
    logits_t = head(h at the token of s_t)
    loss = mean over every position t of CE_smooth(logits_t, a_t)   (label_smoothing; chance level ln A)
Adam with `num_warmup_steps` of linear warmup and global-norm clipping.

Acting (`act`, in context): the carry is a key-value cache of the context. Each step feeds one token and reads one
action (sampled at `eval_temperature`); `record` adds the step's action and reward. When the cache is full, the last
`eval_keep` of it is kept and re-encoded at positions 0.. (one full pass over that part), so every prediction is made
from a window that starts at a token boundary, exactly as in training; amortised, a step costs about one token.
"""

from __future__ import annotations

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from impls.utils.flax_utils import nonpytree_field
from impls.utils.history_tokens import (TOKEN_LAYOUTS, action_loss, action_token, chance_loss, check_obs_encoding,
                                        feature_size, imitation_step, optimizer_config, reward_token, sample_action,
                                        state_token, window_tokens)
from impls.utils.optim import make_optimizer
from impls.utils.precision import Dense
from impls.utils.transformer import CausalTransformer, attention_mask


class HistoryModel(nn.Module):
    """Dense token embedding, the causal transformer, an action head. Returns (logits (B, T, A), keys/values)."""

    num_actions: int
    dim: int
    heads: int
    layers: int
    max_len: int
    dropout: float = 0.0
    attn_dropout: float = 0.0

    @nn.compact
    def __call__(self, tokens, positions, mask, caches=None, index=0, deterministic: bool = True):
        x = Dense(self.dim, name='embed')(tokens)
        h, kvs = CausalTransformer(self.dim, self.heads, self.layers, self.max_len, self.dropout, self.attn_dropout,
                                   name='transformer')(x, positions, mask, caches, index, deterministic)
        return Dense(self.num_actions, name='head')(h), kvs


class ADAgent(flax.struct.PyTreeNode):
    rng: Any
    params: Any
    opt_state: Any
    step: Any
    network: Any = nonpytree_field()
    tx: Any = nonpytree_field()
    config: Any = nonpytree_field()

    action_kinds = ('discrete',)

    # ---- training ----------------------------------------------------------------------------------------------
    def _full_pass(self, params, tokens, valid, key=None):
        """(logits (B, T, A), keys/values) of tokens (B, T, F) at positions 0..T-1, real where `valid` (B, T);
        dropout on when `key` is given."""
        B, T, _ = tokens.shape
        rngs = {} if key is None else {'dropout': key}
        return self.network.apply({'params': params}, tokens, jnp.broadcast_to(jnp.arange(T), (B, T)),
                                  attention_mask(valid, valid), deterministic=key is None, rngs=rngs)

    def _logits(self, params, window, key=None):
        c = self.config
        tokens, read = window_tokens(c['tokens'], c['num_observations'], c['action_dim'], window, c['obs_encoding'])
        return self._full_pass(params, tokens, jnp.ones(tokens.shape[:2], bool), key)[0][:, read]

    def _metrics(self, logits, actions):
        c = self.config
        loss, ce, acc = action_loss(logits, actions, c['label_smoothing'])
        H = c['horizon']
        first = action_loss(logits[:, :H], actions[:, :H], 0.0)[1]
        last = action_loss(logits[:, -H:], actions[:, -H:], 0.0)[1]
        probs = jax.nn.softmax(logits)
        return loss, {'actor/loss': loss, 'actor/ce': ce, 'actor/accuracy': acc,
                      'actor/ce_first_episode': first, 'actor/ce_last_episode': last,
                      'actor/entropy': -(probs * jax.nn.log_softmax(logits)).sum(-1).mean(),
                      'actor/chance_loss': jnp.asarray(chance_loss(c['action_dim']))}

    def loss(self, params, batch, key):
        return self._metrics(self._logits(params, batch, key), batch['actions'])

    @jax.jit
    def update(self, batch):
        """One step on a batch of windows: observations, actions, rewards, prev_actions, prev_rewards (B, seq_len)."""
        return imitation_step(self, batch)

    @jax.jit
    def loss_info(self, batch):
        """The metrics of `update` without dropout or a step (validation on held-out histories)."""
        return self._metrics(self._logits(self.params, batch), batch['actions'])[1]

    # ---- acting in context -----------------------------------------------------------------------------------------
    def context_tokens(self) -> int:
        return self.config['seq_len'] * TOKEN_LAYOUTS[self.config['tokens']]

    def initial_carry(self, batch_size: int):
        """An empty context: the key-value cache, the tokens in it, how many, and a_{t-1}, r_{t-1} ('none', 0)."""
        c, N = self.config, self.context_tokens()
        head_dim = c['tf_n_embd'] // c['tf_n_head']
        zeros = jnp.zeros((batch_size, N, c['tf_n_head'], head_dim))
        return dict(cache=[(zeros, zeros) for _ in range(c['tf_n_layer'])],
                    tokens=jnp.zeros((batch_size, N, feature_size(c['num_observations'], c['action_dim'],
                                                                  c['obs_encoding']))),
                    fill=jnp.zeros((), jnp.int32), prev_action=jnp.full((batch_size,), c['action_dim'], jnp.int32),
                    prev_reward=jnp.zeros((batch_size,)))

    def _reanchor(self, carry):
        """The last `keep` tokens moved to positions 0.. and re-encoded in one full pass."""
        N = self.context_tokens()
        per = TOKEN_LAYOUTS[self.config['tokens']]
        keep = max(1, int(round(self.config['eval_keep'] * self.config['seq_len']))) * per
        tokens = jnp.roll(carry['tokens'], keep - N, axis=1)
        _, kvs = self._full_pass(self.params, tokens, jnp.broadcast_to(jnp.arange(N) < keep, tokens.shape[:2]))
        return dict(carry, cache=kvs, tokens=tokens, fill=jnp.asarray(keep, jnp.int32))

    def _feed(self, carry, token):
        """Appends one token (B, F) to the context; returns (carry, logits (B, A)) at that token."""
        N = self.context_tokens()
        carry = jax.lax.cond(carry['fill'] >= N, self._reanchor, lambda c: c, carry)
        i = carry['fill']
        B = token.shape[0]
        mask = jnp.broadcast_to(jnp.arange(N) <= i, (B, 1, 1, N))
        logits, kvs = self.network.apply({'params': self.params}, token[:, None], jnp.full((B, 1), i), mask,
                                         caches=carry['cache'], index=i)
        tokens = jax.lax.dynamic_update_slice_in_dim(carry['tokens'], token[:, None], i, axis=1)
        return dict(carry, cache=kvs, tokens=tokens, fill=i + 1), logits[:, 0]

    def act(self, carry, observations, goals, key, mode='eval', progress=None):
        """a_t for observations (B,) (integer states; the goal is not observed: `goals` is ignored), sampled at
        eval_temperature (in 'explore' mode too)."""
        c = self.config
        token = state_token(c['tokens'], c['num_observations'], c['action_dim'], observations.astype(jnp.int32),
                            carry['prev_action'], carry['prev_reward'], c['obs_encoding'])
        carry, logits = self._feed(carry, token)
        return sample_action(logits, key, c['eval_temperature']), carry

    def record(self, carry, actions, rewards):
        """The outcome of the step just acted: a_t and r_t enter the context."""
        c = self.config
        carry = dict(carry, prev_action=actions.astype(jnp.int32), prev_reward=rewards.astype(jnp.float32))
        if c['tokens'] == 'separate':
            args = (c['num_observations'], c['action_dim'])
            carry, _ = self._feed(carry, action_token(*args, actions, c['obs_encoding']))
            carry, _ = self._feed(carry, reward_token(*args, rewards, c['obs_encoding']))
        return carry

    def window_logits(self, tokens, valid):
        """Logits at every token of a context (B, T, F) with `valid` (B, T): evaluation without the cache (a full pass
        per step), for the cost comparison."""
        return self._full_pass(self.params, tokens, valid)[0]

    # ---- config ------------------------------------------------------------------------------------------------
    @staticmethod
    def replay(config) -> dict:
        """Windows of seq_len transitions of one learning history."""
        return dict(kind='history_windows', length=int(config['seq_len']))

    @staticmethod
    def check_config(config):
        c = config
        check_obs_encoding(c)
        if c['tokens'] not in TOKEN_LAYOUTS:
            raise ValueError(f"--agent.tokens={c['tokens']!r}: expected joint (one token per transition) or separate "
                             "(s, a, r tokens).")
        if c['tf_n_embd'] % c['tf_n_head']:
            raise ValueError(f"--agent.tf_n_embd={c['tf_n_embd']} is not divisible by --agent.tf_n_head="
                             f"{c['tf_n_head']}.")
        if c['seq_len'] < 2:
            raise ValueError('--agent.seq_len must be at least 2 transitions.')
        if not 0 < c['eval_keep'] < 1:
            raise ValueError(f"--agent.eval_keep={c['eval_keep']}: the fraction of the context kept when it is full "
                             "must lie in (0, 1).")

    @classmethod
    def create(cls, seed, example_batch, config):
        """example_batch: a window batch (observations, actions, rewards, prev_actions, prev_rewards (B, L));
        config: num_observations, action_dim and horizon set from the dataset."""
        c = config
        rng, init_rng = jax.random.split(jax.random.PRNGKey(seed))
        per = TOKEN_LAYOUTS[c['tokens']]
        network = HistoryModel(int(c['action_dim']), c['tf_n_embd'], c['tf_n_head'], c['tf_n_layer'],
                               c['seq_len'] * per, c['tf_dropout'], c['tf_attn_dropout'])
        T = c['seq_len'] * per
        F = feature_size(c['num_observations'], c['action_dim'], c['obs_encoding'])
        valid = jnp.ones((1, T), bool)
        params = network.init(init_rng, jnp.zeros((1, T, F)), jnp.arange(T)[None], attention_mask(valid, valid))[
            'params']
        tx = make_optimizer(optimizer_config(c))
        return cls(rng=rng, params=params, opt_state=tx.init(params), step=jnp.zeros((), jnp.int32), network=network,
                   tx=tx, config=flax.core.FrozenDict(**c))


def get_config():
    return ml_collections.ConfigDict(
        dict(
            agent_name='ad',
            seq_len=80,  # Transitions in the context (4 Dark Room episodes).
            tokens='joint',  # 'joint': one token (s_t, a_{t-1}, r_{t-1}) per transition; 'separate': s, a, r tokens.
            tf_n_embd=64,  # Token width.
            tf_n_layer=4,  # Causal transformer blocks.
            tf_n_head=4,  # Attention heads.
            tf_dropout=0.1,  # Dropout on the embeddings and residual branches.
            tf_attn_dropout=0.1,  # Dropout on the attention weights.
            label_smoothing=0.05,  # Label smoothing of the action cross-entropy.
            batch_size=64,  # Windows per update (the researcher's train_batch_size; --batch_size).
            lr=1e-3,  # Adam's peak learning rate.
            num_warmup_steps=1000,  # Linear warmup (updates).
            max_grad_norm=1.0,  # Global-norm gradient clipping.
            eval_temperature=0.3,  # In-context evaluation samples actions at this temperature (0: greedy); 0.3 chosen
            # on training goals (benchmarks/RESULTS.md): at 1.0 sampling errors compound over 2,000 steps, greedy gets stuck.
            eval_keep=0.5,  # When the context is full, this fraction of it is kept (re-encoded from position 0).
            obs_encoding='index',  # Observation features: 'index' (one-hot cell) or 'grid' (one-hot x, one-hot y of a
            # square grid; impls/utils/history_tokens.py).
            num_observations=ml_collections.config_dict.placeholder(int),  # From the dataset.
            action_dim=ml_collections.config_dict.placeholder(int),  # From the dataset.
            horizon=ml_collections.config_dict.placeholder(int),  # Episode length, from the dataset.
        )
    )
