"""Multi-device data parallelism: 1 and 4 (forced CPU) devices train to the same losses.

XLA_FLAGS must be set before JAX initialises, so each run is a fresh Python subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import json, sys
    import jax
    from evorl_core.agents import sharding
    from evorl_core.agents.build import make_ppo
    from evorl_core.training import pipeline
    from evorl_core.config import make_config
    from evorl_core.data import build_market, synthetic_ohlcv

    out = sys.argv[1]
    config = make_config("quick", num_envs=8, num_steps=16, minibatch_size=32, epochs=2, hidden=(16,),
                         window=8, test_days=20, total_timesteps=8 * 16 * 4, updates_per_chunk=2,
                         symbols=("AAA", "BBB"), data="synthetic")
    frames = {s: synthetic_ohlcv(s, n_days=300, seed=3) for s in config.symbols}
    market = build_market(frames, window=8, test_days=20, info={"source": "synthetic", "synthetic": True})

    # What the layout does to a runner: env batch split over "data", the rest replicated.
    runner = make_ppo(config).init(jax.random.PRNGKey(0), market.data)
    placed = jax.device_put(runner, sharding.layout(runner, config).runner)
    placement = {"obs_devices": len(placed.obs.sharding.device_set),
                 "obs_shard_rows": placed.obs.addressable_shards[0].data.shape[0],
                 "params_replicated": bool(jax.tree_util.tree_leaves(placed.params)[0]
                                           .sharding.is_fully_replicated)}
    # A population of 2 on a (population=2, data=n/2) mesh: member axis split, env batch split.
    population = jax.tree_util.tree_map(lambda x: jax.numpy.stack([x, x]), runner)
    n = jax.device_count()
    pop_shards = 2 if n % 2 == 0 else 1
    pop_layout = sharding.layout(population, config, population=True, population_shards=pop_shards)
    pop = jax.device_put(population, pop_layout.runner)
    pop_placement = {"obs_shard_shape": list(pop.obs.addressable_shards[0].data.shape),
                     "params_shard_members": jax.tree_util.tree_leaves(pop.params)[0]
                     .addressable_shards[0].data.shape[0]}

    run = pipeline.run(config, out, "run", market=market)
    rows = run.read_metrics()
    keep = ("policy_loss", "value_loss", "entropy", "approx_kl", "reward_mean", "explained_variance")
    # a PBT population of 2: members split over the population axis, envs over the data axis
    pbt_config = config.replace(population=2, pbt_interval=2, val_days=30, embargo_days=8).validated()
    pbt_market = build_market(frames, window=8, test_days=20, val_days=30, embargo_days=8,
                              info={"source": "synthetic", "synthetic": True})
    pbt = pipeline.run(pbt_config, out, "pbt", market=pbt_market)
    print(json.dumps({"devices": jax.device_count(), "placement": placement, "population": pop_placement,
                      "mesh": run.read_status().get("mesh"), "pbt_mesh": pbt.read_status().get("mesh"),
                      "metrics": [{k: r[k] for k in keep} for r in rows],
                      "pbt_metrics": [{k: r[k] for k in ("update", "member", *keep)} for r in pbt.read_metrics()],
                      "pbt_fitness": [r["fitness"] for r in pbt.read_population("hyperparams") if "fitness" in r]}))
""")


def _run(tmp_path: Path, devices: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    env["JAX_PLATFORMS"] = "cpu"
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    out = tmp_path / f"runs{devices}"
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(out)], env=env, capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_one_and_four_devices_give_the_same_losses(tmp_path):
    one = _run(tmp_path, 1)
    four = _run(tmp_path, 4)
    assert one["devices"] == 1 and one["mesh"] is None  # one device: the loop shards nothing
    assert four["devices"] == 4 and four["mesh"] == {"population": 1, "data": 4}
    assert four["placement"] == {"obs_devices": 4, "obs_shard_rows": 2, "params_replicated": True}
    # 8 envs of 2 members on a 2 x 2 mesh: each device holds 1 member x 4 envs
    assert four["population"] == {"obs_shard_shape": [1, 4, four["population"]["obs_shard_shape"][2]],
                                  "params_shard_members": 1}
    assert len(one["metrics"]) == len(four["metrics"]) == 4
    for a, b in zip(one["metrics"], four["metrics"], strict=True):
        for key in a:
            np.testing.assert_allclose(b[key], a[key], rtol=2e-3, atol=2e-5, err_msg=key)
    # the population: 2 members on the population axis x 2 devices of env batch; same results
    assert one["pbt_mesh"] is None and four["pbt_mesh"] == {"population": 2, "data": 2}
    assert len(one["pbt_metrics"]) == len(four["pbt_metrics"]) == 2 * 4
    for a, b in zip(one["pbt_metrics"], four["pbt_metrics"], strict=True):
        assert (a["update"], a["member"]) == (b["update"], b["member"])
        for key in a:
            np.testing.assert_allclose(b[key], a[key], rtol=2e-3, atol=2e-5, err_msg=key)
    assert len(one["pbt_fitness"]) == 4  # two rounds of two members
    np.testing.assert_allclose(four["pbt_fitness"], one["pbt_fitness"], rtol=1e-3, atol=1e-5)


def test_uneven_env_batch_is_a_clear_error():
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=4",
               PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
    code = textwrap.dedent("""
        from evorl_core.agents import sharding
        try:
            sharding.check_divisible(6, 32, sharding.make_mesh())
        except sharding.ShardingError as exc:
            print(exc)
    """)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "num_envs: 6 envs cannot be split evenly over 4 devices" in proc.stdout
