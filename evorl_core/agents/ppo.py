"""PPO, PureJaxRL-shaped: pure `init(key, data)` and `update(runner, data) -> (runner, metrics)`.

One update = a rollout scan over `num_steps` of `num_envs` vmapped envs, a reverse-scan GAE, then
`epochs` x `num_minibatches` gradient steps. It returns reduced scalar metrics only. Market data
is always an argument. The evolvable hyperparameters (lr, entropy coef, clip, value coef, gamma,
GAE lambda) are pytree leaves in `Runner.hyper`, so a population of runners is one `vmap`.

The env is a value (`modes.base.Env`: reset, step, params, sizes), so PPO knows no trading mode;
`agents.build.make_ppo(config)` pairs it with the run's mode.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from evorl_core.agents import distributions
from evorl_core.agents.networks import (
    forward_flops_per_sample,
    make_network,
    portfolio_forward_flops_per_sample,
)
from evorl_core.agents.precision import resolve
from evorl_core.config import TrainConfig
from evorl_core.data.arrays import MarketData
from evorl_core.data.features import num_features
from evorl_core.modes.base import Env


class Hyper(NamedTuple):
    """The hyperparameters a population may evolve: pytree leaves, one value per member."""

    lr: jax.Array
    ent_coef: jax.Array
    clip_eps: jax.Array
    vf_coef: jax.Array
    gamma: jax.Array
    gae_lambda: jax.Array


class Runner(NamedTuple):
    params: Any
    opt_state: Any
    env_state: Any
    obs: jax.Array
    key: jax.Array
    hyper: Hyper
    update_step: jax.Array  # int32 number of updates done


class Transition(NamedTuple):
    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    reward: jax.Array
    done: jax.Array
    episode_return: jax.Array
    position: jax.Array
    turnover: jax.Array


METRIC_NAMES = (
    "reward_mean", "reward_std", "episode_return_mean", "episodes", "policy_loss", "value_loss",
    "entropy", "approx_kl", "clip_fraction", "explained_variance", "mean_abs_position", "turnover",
    "learning_rate",
)


class PPO:
    """Static logic (shapes, network, the env); all running state lives in `Runner`."""

    def __init__(self, config: TrainConfig, env: Env, batch_constraint: Any = None, precision: str | None = None):
        self.config = config
        self.env = env
        self.env_params = env.params
        self.num_actions = env.num_actions
        self.obs_size = env.observation_size
        # the action distribution of the env's kind of action (distributions.py)
        self.dist = distributions.for_kind(env.action_kind)
        # `precision` (default: the config's) sets the network's compute dtype only; its outputs are
        # float32, so every quantity below (log-probs, GAE, losses, grads, Adam) is float32
        self.precision = resolve(precision or config.precision)
        self.network = make_network(config, self.num_actions, env.action_kind, self.precision)
        # Adam with global-norm clipping; the learning rate is applied outside the optax chain so
        # that it is a pytree leaf of the runner (evolvable, and annealable without recompiling).
        self.tx = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.scale_by_adam(eps=1e-5))
        # Multi-device: a function from `sharding.Layout` that keeps each minibatch split over the
        # devices (data-parallel gradients). None on one device.
        self.batch_constraint = batch_constraint

    # -- init ------------------------------------------------------------------------------
    def init(self, key: jax.Array, data: MarketData) -> Runner:
        c = self.config
        key, k_net, k_env = jax.random.split(key, 3)
        env_keys = jax.random.split(k_env, c.num_envs)
        obs, env_state = jax.vmap(self.env.reset, in_axes=(0, None, None))(env_keys, self.env_params, data)
        params = self.init_params(k_net)
        hyper = Hyper(
            lr=jnp.float32(c.lr), ent_coef=jnp.float32(c.ent_coef), clip_eps=jnp.float32(c.clip_eps),
            vf_coef=jnp.float32(c.vf_coef), gamma=jnp.float32(c.gamma), gae_lambda=jnp.float32(c.gae_lambda),
        )
        return Runner(params, self.tx.init(params), env_state, obs, key, hyper, jnp.int32(0))

    # -- policy ----------------------------------------------------------------------------
    def init_params(self, key: jax.Array) -> Any:
        """Freshly initialised network parameters (they never depend on the market data)."""
        example = (self.env.example_input() if self.env.example_input is not None
                   else jnp.zeros((1, self.obs_size), jnp.float32))
        return self.network.init(key, example)

    def network_inputs(self, obs: jax.Array, data: MarketData | None = None) -> Any:
        """What the network reads for a batch of observations [B, O] (the env's `network_input`)."""
        if self.env.network_input is None:
            return obs
        return jax.vmap(self.env.network_input, in_axes=(0, None))(obs, data)

    def policy(self, params: Any, obs: jax.Array, data: MarketData | None = None) -> tuple[Any, jax.Array]:
        """(distribution parameters, value) for a batch of observations; `data` is needed by an env
        with compact observations (portfolio mode)."""
        return self.network.apply(params, self.network_inputs(obs, data))

    # -- one update ------------------------------------------------------------------------
    def update(self, runner: Runner, data: MarketData) -> tuple[Runner, dict[str, jax.Array]]:
        c = self.config
        env_params = self.env_params
        step_envs = jax.vmap(self.env.step, in_axes=(0, 0, 0, None, None))

        # All randomness of the rollout is drawn before the scan in two large vectorised calls
        # (threefry runs as a small loop on CPU, and ~9 tiny calls per step dominated the rollout of
        # small networks). argmax(logits + Gumbel noise) is exactly `jax.random.categorical`.
        key, k_act, k_env = jax.random.split(runner.key, 3)
        noise = self.dist.noise(k_act, (c.num_steps, c.num_envs, self.num_actions))
        step_keys = jax.random.split(k_env, (c.num_steps, c.num_envs))

        def env_step(carry, draws):
            env_state, obs = carry
            noise_t, env_keys = draws
            out, value = self.policy(runner.params, obs, data)
            action = self.dist.sample(out, noise_t)
            log_prob = self.dist.log_prob(out, action)
            next_obs, env_state, reward, done, info = step_envs(env_keys, env_state, action, env_params, data)
            transition = Transition(
                obs, action, log_prob, value, reward, done.astype(jnp.float32),
                info["episode_return"], info["position"], info["turnover"],
            )
            return (env_state, next_obs), transition

        (env_state, last_obs), traj = jax.lax.scan(
            env_step, (runner.env_state, runner.obs), (noise, step_keys)
        )
        _, last_value = self.policy(runner.params, last_obs, data)
        hyper = runner.hyper
        advantages, targets = gae(traj.reward, traj.value, traj.done, last_value, hyper.gamma, hyper.gae_lambda)

        # learning-rate annealing is a function of the update counter, so resume is exact
        frac = 1.0 - runner.update_step.astype(jnp.float32) / jnp.float32(c.num_updates)
        lr = runner.hyper.lr * (frac if c.anneal_lr else 1.0)

        batch = (traj.obs, traj.action, traj.log_prob, traj.value, advantages, targets)
        batch = jax.tree_util.tree_map(lambda x: x.reshape((c.batch_size, *x.shape[2:])), batch)

        def epoch(carry, _):
            params, opt_state, key = carry
            key, k_perm = jax.random.split(key)
            perm = shuffle_indices(k_perm, c.batch_size)
            shuffled = jax.tree_util.tree_map(
                lambda x: jnp.take(x, perm, axis=0).reshape((c.num_minibatches, c.minibatch_size, *x.shape[1:])),
                batch,
            )
            if self.batch_constraint is not None:
                shuffled = self.batch_constraint(shuffled)

            def minibatch_step(carry, mb):
                params, opt_state = carry
                grads, stats = jax.grad(self.loss, has_aux=True)(params, mb, runner.hyper, data)
                updates, opt_state = self.tx.update(grads, opt_state, params)
                params = optax.apply_updates(params, jax.tree_util.tree_map(lambda u: -lr * u, updates))
                return (params, opt_state), stats

            (params, opt_state), stats = jax.lax.scan(minibatch_step, (params, opt_state), shuffled)
            return (params, opt_state, key), stats

        (params, opt_state, key), stats = jax.lax.scan(
            epoch, (runner.params, runner.opt_state, key), None, length=c.epochs
        )
        stats = jax.tree_util.tree_map(jnp.mean, stats)

        episodes = traj.done.sum()
        explained_var = 1.0 - jnp.var(targets - traj.value) / jnp.maximum(jnp.var(targets), 1e-12)
        metrics = {
            "reward_mean": traj.reward.mean(),
            "reward_std": traj.reward.std(),
            "episode_return_mean": jnp.where(
                episodes > 0, (traj.episode_return * traj.done).sum() / jnp.maximum(episodes, 1.0), jnp.nan
            ),
            "episodes": episodes,
            **stats,
            "explained_variance": explained_var,
            "mean_abs_position": jnp.abs(traj.position).mean(),
            "turnover": traj.turnover.mean(),
            "learning_rate": lr,
        }
        runner = Runner(params, opt_state, env_state, last_obs, key, runner.hyper, runner.update_step + 1)
        return runner, metrics

    def loss(self, params: Any, mb: tuple, hyper: Hyper, data: MarketData | None = None
             ) -> tuple[jax.Array, dict[str, jax.Array]]:
        obs, action, old_log_prob, old_value, advantages, targets = mb
        out, value = self.policy(params, obs, data)
        log_prob = self.dist.log_prob(out, action)

        value_clipped = old_value + jnp.clip(value - old_value, -hyper.clip_eps, hyper.clip_eps)
        value_loss = 0.5 * jnp.maximum(
            jnp.square(value - targets), jnp.square(value_clipped - targets)
        ).mean()

        ratio = jnp.exp(log_prob - old_log_prob)
        adv = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        policy_loss = -jnp.minimum(
            ratio * adv, jnp.clip(ratio, 1.0 - hyper.clip_eps, 1.0 + hyper.clip_eps) * adv
        ).mean()
        entropy = self.dist.entropy(out).mean()
        total = policy_loss + hyper.vf_coef * value_loss - hyper.ent_coef * entropy
        stats = {
            "policy_loss": policy_loss,
            "value_loss": value_loss,
            "entropy": entropy,
            "approx_kl": ((ratio - 1.0) - jnp.log(ratio)).mean(),
            "clip_fraction": (jnp.abs(ratio - 1.0) > hyper.clip_eps).mean(),
        }
        return total, stats

    # -- several updates in one compiled call ----------------------------------------------
    def run_updates(self, runner: Runner, data: MarketData, num_updates: int):
        """`num_updates` updates as one scan; metrics stacked to shape [num_updates]."""
        return jax.lax.scan(lambda r, _: self.update(r, data), runner, None, length=num_updates)

    # -- the policy as probabilities (greedy decisions, signals, ensembles) ---------------------
    def action_probabilities(self, params: Any, obs: jax.Array, ensemble: bool = False,
                             data: MarketData | None = None) -> jax.Array:
        """[B, A] action probabilities (discrete actions) or greedy target weights (portfolio mode);
        with `ensemble`, the mean over the agents in `params`."""
        if ensemble:
            return jax.vmap(lambda p: self.dist.greedy(self.policy(p, obs, data)[0]))(params).mean(axis=0)
        out, _ = self.policy(params, obs, data)
        return self.dist.greedy(out)


def shuffle_indices(key: jax.Array, n: int) -> jax.Array:
    """A random permutation of range(n) (int32), 2-4x faster than jax.random.permutation on CPU.

    XLA's CPU sort is far quicker on one uint32 operand than on (keys, indices) pairs, so each
    round sorts random bits with the index packed into the low bits and unpacks the order. Ties of
    the random part keep the incoming order; with fewer than 16 random bits (n > 2**16) a second
    round with fresh bits, whose ties keep the (random) order of the first, makes the shuffle
    uniform for practical purposes.
    """
    index_bits = max(1, (n - 1).bit_length())
    if index_bits > 24:  # too few random bits left in a uint32
        return jax.random.permutation(key, n).astype(jnp.int32)
    mask = jnp.uint32((1 << index_bits) - 1)
    iota = jnp.arange(n, dtype=jnp.uint32)
    rounds = 1 if 32 - index_bits >= 16 else 2
    perm = None
    for round_key in jax.random.split(key, rounds):
        packed = (jax.random.bits(round_key, (n,), jnp.uint32) << index_bits) | iota
        order = (jnp.sort(packed) & mask).astype(jnp.int32)
        perm = order if perm is None else perm[order]
    return perm


def gae(reward, value, done, last_value, gamma: float, lam: float):
    """Generalised advantage estimation by reverse scan over time (arrays are [T, N])."""

    def step(carry, x):
        next_advantage, next_value = carry
        r, v, d = x
        delta = r + gamma * next_value * (1.0 - d) - v
        advantage = delta + gamma * lam * (1.0 - d) * next_advantage
        return (advantage, v), advantage

    _, advantages = jax.lax.scan(
        step, (jnp.zeros_like(last_value), last_value), (reward, value, done), reverse=True
    )
    return advantages, advantages + value


def update_flops(config: TrainConfig, obs_size: int) -> float:
    """Analytic network FLOPs (2 per multiply-add) of one PPO update: the rollout forward passes
    (num_steps x num_envs, plus the bootstrap value of the last observation) and, for every sample
    of every epoch, forward + backward of actor and critic.

    Backward = weight gradients (as many FLOPs as the forward) + input gradients of every layer but
    the first (the observation needs no gradient, and XLA does not compute it), so the count is the
    work actually done, not the 3x-forward rule of thumb that would overstate utilisation.
    """
    if getattr(config, "mode", "single") == "portfolio":
        n = len(config.symbols)
        fwd = portfolio_forward_flops_per_sample(n, config.window * num_features(config), config.hidden)
        first_layers = n * 2 * (config.window * num_features(config) + 1) * config.hidden[0]
    else:
        fwd = forward_flops_per_sample(obs_size, config.hidden, len(config.positions))
        first_layers = 2 * (2 * obs_size * config.hidden[0])  # actor and critic input layers
    bwd = 2 * fwd - first_layers
    rollout = fwd * (config.batch_size + config.num_envs)
    train = (fwd + bwd) * config.batch_size * config.epochs
    return float(rollout + train)
