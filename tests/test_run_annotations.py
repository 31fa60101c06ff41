"""Run annotations (name, tags, note, archived) and deleting runs (evorl_core.store.catalogue)."""

from __future__ import annotations

import json

import pytest

from evorl_core.store.atomic import RunDirError
from evorl_core.store.catalogue import (
    delete_run,
    list_runs_annotated,
    parse_tags,
    read_annotations,
    write_annotations,
)
from evorl_core.store.rundir import ACTIVE_STATES, FINAL_STATES, RunDir, RunLock


def _run(tmp_path, run_id="r1", state="done", data_info=None, data="synthetic"):
    rd = RunDir.create(tmp_path, run_id)
    rd.write_config({"symbols": ["AAA"], "preset": "quick", "data": data, "data_info": data_info,
                     "total_timesteps": 4096, "hidden": [16], "test_days": 20})
    rd.write_status(state, env_steps=0, total_steps=4096)
    return rd


def test_parse_tags_trims_dedups_and_keeps_order():
    assert parse_tags(" baseline, long-only;  sweep  1 ,baseline,,") == ["baseline", "long-only", "sweep 1"]
    assert parse_tags(None) == [] and parse_tags(["a", " a ", "b"]) == ["a", "b"]


def test_annotations_default_empty_and_round_trip(tmp_path):
    rd = _run(tmp_path)
    assert read_annotations(rd) == {"name": "", "tags": [], "note": "", "archived": False}
    write_annotations(rd, name="  my   first run ", tags="a, b", note="long-only\n")
    write_annotations(rd, archived=True)  # a partial change keeps the rest
    assert read_annotations(rd) == {"name": "my first run", "tags": ["a", "b"], "note": "long-only",
                                    "archived": True}
    on_disk = json.loads((rd.path / "annotations.json").read_text())
    assert on_disk["name"] == "my first run" and "updated_at" in on_disk


@pytest.mark.parametrize("changes,needle", [
    ({"colour": "red"}, "unknown annotation field"),
    ({"name": "x" * 81}, "name: at most 80"),
    ({"note": "x" * 2001}, "note: at most 2000"),
    ({"tags": ",".join(str(i) for i in range(21))}, "tags: at most 20"),
])
def test_annotations_refuse_bad_values(tmp_path, changes, needle):
    rd = _run(tmp_path)
    with pytest.raises(RunDirError, match=needle):
        write_annotations(rd, **changes)
    assert not (rd.path / "annotations.json").exists()


def test_annotations_of_a_missing_run_are_refused(tmp_path):
    with pytest.raises(RunDirError, match="not found"):
        write_annotations(RunDir.open(tmp_path, "ghost"), name="x")


def test_list_runs_annotated_carries_annotations_provenance_and_filters_archived(tmp_path):
    real = _run(tmp_path, "real", data="csv:/d", data_info={"source": "csv", "synthetic": False})
    _run(tmp_path, "fake", data="auto", data_info={"source": "synthetic", "synthetic": True})
    _run(tmp_path, "pending", state="queued", data="auto")  # data not loaded yet: unknown
    write_annotations(real, name="baseline", tags="a")
    write_annotations(RunDir.open(tmp_path, "fake"), archived=True)
    runs = {r["run_id"]: r for r in list_runs_annotated(tmp_path)}
    assert runs["real"]["name"] == "baseline" and runs["real"]["tags"] == ["a"]
    assert runs["real"]["synthetic"] is False and runs["fake"]["synthetic"] is True
    assert runs["pending"]["synthetic"] is None
    assert runs["real"]["total_timesteps"] == 4096
    assert {r["run_id"] for r in list_runs_annotated(tmp_path, include_archived=False)} == {"real", "pending"}


@pytest.mark.parametrize("state", FINAL_STATES)
def test_delete_removes_a_final_run(tmp_path, state):
    rd = _run(tmp_path, state=state)
    delete_run(rd)
    assert not rd.path.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("state", ACTIVE_STATES)
def test_delete_refuses_an_active_run(tmp_path, state):
    rd = _run(tmp_path, state=state)
    with RunLock.acquire(rd):  # a live owner (a lock on another descriptor looks the same)
        with pytest.raises(RunDirError, match="stop it before deleting"):
            delete_run(rd)
        assert rd.status_path.exists()
    delete_run(rd)  # the owner is gone: the run reads as interrupted, and nothing writes to it
    assert not rd.path.exists()


def test_delete_refuses_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "notarun").mkdir()
    with pytest.raises(RunDirError, match="not a run directory"):
        delete_run(RunDir.open(tmp_path, "notarun"))
    assert (tmp_path / "notarun").is_dir()
