"""The peer baseline: Stable-Baselines3 PPO (PyTorch, CPU) on a gymnasium wrapper of the NumPy
reference env, with the same observation, network, rollout, minibatch sizes and epochs.

Stable-Baselines3, gymnasium and torch are the optional [bench] extra: they are imported inside the
functions that use them, so the rest of the bench runs (and reports the peer as not installed)
without them."""

from __future__ import annotations

import importlib.util
import time
from typing import Any

import numpy as np

from evorl_core.bench.plan import bench_config, bench_market, stat
from evorl_core.bench.sections import peak_rss_mb, random_reset, reference_envs


def peer_available() -> tuple[bool, str]:
    missing = [m for m in ("stable_baselines3", "gymnasium", "torch") if importlib.util.find_spec(m) is None]
    if missing:
        return False, (f"not installed ({', '.join(missing)} missing): pip install -e \".[bench]\" "
                       "(CPU torch: see docs/benchmarks.md)")
    return True, ""


def make_gym_env(market, config, seed: int):
    """A gymnasium.Env around reference_env.ReferenceTradingEnv: the same float32 observation
    (window x features + held position), the same discrete actions, rewards and episode ends,
    and the JAX env's random starts on reset."""
    import gymnasium as gym  # optional ([bench] extra)

    class ReferenceGymEnv(gym.Env):
        metadata: dict = {"render_modes": []}

        def __init__(self) -> None:
            self.ref = reference_envs(market, config, 1)[0]
            n = config.window * self.ref.features.shape[-1] + 1
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, (n,), np.float32)
            self.action_space = gym.spaces.Discrete(len(config.positions))
            self.rng = np.random.default_rng(seed)

        def reset(self, *, seed=None, options=None):
            if seed is not None:
                self.rng = np.random.default_rng(seed)
            return random_reset(self.ref, market, self.rng).astype(np.float32), {}

        def step(self, action):
            obs, reward, done = self.ref.step(int(action))
            # an episode end is a termination, as in the JAX env (GAE cuts the bootstrap there)
            return obs.astype(np.float32), float(reward), bool(done), False, {}

    return ReferenceGymEnv()


def worker_peer(args: dict[str, Any]) -> dict[str, Any]:
    """SB3 PPO updates of a preset, timed per update (rollout and training), after `warmup` untimed ones.
    Runs in a fresh process (harness.run_worker)."""
    # optional ([bench] extra)
    import stable_baselines3
    import torch
    from stable_baselines3 import PPO as SB3PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import DummyVecEnv

    config = bench_config(args["preset"], args["overrides"])
    market = bench_market(config)
    venv = DummyVecEnv([lambda i=i: make_gym_env(market, config, config.seed + i) for i in range(config.num_envs)])
    model = SB3PPO(
        "MlpPolicy", venv, n_steps=config.num_steps, batch_size=config.minibatch_size, n_epochs=config.epochs,
        learning_rate=config.lr, gamma=config.gamma, gae_lambda=config.gae_lambda, clip_range=config.clip_eps,
        clip_range_vf=config.clip_eps, ent_coef=config.ent_coef, vf_coef=config.vf_coef,
        max_grad_norm=config.max_grad_norm, normalize_advantage=True, seed=config.seed, device="cpu", verbose=0,
        policy_kwargs={"net_arch": {"pi": list(config.hidden), "vf": list(config.hidden)},
                       "activation_fn": torch.nn.Tanh if config.activation == "tanh" else torch.nn.ReLU,
                       "ortho_init": config.init_scheme == "orthogonal"},
    )

    class Marks(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.marks: list[tuple[str, float]] = []

        def _on_rollout_start(self) -> None:
            self.marks.append(("start", time.perf_counter()))

        def _on_rollout_end(self) -> None:
            self.marks.append(("end", time.perf_counter()))

        def _on_step(self) -> bool:
            return True

    marks = Marks()
    total = (args["warmup"] + args["updates"]) * config.batch_size
    t0 = time.perf_counter()
    model.learn(total_timesteps=total, callback=marks)
    t_end = time.perf_counter()
    starts = [t for kind, t in marks.marks if kind == "start"] + [t_end]
    ends = [t for kind, t in marks.marks if kind == "end"]
    rollout = [e - s for s, e in zip(starts, ends, strict=False)]
    update = [starts[i + 1] - starts[i] for i in range(len(ends))]
    training = [u - r for u, r in zip(update, rollout, strict=True)]
    skip = args["warmup"]
    update, rollout, training = update[skip:], rollout[skip:], training[skip:]
    return {
        "preset": config.preset,
        "available": True,
        "batch_size": config.batch_size,
        "updates_timed": len(update),
        "warmup_updates": skip,
        "steps_per_s": stat([config.batch_size / u for u in update]),
        "updates_per_s": stat([1.0 / u for u in update]),
        "update_s": stat(update),
        "rollout_s": stat(rollout),
        "train_s": stat(training),
        "setup_and_learn_wall_s": t_end - t0,
        "peak_host_rss_mb": peak_rss_mb(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "sb3": stable_baselines3.__version__,
    }
