"""Checkpoints: the full training state of a run, and the trained parameters read back from it.

runs/<run_id>/checkpoint/
  state.msgpack   the whole training state in flax msgpack (never pickle): a `ppo.Runner` (params,
                  optimiser state, env state, key, hyperparameters, update counter), stacked on a
                  leading member axis for several seeds, or an `evolution.Population` around one
  meta.json       env_steps, updates_done, saved_at

Both files are written atomically (temp name, then rename): a crash leaves the previous
checkpoint intact. Readers that only need the network parameters use `load_params`, which
restores them without rebuilding the env state or the market data.

With several processes (docs/scaling.md) the state holds the full arrays, gathered from every
process, and only process 0 writes or reads the files; on resume it sends the state to the
others. A checkpoint therefore resumes on any number of processes and devices that its env
batch divides into.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
from flax import serialization

from . import distributed
from .config import TrainConfig
from .ppo import PPO, Runner
from .rundir import RunDir, atomic_write_bytes, atomic_write_json, read_json

STATE_FILE = "state.msgpack"
META_FILE = "meta.json"


def save_checkpoint(run: RunDir, runner: Runner, env_steps: int, updates_done: int) -> None:
    state = distributed.gather(runner)  # every process calls this: a collective across processes
    if not distributed.is_writer():
        return
    atomic_write_bytes(run.checkpoint_dir / STATE_FILE, serialization.to_bytes(state))
    atomic_write_json(run.checkpoint_dir / META_FILE, {
        "env_steps": env_steps, "updates_done": updates_done, "saved_at": time.time(),
    })


def load_checkpoint(run: RunDir, template: Runner) -> tuple[Runner, dict[str, Any]]:
    """The runner saved in `run`, shaped like `template` (a freshly initialised runner): read by
    process 0 and sent to every other process."""
    runner, meta = template, {}
    if distributed.is_writer():
        raw = (run.checkpoint_dir / STATE_FILE).read_bytes()
        runner = serialization.from_bytes(template, raw)
        meta = read_json(run.checkpoint_dir / META_FILE, {})
    runner, meta = distributed.from_writer_tree(runner), distributed.from_writer(meta)
    return jax.tree_util.tree_map(jnp.asarray, runner), meta


def params_template(config: TrainConfig, num_features: int) -> Any:
    """Freshly initialised network parameters of the right shapes (the template to restore into)."""
    ppo = PPO(config, num_features)
    return ppo.network.init(jax.random.PRNGKey(0), jnp.zeros((1, ppo.obs_size), jnp.float32))


def load_params(run: RunDir, config: TrainConfig, num_features: int, member: int | None = None) -> Any:
    """The trained network parameters of a run's checkpoint: with several members, all of them
    (leading member axis), or only `member`'s."""
    raw_state = serialization.msgpack_restore((run.checkpoint_dir / STATE_FILE).read_bytes())
    runner_state = raw_state["runner"] if "runner" in raw_state else raw_state  # a PBT population
    params = serialization.from_state_dict(params_template(config, num_features), runner_state["params"])
    if member is not None and config.members > 1:
        params = jax.tree_util.tree_map(lambda x: x[member], params)
    return params
