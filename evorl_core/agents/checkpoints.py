"""Checkpoints: the full training state of a run, and the trained parameters read back from it.

runs/<run_id>/checkpoint/
  state.msgpack   the whole training state in flax msgpack (never pickle): a `ppo.Runner` (params,
                  optimiser state, env state, key, hyperparameters, update counter), stacked on a
                  leading member axis for several seeds, or a `pbt.Population` around one
  meta.json       env_steps, updates_done, saved_at

Both files are written in full to temporary names first and only then renamed into place
(`store.atomic.atomic_write_many`): a crash or a full disk leaves the previous checkpoint intact, and the
two files always belong to the same save. A damaged file is a RunDirError naming it. Readers that
only need the network parameters use `load_params`, which restores them without rebuilding the env
state or the market data.

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

from evorl_core.agents.build import make_ppo
from evorl_core.agents.ppo import Runner
from evorl_core.config import TrainConfig
from evorl_core.store.atomic import RunDirError, atomic_write_many, dumps, read_json
from evorl_core.store.rundir import RunDir
from evorl_core.system import distributed

STATE_FILE = "state.msgpack"
META_FILE = "meta.json"


def save_checkpoint(run: RunDir, runner: Runner, env_steps: int, updates_done: int) -> None:
    state = distributed.gather(runner)  # every process calls this: a collective across processes
    if not distributed.is_writer():
        return
    meta = {"env_steps": env_steps, "updates_done": updates_done, "saved_at": time.time()}
    atomic_write_many({
        run.checkpoint_dir / STATE_FILE: serialization.to_bytes(state),
        run.checkpoint_dir / META_FILE: (dumps(meta) + "\n").encode(),
    })


def _state_bytes(run: RunDir) -> bytes:
    path = run.checkpoint_dir / STATE_FILE
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise RunDirError(f"{path}: missing; the run has no checkpoint") from None
    except OSError as exc:
        raise RunDirError(f"{path}: cannot read it ({exc.strerror or exc})") from None


def _damaged(run: RunDir, exc: Exception) -> RunDirError:
    detail = " ".join(str(exc).split()) or type(exc).__name__
    return RunDirError(f"{run.checkpoint_dir / STATE_FILE}: damaged checkpoint ({detail})")


def check_checkpoint(run: RunDir) -> None:
    """RunDirError naming the file unless the checkpoint exists and decodes (before a resume)."""
    raw = _state_bytes(run)
    try:
        state = serialization.msgpack_restore(raw)
    except Exception as exc:  # noqa: BLE001 - msgpack raises many types for a bad file
        raise _damaged(run, exc) from None
    runner_state = state.get("runner", state) if isinstance(state, dict) else None  # a PBT population
    if not isinstance(runner_state, dict) or "params" not in runner_state:
        raise _damaged(run, ValueError("no network parameters in it"))


def load_checkpoint(run: RunDir, template: Runner) -> tuple[Runner, dict[str, Any]]:
    """The runner saved in `run`, shaped like `template` (a freshly initialised runner): read by
    process 0 and sent to every other process."""
    runner, meta = template, {}
    if distributed.is_writer():
        raw = _state_bytes(run)
        try:
            runner = serialization.from_bytes(template, raw)
        except Exception as exc:  # noqa: BLE001 - msgpack and flax raise many types for a bad file
            raise _damaged(run, exc) from None
        meta = read_json(run.checkpoint_dir / META_FILE, {}, kind=dict)
    runner, meta = distributed.from_writer_tree(runner), distributed.from_writer(meta)
    return jax.tree_util.tree_map(jnp.asarray, runner), meta


def params_template(config: TrainConfig) -> Any:
    """Freshly initialised network parameters of the right shapes (the template to restore into)."""
    return make_ppo(config).init_params(jax.random.PRNGKey(0))


def load_params(run: RunDir, config: TrainConfig, member: int | None = None) -> Any:
    """The trained network parameters of a run's checkpoint: with several members, all of them
    (leading member axis), or only `member`'s."""
    raw = _state_bytes(run)
    try:
        raw_state = serialization.msgpack_restore(raw)
        runner_state = raw_state["runner"] if "runner" in raw_state else raw_state  # a PBT population
        params = serialization.from_state_dict(params_template(config), runner_state["params"])
    except Exception as exc:  # noqa: BLE001 - msgpack and flax raise many types for a bad file
        raise _damaged(run, exc) from None
    if member is not None and config.members > 1:
        params = jax.tree_util.tree_map(lambda x: x[member], params)
    return params
