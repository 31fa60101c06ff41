"""TensorBoard event files of a run, read back with TensorBoard's own reader: the same scalars as
metrics.jsonl per member, and an HParams session per member with its final figures; written live
(`tensorboard=True`, `evorl train --tensorboard`) or exported later (`evorl export tensorboard`)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from evorl_core.cli import main
from evorl_core.config import make_config
from evorl_core.data import build_market, synthetic_ohlcv
from evorl_core.store.rundir import RunDir
from evorl_core.store.tensorboard import INDEX_FIELDS, export_run, member_dir, tensorboard_dir
from evorl_core.training import pipeline

TINY = dict(num_envs=8, num_steps=16, minibatch_size=32, epochs=2, hidden=(16,), window=8, test_days=20,
            val_days=30, updates_per_chunk=2, symbols=("AAA", "BBB"), data="synthetic", total_timesteps=8 * 16 * 4)
INFO = {"source": "synthetic", "synthetic": True}


@pytest.fixture(scope="module")
def market():
    frames = {s: synthetic_ohlcv(s, n_days=300, seed=3) for s in TINY["symbols"]}
    return build_market(frames, window=8, test_days=20, val_days=30, embargo_days=8, info=INFO)


@pytest.fixture(scope="module")
def seeds_run(tmp_path_factory, market):
    runs = tmp_path_factory.mktemp("tb") / "runs"
    config = make_config("quick", **TINY, seeds=2, seed=4)
    run = pipeline.run(config, runs, "seeds", market=market, tensorboard=True)
    assert run.read_status()["state"] == "done"
    return run


@pytest.fixture(scope="module")
def population_run(tmp_path_factory, market):
    runs = tmp_path_factory.mktemp("tbpop") / "runs"
    config = make_config("quick", **TINY, population=2, pbt_interval=2, seed=1)
    run = pipeline.run(config, runs, "pop", market=market)  # no events while training: exported after
    assert run.read_status()["state"] == "done"
    return run


def read(path) -> EventAccumulator:
    acc = EventAccumulator(str(path), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def assert_scalars_match_metrics(run: RunDir, member: int | None) -> EventAccumulator:
    rows = [r for r in run.read_metrics() if member is None or r["member"] == member]
    assert rows
    acc = read(member_dir(run, member))
    fields = {k for r in rows for k, v in r.items()
              if k not in INDEX_FIELDS and isinstance(v, (int, float)) and math.isfinite(v)}
    assert fields >= {"policy_loss", "value_loss", "entropy", "approx_kl", "explained_variance", "steps_per_sec"}
    assert fields <= set(acc.Tags()["scalars"])
    for tag in fields:
        events = acc.Scalars(tag)
        expected = [(r["env_steps"], r[tag]) for r in rows if isinstance(r.get(tag), (int, float))]
        assert [e.step for e in events] == [step for step, _ in expected], tag
        np.testing.assert_allclose([e.value for e in events], [v for _, v in expected], rtol=1e-6, atol=1e-30)
    return acc


def hparams_of(acc: EventAccumulator) -> dict:
    content = acc.PluginTagToContent("hparams")
    start = next(c for tag, c in content.items() if tag.endswith("session_start_info"))
    data = plugin_data_pb2.HParamsPluginData.FromString(start)
    return {name: value.WhichOneof("kind") and getattr(value, value.WhichOneof("kind"))
            for name, value in data.session_start_info.hparams.items()}


def test_a_seeds_run_writes_each_members_metrics_as_scalars(seeds_run):
    assert sorted(p.name for p in tensorboard_dir(seeds_run).iterdir()) == ["member-0", "member-1"]
    for member in (0, 1):
        assert_scalars_match_metrics(seeds_run, member)


def test_each_member_has_an_hparams_session_with_its_final_figures(seeds_run):
    members = seeds_run.read_member_metrics()
    selection = seeds_run.read_selection()
    config = seeds_run.read_config()
    for member in (0, 1):
        acc = read(member_dir(seeds_run, member))
        hp = hparams_of(acc)
        assert hp["seed"] == 4 + member and hp["member"] == member and hp["lr"] == pytest.approx(config["lr"]) \
            and hp["hidden"] == "16" and hp["members"] == 2
        test_return = np.mean([members[str(member)][s]["total_return"] for s in TINY["symbols"]])
        assert acc.Scalars("hparam/test_total_return")[-1].value == pytest.approx(test_return, rel=1e-6)
        val = np.mean(list(selection["validation_log_return"][str(member)].values()))
        assert acc.Scalars("hparam/val_log_return")[-1].value == pytest.approx(val, rel=1e-6)


def test_export_of_a_population_run_carries_each_members_evolved_hyperparameters(population_run):
    assert not tensorboard_dir(population_run).exists()
    assert main(["export", "tensorboard", "pop", "--runs-dir", str(population_run.path.parent)]) == 0
    final = {}
    for row in population_run.read_population("hyperparams"):
        final[row["member"]] = row
    for member in (0, 1):
        acc = assert_scalars_match_metrics(population_run, member)
        hp = hparams_of(acc)
        assert hp["lr"] == pytest.approx(final[member]["lr"]) and hp["ent_coef"] == pytest.approx(final[member]["ent_coef"])
    # a second export rewrites the folder instead of doubling every point
    export_run(population_run)
    acc = read(member_dir(population_run, 0))
    rows = [r for r in population_run.read_metrics() if r["member"] == 0]
    assert len(acc.Scalars("policy_loss")) == len(rows)


def test_export_says_what_is_missing(tmp_path, capsys):
    assert main(["export", "tensorboard", "nope", "--runs-dir", str(tmp_path)]) == 2
    assert "no such run" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text("{}")
    assert main(["export", "tensorboard", "empty", "--runs-dir", str(tmp_path)]) == 2
    assert "no metrics yet" in capsys.readouterr().err
