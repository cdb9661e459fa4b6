"""DreamerV3 (Hafner et al. 2023, "Mastering Diverse Domains through World Models"; danijar/dreamerv3's current
configs): a world model learned from replayed sequences, and an actor-critic trained in its imagination.

World model, per replayed step (networks in impls/agents/dreamer_rssm.py):
    L_wm = rec + rew + con + 1.0 dyn + 0.1 rep
    rec = -log p(o | h, z) (symlog squared error for vectors, squared error for frames), rew = two-hot cross-entropy
    over symexp bins, con = binary cross-entropy of (1 - terminal)(1 - 1 / horizon),
    dyn = max(free, KL[sg(q) || p]),  rep = max(free, KL[q || sg(p)]),  free = 1 nat summed over the latents.
    free_bits='clip' is DreamerV3's max: below the floor the prior gets no gradient at all (by design).
    'straight_through' keeps the floor's value but passes the KL's gradient, so the prior keeps learning below 1 nat.
Actor-critic, from every posterior state, imagined `imag_horizon` = 15 steps with the prior:
    R_t = lambda-returns (lambda 0.95; the discount 1 - 1/333 lives in the continue head, whose probability --
    or, with imag_cont='mode', its mode -- discounts each imagined step), bootstrapping from
    V(s_{t+1}); advantages (R_t - V(s_t)) / max(1, EMA of the 5th-95th percentile range of R, rate 0.01);
    actor: REINFORCE for discrete actions, backprop through the model for continuous ones, entropy 3e-4;
    critic: two-hot on R_t plus a regulariser towards a slow critic (EMA 0.02), and on replayed data (scale 0.3).
One optimiser over all three (per-tensor AGC 0.3, LaProp, lr 4e-5 with warmup in DreamerV3; our presets set lr).

Data: sequences of `sequence_length` consecutive steps from the episode store, possibly crossing episode ends
(`is_first`). Each step is a transition (o_t, a_t, r_t, o_{t+1}): the state after step t has seen o_{t+1}, so the
reward, continue and decoder targets of that state are r_t, 1 - terminated_t and o_{t+1} (a terminal observation is
trained on, never dropped). A step that starts an episode (and the first of every sequence) first builds the state
of o_t from zeros, as acting does.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

from impls.agents.dreamer_rssm import RSSM, Actor, Head, ImageDecoder, ImageEncoder, VectorDecoder, VectorEncoder
from impls.utils.distributions import Categorical, DiagGaussian, categorical_kl, straight_through_onehot, unimix
from impls.utils.flax_utils import nonpytree_field
from impls.utils.optim import lr_schedule, make_optimizer
from impls.utils.returns import lambda_return, symexp_bins, symlog, twohot_loss, twohot_mean, update_percentile_scale

sg = jax.lax.stop_gradient


def imagined_continuation(prob, horizon: float, mode: str):
    """The discount of each imagined step from the continue head's output prob = (1 - P(terminal)) (1 - 1/horizon):
    'prob' uses it as it is (current DreamerV3); 'mode' uses its Bernoulli's mode, the full discount 1 - 1/horizon
    unless termination is more likely than not, then 0 (DreamerV3's 2023 code). A head unsure of mid-episode states
    shortens 'prob''s horizon to 1 / (1 - mean prob) steps; 'mode' keeps 1/horizon's."""
    if mode == 'prob':
        return prob
    disc = 1.0 - 1.0 / horizon
    return disc * (prob > 0.5 * disc).astype(prob.dtype)


def imagination_window(terminated, length: int, prob: float, key):
    """Where each sequence's `length` imagination starts begin, (B,) offsets into its T steps. By default the last
    `length` steps (their posterior states have seen the most context). With prob > 0, a sequence that holds a
    terminal step e >= length - 1 instead starts from the `length` steps ending at its last such e, with probability
    prob: from those states imagination reaches the failure within its horizon, which the default window -- a random
    place in an episode hundreds of steps long -- rarely does. Only the actor-critic's starts move; the world model
    still learns from every replayed step. On CartPole it did not shorten the early dips (benchmarks/RESULTS.md), so it
    is off by default."""
    B, T = terminated.shape
    start = jnp.full((B,), T - length)
    if prob <= 0:
        return start
    idx = jnp.arange(T)
    end = jnp.max(jnp.where(terminated & (idx >= length - 1), idx, -1), axis=1)
    use = (end >= 0) & (jax.random.uniform(key, (B,)) < prob)
    return jnp.where(use, end - length + 1, start)


def free_bits(kl, free: float, mode: str):
    """max(kl, free). 'clip': DreamerV3's, zero gradient below the floor. 'straight_through': the same value with the
    KL's own gradient everywhere."""
    floored = jnp.maximum(kl, free)
    return floored if mode == 'clip' else kl + sg(floored - kl)


class DreamerAgent(flax.struct.PyTreeNode):
    rng: Any
    params: Any  # {'wm', 'actor', 'critic'}
    slow_critic: Any
    opt_state: Any
    retnorm: Any  # (low, high) percentile EMAs of imagined returns
    step: Any
    wm: Any = nonpytree_field()  # dict of modules: rssm, encoder, decoder, reward, cont
    actor_def: Any = nonpytree_field()
    critic_def: Any = nonpytree_field()
    tx: Any = nonpytree_field()
    config: Any = nonpytree_field()

    action_kinds = ('discrete', 'continuous')

    # ---- networks -------------------------------------------------------------------------------------------------
    def _call(self, wm_params, name, method=None, *args):
        module = self.wm[name]
        return module.apply({'params': wm_params[name]}, *args, method=method)

    def core(self, p, deter, stoch, action):
        return self._call(p, 'rssm', RSSM.core, deter, stoch, action)

    def prior(self, p, deter):
        return self._call(p, 'rssm', RSSM.prior, deter)

    def posterior(self, p, deter, embed):
        return self._call(p, 'rssm', RSSM.posterior, deter, embed)

    def encode(self, p, obs):
        return self._call(p, 'encoder', None, obs)

    @staticmethod
    def features(deter, stoch):
        return jnp.concatenate([deter, stoch.reshape(*stoch.shape[:-2], -1)], -1)

    def policy(self, actor_params, feat):
        out = self.actor_def.apply({'params': actor_params}, feat)
        if self.config['discrete']:
            return Categorical(unimix(out, self.config['actor_unimix']))
        lo, hi = self.config['actor_min_std'], self.config['actor_max_std']
        return DiagGaussian(jnp.tanh(out[0]), (hi - lo) * jax.nn.sigmoid(out[1] + 2.0) + lo)

    def value(self, critic_params, feat):
        """Critic logits (..., K) and mean (...)."""
        logits = self.critic_def.apply({'params': critic_params}, feat)
        return logits, twohot_mean(logits, symexp_bins(self.config['bins']))

    def action_input(self, actions):
        """Stored actions -> the core's input: one-hot (discrete) or the float vector."""
        if self.config['discrete']:
            return jax.nn.one_hot(actions, self.config['action_dim'], dtype=jnp.float32)
        return actions.astype(jnp.float32)

    # ---- world model ----------------------------------------------------------------------------------------------
    def observe(self, p, batch, key):
        """Posterior states along the sequences. Returns a dict of (B, T, ...) arrays: deter, stoch, prior and post
        (the state after each step), and post0 / prior0 (the state of o_t built from zeros, used where is_first)."""
        obs, next_obs = batch['observations'], batch['next_observations']
        B, T = batch['is_first'].shape
        first = batch['is_first'].at[:, 0].set(True)
        actions = self.action_input(batch['actions'])
        c = self.config
        embed = self.encode(p, jnp.concatenate([obs, next_obs], 1))
        embed_obs, embed_next = embed[:, :T], embed[:, T:]
        zeros = (jnp.zeros((B, c['deter'])), jnp.zeros((B, c['stoch'], c['classes'])),
                 jnp.zeros((B, c['action_dim'])))
        deter0 = self.core(p, *zeros)  # the deter of a fresh episode (acting starts from the same zeros)
        key0, key = jax.random.split(key)
        post0 = self.posterior(p, jnp.broadcast_to(deter0[:, None], (B, T, c['deter'])), embed_obs)
        stoch0 = straight_through_onehot(key0, post0)
        prior0 = self.prior(p, deter0[:1])[0]  # (S, C)

        def step(carry, xs):
            deter, stoch = carry
            first_t, stoch0_t, action_t, embed_t, key_t = xs
            deter = jnp.where(first_t[:, None], deter0, deter)
            stoch = jnp.where(first_t[:, None, None], stoch0_t, stoch)
            deter = self.core(p, deter, stoch, action_t)
            prior, post = self.prior(p, deter), self.posterior(p, deter, embed_t)
            stoch = straight_through_onehot(key_t, post)
            return (deter, stoch), dict(deter=deter, stoch=stoch, prior=prior, post=post)

        swap = lambda x: jnp.swapaxes(x, 0, 1)  # noqa: E731
        xs = (swap(first), swap(stoch0), swap(actions), swap(embed_next), jax.random.split(key, T))
        _, out = jax.lax.scan(step, (zeros[0], zeros[1]), xs)
        out = jax.tree.map(swap, out)
        return dict(out, first=first, post0=post0, stoch0=stoch0, deter0=deter0, prior0=prior0)

    def world_model_loss(self, p, batch, states):
        c = self.config
        first = states['first'].astype(jnp.float32)
        feat = self.features(states['deter'], states['stoch'])
        feat0 = self.features(jnp.broadcast_to(states['deter0'][:, None], states['deter'].shape), states['stoch0'])
        decode = lambda f: self._call(p, 'decoder', None, f)  # noqa: E731
        if c['encoder'] == 'cnn':
            target = lambda o: o.astype(jnp.float32) / 255.0 - 0.5  # noqa: E731
            rec_of = lambda pred, o: jnp.sum((pred - target(o)) ** 2, (-3, -2, -1))  # noqa: E731
        else:
            target = lambda o: symlog(o.astype(jnp.float32))  # noqa: E731
            rec_of = lambda pred, o: jnp.sum((pred - target(o)) ** 2, -1)  # noqa: E731
        decoded = decode(feat)
        rec = rec_of(decoded, batch['next_observations']) + first * rec_of(decode(feat0), batch['observations'])
        bins = symexp_bins(c['bins'])
        rew = twohot_loss(self._call(p, 'reward', None, feat), batch['rewards'].astype(jnp.float32), bins)
        terminal = batch['terminated'].astype(jnp.float32)
        cont_target = (1.0 - terminal) * (1.0 - 1.0 / c['horizon'])
        cont_logit = self._call(p, 'cont', None, feat)[..., 0]
        con_weight = 1.0 + (c['con_terminal_weight'] - 1.0) * terminal  # rare episode ends weighted up
        con = optax.sigmoid_binary_cross_entropy(cont_logit, cont_target) * con_weight
        kl = lambda q, pr: categorical_kl(q, pr).sum(-1)  # noqa: E731  summed over the S latents
        kl_dyn = kl(sg(states['post']), states['prior'])
        kl_rep = kl(states['post'], sg(states['prior']))
        kl_dyn0, kl_rep0 = kl(sg(states['post0']), states['prior0']), kl(states['post0'], sg(states['prior0']))
        free, mode = c['free_nats'], c['free_bits']
        dyn = free_bits(kl_dyn, free, mode) + first * free_bits(kl_dyn0, free, mode)
        rep = free_bits(kl_rep, free, mode) + first * free_bits(kl_rep0, free, mode)
        per_step = (c['rec_scale'] * rec + c['rew_scale'] * rew + c['con_scale'] * con + c['dyn_scale'] * dyn
                    + c['rep_scale'] * rep)
        info = {
            'world_model/rec_loss': rec.mean(), 'world_model/rew_loss': rew.mean(), 'world_model/con_loss': con.mean(),
            'world_model/dyn_loss': dyn.mean(), 'world_model/rep_loss': rep.mean(),
            'world_model/kl_dyn': kl_dyn.mean(), 'world_model/kl_rep': kl_rep.mean(),
            'world_model/kl_below_floor': (kl_dyn < free).mean(),
            'world_model/prior_entropy': Categorical(states['prior']).entropy().sum(-1).mean(),
            'world_model/post_entropy': Categorical(states['post']).entropy().sum(-1).mean(),
            'world_model/reward_pred_mean': twohot_mean(self._call(p, 'reward', None, sg(feat)), bins).mean(),
            # The continue head where episodes really ended (target 0; a batch without terminal steps counts 0):
            # near 1, imagined rollouts run through the failures that end episodes.
            'world_model/cont_at_terminal': (terminal * jax.nn.sigmoid(sg(cont_logit))).sum()
            / jnp.maximum(terminal.sum(), 1.0),
            'world_model/terminal_fraction': terminal.mean(),
        }
        if c['encoder'] != 'cnn':
            # Per observation dimension, the share of its variance over the batch the decoder leaves unexplained
            # (1 - R^2, in symlog space); the worst dimension. Squared error is a unit-variance Gaussian's likelihood,
            # so detail far below 1 costs more KL than it saves in reconstruction: a dimension of small spread (a
            # pole's angle) can be left blurred, and with it what ends an episode.
            tgt = target(batch['next_observations'])
            err = jnp.mean((sg(decoded) - tgt) ** 2, (0, 1))
            info['world_model/rec_unexplained_worst'] = jnp.max(err / jnp.maximum(jnp.var(tgt, (0, 1)), 1e-8))
        # The world model on the newest data vs the rest: a model lagging what the actor now does fits fresh data worse.
        seq_loss = per_step.mean(1)
        fresh = (batch['age'] < c['fresh_steps']).astype(jnp.float32) if 'age' in batch else jnp.zeros(seq_loss.shape)

        def mean_where(m):
            return jnp.where(m.sum() > 0, (seq_loss * m).sum() / jnp.maximum(m.sum(), 1), seq_loss.mean())

        info['world_model/loss_fresh'], info['world_model/loss_old'] = mean_where(fresh), mean_where(1 - fresh)
        return per_step.mean(), info

    # ---- actor-critic -----------------------------------------------------------------------------------------------
    def imagine(self, wm_params, actor_params, deter, stoch, key):
        """Roll the prior forward imag_horizon steps under the policy from (N, ...) start states. Returns features
        (N, H+1, F) and the actions taken at each of them (N, H+1, ...)."""
        discrete = self.config['discrete']

        def act(feat, k):
            dist = self.policy(actor_params, feat)
            if discrete:
                return jax.nn.one_hot(dist.sample(k), self.config['action_dim'])
            return dist.sample(k)  # reparameterised: gradients reach the actor through the model

        def step(carry, k):
            deter, stoch, action = carry
            k1, k2 = jax.random.split(k)
            deter = self.core(wm_params, deter, stoch, action)
            stoch = straight_through_onehot(k1, self.prior(wm_params, deter))
            feat = self.features(deter, stoch)
            action = act(feat, k2)
            return (deter, stoch, action), (feat, action)

        key, k0 = jax.random.split(key)
        feat0 = self.features(deter, stoch)
        action0 = act(feat0, k0)
        _, (feats, actions) = jax.lax.scan(step, (deter, stoch, action0),
                                           jax.random.split(key, self.config['imag_horizon']))
        feats = jnp.concatenate([feat0[:, None], jnp.swapaxes(feats, 0, 1)], 1)
        actions = jnp.concatenate([action0[:, None], jnp.swapaxes(actions, 0, 1)], 1)
        return feats, actions

    def actor_critic_loss(self, params, states, batch, key):
        c = self.config
        wm = sg(params['wm'])
        B = states['deter'].shape[0]
        T = min(c['imag_last'] or states['deter'].shape[1], states['deter'].shape[1])  # T consecutive starts
        if c['imag_ends'] > 0:
            key, k_win = jax.random.split(key)
        else:
            k_win = None
        offset = imagination_window(batch['terminated'].astype(bool), T, c['imag_ends'], k_win)
        end_windows = (offset != states['deter'].shape[1] - T).mean()
        window = jax.vmap(lambda x, o: jax.lax.dynamic_slice_in_dim(x, o, T, 0))
        states = {k: window(states[k], offset) for k in ('deter', 'stoch')}
        batch = {k: window(batch[k], offset) for k in ('is_first', 'terminated', 'rewards')}
        start_deter = sg(states['deter']).reshape(B * T, -1)
        start_stoch = sg(states['stoch']).reshape(B * T, c['stoch'], c['classes'])
        reinforce = c['discrete']
        feats, actions = self.imagine(wm, params['actor'], start_deter, start_stoch, key)
        if reinforce:
            feats, actions = sg(feats), sg(actions)
        bins = symexp_bins(c['bins'])
        rewards = twohot_mean(self._call(wm, 'reward', None, feats), bins)
        cont = imagined_continuation(jax.nn.sigmoid(self._call(wm, 'cont', None, feats)[..., 0]), c['horizon'],
                                     c['imag_cont'])
        _, values = self.value(sg(params['critic']), feats)  # differentiable in the states (continuous actions)
        weight = sg(jnp.cumprod(cont, 1))
        returns = lambda_return(rewards, cont, values, values, 1.0, c['lambda_'])  # (N, H)
        retnorm, scale = update_percentile_scale(self.retnorm, sg(returns), c['retnorm_rate'])
        advantage = (returns - sg(values[:, :-1])) / sg(scale)  # the baseline carries no gradient to the states
        dist = self.policy(params['actor'], sg(feats) if not reinforce else feats)
        entropy = dist.entropy()[:, :-1]
        if reinforce:
            log_pi = dist.log_prob(jnp.argmax(actions, -1))[:, :-1]
            actor_loss = -(weight[:, :-1] * (log_pi * sg(advantage) + c['actor_entropy'] * entropy)).mean()
        else:
            actor_loss = -(weight[:, :-1] * (advantage + c['actor_entropy'] * entropy)).mean()
        logits, _ = self.value(params['critic'], sg(feats))
        _, slow_values = self.value(self.slow_critic, sg(feats))
        value_loss = twohot_loss(logits[:, :-1], sg(returns), bins) + c['slow_reg'] * twohot_loss(
            logits[:, :-1], sg(slow_values[:, :-1]), bins)
        value_loss = (weight[:, :-1] * value_loss).mean()

        # The critic on replayed states, bootstrapping from the imagined returns (DreamerV3's repval).
        rep_feat = self.features(states['deter'], states['stoch'])  # gradient reaches the representation
        rep_logits, rep_values = self.value(params['critic'], rep_feat)
        _, rep_slow = self.value(self.slow_critic, sg(rep_feat))
        boot = sg(returns[:, 0]).reshape(B, T)
        last = jnp.concatenate([batch['is_first'][:, 1:], jnp.zeros((B, 1), bool)], 1).astype(jnp.float32)
        rep_cont = 1.0 - batch['terminated'].astype(jnp.float32)
        rep_returns = lambda_return(batch['rewards'].astype(jnp.float32), rep_cont, sg(rep_values), boot,
                                    1.0 - 1.0 / c['horizon'], c['lambda_'], last=last)
        mask = 1.0 - last[:, :-1]
        repval = twohot_loss(rep_logits[:, :-1], sg(rep_returns), bins) + c['slow_reg'] * twohot_loss(
            rep_logits[:, :-1], sg(rep_slow[:, :-1]), bins)
        repval = (mask * repval).sum() / jnp.maximum(mask.sum(), 1.0)
        loss = c['actor_scale'] * actor_loss + c['value_scale'] * value_loss + c['repval_scale'] * repval
        if c['discrete']:
            ent_min, ent_max = 0.0, jnp.log(c['action_dim'])
        else:
            ent_max = c['action_dim'] * (0.5 + 0.5 * jnp.log(2 * jnp.pi) + jnp.log(c['actor_max_std']))
            ent_min = c['action_dim'] * (0.5 + 0.5 * jnp.log(2 * jnp.pi) + jnp.log(c['actor_min_std']))
        info = {
            'actor/loss': actor_loss, 'actor/entropy': entropy.mean(),
            'actor/entropy_fraction': ((entropy.mean() - ent_min) / (ent_max - ent_min)),
            'critic/loss': value_loss, 'critic/repval_loss': repval,
            'critic/v_mean': values.mean(), 'critic/v_max': values.max(), 'critic/v_min': values.min(),
            'imagination/return_mean': returns.mean(), 'imagination/return_scale': scale,
            'imagination/reward_mean': rewards[:, 1:].mean(), 'imagination/cont_mean': cont.mean(),
            'imagination/advantage_abs': jnp.abs(advantage).mean(),
            # The same start states: return the model imagines vs the lambda-return of the real rewards.
            'imagination/start_return': (mask * boot[:, :-1]).sum() / jnp.maximum(mask.sum(), 1.0),
            'imagination/replay_return': (mask * rep_returns).sum() / jnp.maximum(mask.sum(), 1.0),
            'imagination/end_windows': end_windows,  # sequences whose starts end at a replayed failure (imag_ends)
        }
        return loss, (info, retnorm)

    def loss(self, params, batch, key):
        k_obs, k_imag = jax.random.split(key)
        states = self.observe(params['wm'], batch, k_obs)
        wm_loss, wm_info = self.world_model_loss(params['wm'], batch, states)
        ac_loss, (ac_info, retnorm) = self.actor_critic_loss(params, states, batch, k_imag)
        return wm_loss + ac_loss, ({**wm_info, **ac_info, 'world_model/loss': wm_loss}, retnorm)

    @jax.jit
    def update(self, batch):
        """One update on a batch of sequences (B, T, ...): observations, next_observations, actions, rewards,
        terminated, is_first (and optionally age (B,): steps since each window's last step)."""
        rng, key = jax.random.split(self.rng)
        grads, (info, retnorm) = jax.grad(self.loss, has_aux=True)(self.params, batch, key)
        updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
        # LaProp's steps are elementwise, so scaling a module's update is running it at its own learning rate.
        for part in ('actor', 'critic'):
            ratio = (self.config[f'{part}_lr'] or self.config['lr']) / self.config['lr']
            updates[part] = jax.tree.map(lambda u, r=ratio: u * r, updates[part])
        params = optax.apply_updates(self.params, updates)
        rate = self.config['slow_critic_rate']
        slow = optax.incremental_update(params['critic'], self.slow_critic, rate)
        info = dict(info)
        info.update({
            'grad/norm': optax.tree.norm(grads),
            'grad/world_model_norm': optax.tree.norm(grads['wm']),
            # The prior's own layers learn only from the dynamics KL: zero here means max(KL, free) is flat.
            'grad/prior_norm': optax.tree.norm({k: v for k, v in grads['wm']['rssm'].items()
                                                if k.startswith('prior')}),
            'grad/actor_norm': optax.tree.norm(grads['actor']),
            'grad/critic_norm': optax.tree.norm(grads['critic']),
            'optim/lr': lr_schedule(self.config)(self.step),
        })
        agent = self.replace(rng=rng, params=params, slow_critic=slow, opt_state=opt_state, retnorm=retnorm,
                             step=self.step + 1)
        return agent, info

    # ---- acting -----------------------------------------------------------------------------------------------------
    def initial_carry(self, batch_size: int):
        """Zeros: the state and previous action of a fresh episode (the loop resets an env's carry to these)."""
        c = self.config
        return dict(deter=jnp.zeros((batch_size, c['deter'])), stoch=jnp.zeros((batch_size, c['stoch'], c['classes'])),
                    action=jnp.zeros((batch_size, c['action_dim'])))

    def act(self, carry, observations, goals, key, mode='eval', progress=None):
        """One filtering step of the world model on the new observation, then the policy: sampled ('explore') or its
        mode ('eval'). Returns actions ((B,) int32 or (B, A) float in [-1, 1]) and the new carry. goals: unused."""
        wm = self.params['wm']
        k1, k2 = jax.random.split(key)
        deter = self.core(wm, carry['deter'], carry['stoch'], carry['action'])
        stoch = straight_through_onehot(k1, self.posterior(wm, deter, self.encode(wm, observations)))
        dist = self.policy(self.params['actor'], self.features(deter, stoch))
        action = dist.mode() if mode == 'eval' else dist.sample(k2)
        if self.config['discrete']:
            action = action.astype(jnp.int32)
            action_in = jax.nn.one_hot(action, self.config['action_dim'])
        else:
            action = jnp.clip(action, -1.0, 1.0)
            action_in = action
        return action, dict(deter=deter, stoch=stoch, action=action_in)

    @staticmethod
    def replay(config) -> dict:
        return dict(kind='sequences', length=config['sequence_length'], cross_episodes=config['cross_episodes'])

    @staticmethod
    def check_config(config):
        if config['free_bits'] not in ('clip', 'straight_through'):
            raise ValueError(f'--agent.free_bits={config["free_bits"]!r}: expected clip (DreamerV3: max(KL, free), '
                             f'zero gradient below the floor) or straight_through (the floor\'s value, the KL\'s '
                             f'gradient).')
        if config['encoder'] not in ('auto', 'mlp', 'cnn'):
            raise ValueError(f'--agent.encoder={config["encoder"]!r}: expected auto, mlp (vector observations) or cnn '
                             f'(64x64 frames).')
        if config['imag_cont'] not in ('prob', 'mode'):
            raise ValueError(f'--agent.imag_cont={config["imag_cont"]!r}: expected prob (the continue head\'s '
                             f'probability) or mode (continue unless termination is more likely than not).')
        if not 0.0 <= config['imag_ends'] <= 1.0:
            raise ValueError(f'--agent.imag_ends={config["imag_ends"]}: expected a probability in [0, 1] (0: always '
                             f'imagine from the last imag_last steps of each sequence).')
        if config['deter'] % config['blocks']:
            raise ValueError(f'--agent.deter={config["deter"]} is not divisible by --agent.blocks={config["blocks"]}.')

    @classmethod
    def create(cls, seed, example_batch, config):
        """example_batch: observations (B, ...) and actions (B,) int or (B, A) float; config['action_dim'] is set."""
        obs = jax.numpy.asarray(example_batch['observations'])
        image = obs.ndim == 4
        config = dict(config)
        if config['encoder'] == 'auto':
            config['encoder'] = 'cnn' if image else 'mlp'
        if image and config['encoder'] != 'cnn':
            raise ValueError(f'the environment gives image observations {tuple(obs.shape[1:])}, but the agent is set '
                             f'for vectors (--agent.encoder=mlp). Use --preset dreamer_cartpole_pixels or '
                             f'--agent.encoder=cnn.')
        if not image and config['encoder'] == 'cnn':
            raise ValueError(f'the environment gives vector observations {tuple(obs.shape[1:])}, but the agent is set '
                             f'for frames (--agent.encoder=cnn). Drop --pixels, or use --preset dreamer_cartpole.')
        if image and obs.shape[1:3] != (64, 64):
            raise ValueError(f'the CNN encoder takes 64x64 frames, got {tuple(obs.shape[1:])}; use --pixels 64.')
        act = jax.numpy.asarray(example_batch['actions'])
        config['discrete'] = jnp.issubdtype(act.dtype, jnp.integer)
        c = config
        encoder = ImageEncoder(c['cnn_depth']) if image else VectorEncoder(c['mlp_layers'], c['units'])
        decoder = (ImageDecoder(c['cnn_depth'], tuple(obs.shape[1:])) if image
                   else VectorDecoder(c['mlp_layers'], c['units'], int(obs.shape[-1])))
        wm = dict(rssm=RSSM(c['deter'], c['hidden'], c['stoch'], c['classes'], c['blocks'], c['unimix']),
                  encoder=encoder, decoder=decoder, reward=Head(1, c['units'], c['bins'], 0.0),
                  cont=Head(1, c['units'], 1, 1.0))
        actor_def = Actor(c['ac_layers'], c['units'], c['action_dim'], c['discrete'])
        critic_def = Head(c['ac_layers'], c['units'], c['bins'], 0.0)
        keys = jax.random.split(jax.random.PRNGKey(seed), 8)
        embed = jax.eval_shape(lambda: encoder.init_with_output(keys[0], obs[:1])[0])
        deter, stoch = jnp.zeros((1, c['deter'])), jnp.zeros((1, c['stoch'], c['classes']))
        feat = jnp.zeros((1, c['deter'] + c['stoch'] * c['classes']))
        wm_params = dict(
            rssm=wm['rssm'].init(keys[1], deter, stoch, jnp.zeros((1, c['action_dim'])),
                                 jnp.zeros((1, embed.shape[-1])))['params'],
            encoder=encoder.init(keys[0], obs[:1])['params'], decoder=decoder.init(keys[2], feat)['params'],
            reward=wm['reward'].init(keys[3], feat)['params'], cont=wm['cont'].init(keys[4], feat)['params'])
        params = dict(wm=wm_params, actor=actor_def.init(keys[5], feat)['params'],
                      critic=critic_def.init(keys[6], feat)['params'])
        tx = make_optimizer(config)
        return cls(rng=keys[7], params=params, slow_critic=jax.tree.map(jnp.copy, params['critic']),
                   opt_state=tx.init(params), retnorm=(jnp.zeros(()), jnp.zeros(())), step=jnp.zeros((), jnp.int32),
                   wm=wm, actor_def=actor_def, critic_def=critic_def, tx=tx, config=flax.core.FrozenDict(config))


SIZES = {  # DreamerV3's size presets (configs.yaml), as --agent.size or the keys themselves
    'size1m': dict(deter=512, hidden=64, classes=4, units=64, cnn_depth=4),
    'size12m': dict(deter=2048, hidden=256, classes=16, units=256, cnn_depth=16),
    'size25m': dict(deter=3072, hidden=384, classes=24, units=384, cnn_depth=24),
    'size50m': dict(deter=4096, hidden=512, classes=32, units=512, cnn_depth=32),
    'size100m': dict(deter=6144, hidden=768, classes=48, units=768, cnn_depth=48),
    'size200m': dict(deter=8192, hidden=1024, classes=64, units=1024, cnn_depth=64),
    'size400m': dict(deter=12288, hidden=1536, classes=96, units=1536, cnn_depth=96),
}


def get_config():
    return ml_collections.ConfigDict(dict(
        agent_name='dreamer',  # Agent name.
        batch_size=16,  # Sequences per update (DreamerV3: 16).
        sequence_length=64,  # Steps per sequence (DreamerV3: 64).
        cross_episodes=True,  # Sequences may cross episode ends (is_first resets the state); False: within one.
        action_dim=ml_collections.config_dict.placeholder(int),  # From the environment.
        discrete=ml_collections.config_dict.placeholder(bool),  # From the environment's action space.
        encoder='auto',  # 'mlp' (vectors, symlog inputs), 'cnn' (64x64 frames) or 'auto' (from the observations).
        # Sizes (DreamerV3's size1m preset, the smallest; SIZES lists the rest).
        deter=512,  # GRU state size.
        hidden=64,  # Hidden units of the RSSM's input and latent layers.
        stoch=32,  # Categorical latents.
        classes=4,  # Classes per latent.
        blocks=1,  # Block-diagonal GRU groups (DreamerV3: 8; 1 is a dense GRU).
        units=64,  # Units of the encoder, decoder and head MLPs.
        mlp_layers=3,  # Encoder / decoder MLP layers.
        ac_layers=3,  # Actor / critic MLP layers.
        cnn_depth=4,  # CNN channels multiplier (channels depth x (2, 3, 4, 4)).
        bins=255,  # Two-hot bins (symexp(linspace(-20, 20, bins))).
        unimix=0.01,  # Uniform mix of the latent distributions.
        # World-model loss.
        free_nats=1.0,  # KL floor, summed over latents, per step.
        free_bits='clip',  # 'clip': max(KL, free) (DreamerV3); 'straight_through': its value, the KL's gradient.
        rec_scale=1.0, rew_scale=1.0, con_scale=1.0,  # Prediction loss scales (DreamerV3: 1). Squared error is a
        # unit-variance likelihood: vector observations whose dimensions spread much less than 1 may need rec_scale
        # 10-100 for the state to resolve them (world_model/rec_unexplained_worst; the CartPole preset uses 100).
        dyn_scale=1.0,  # Dynamics KL scale (trains the prior).
        rep_scale=0.1,  # Representation KL scale (trains the posterior).
        fresh_steps=1000,  # Sequences ending within this many newest steps count as fresh (world_model/loss_fresh).
        # Actor-critic.
        imag_horizon=15,  # Imagined steps.
        imag_last=0,  # Imagine from the posterior states of the last K steps of each sequence (0: all of them).
        imag_ends=0.0,  # Probability that a sequence holding a failure imagines from the K steps ending at it instead.
        con_terminal_weight=1.0,  # Weight of terminal steps in the continue loss (rare: one per episode; 1: DreamerV3;
        # 20 on CartPole, where the head otherwise misses most failures: benchmarks/RESULTS.md, issue 14).
        horizon=333,  # Discount 1 - 1/horizon (in the continue head's target).
        imag_cont='prob',  # Imagined continuation: 'prob' (the head's probability, current DreamerV3) or 'mode'
        # (1 unless termination is predicted more likely than not, times the discount; DreamerV3's 2023 code).
        lambda_=0.95,  # TD(lambda).
        actor_entropy=3e-4,  # Entropy bonus.
        actor_unimix=0.01,  # Uniform mix of a discrete policy.
        actor_min_std=0.1, actor_max_std=1.0,  # Bounded normal std range (continuous actions).
        retnorm_rate=0.01,  # EMA rate of the return percentiles.
        slow_critic_rate=0.02,  # EMA rate of the slow critic.
        slow_reg=1.0,  # Weight of the slow-critic regulariser.
        actor_scale=1.0, value_scale=1.0,  # Imagination loss scales.
        repval_scale=0.3,  # Critic loss on replayed states.
        # Optimiser (DreamerV3: laprop, lr 4e-5, agc 0.3, warmup 1000).
        optimizer='laprop',  # 'laprop' (DreamerV3) or 'adam'.
        lr=4e-5,  # Learning rate (all modules in DreamerV3).
        actor_lr=ml_collections.config_dict.placeholder(float),  # The actor's own learning rate (None: lr).
        critic_lr=ml_collections.config_dict.placeholder(float),  # The critic's own learning rate (None: lr).
        agc=0.3,  # Per-tensor adaptive gradient clipping.
        rms_eps=1e-20,  # LaProp epsilon.
        warmup_steps=1000,  # Linear learning-rate warmup (updates).
    ))
