"""TensorBoard event files of a run: the logging convention of JAX RL libraries, so the tools a
researcher already uses can see our runs.

`runs/<run_id>/tensorboard/` holds one event file per agent: the folder itself for a single agent,
`member-<k>/` for each seed or population member. Scalars are exactly metrics.jsonl's numeric
fields (tag = field name, step = that agent's env steps); after the backtest each agent's folder
gets an HParams session: its hyperparameters (a population member's final ones) with its
validation and test figures (`hparam/...`). Written live with `evorl train --tensorboard`, or
from the files of any run with `evorl export tensorboard RUN` (which rewrites the folder).
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tensorboardX import SummaryWriter
from tensorboardX.summary import hparams as hparams_summary

from evorl_core.store.atomic import RunDirError
from evorl_core.store.rundir import RunDir

TENSORBOARD_DIR = "tensorboard"
# metrics.jsonl fields that index a row rather than measure something
INDEX_FIELDS = ("update", "env_steps", "member")
# hyperparameters recorded with each agent (config fields; a population's evolved ones per member)
HPARAM_FIELDS = ("lr", "ent_coef", "clip_eps", "vf_coef", "gamma", "gae_lambda", "max_grad_norm", "num_envs",
                 "num_steps", "minibatch_size", "epochs", "hidden", "activation", "window", "seed",
                 "total_timesteps", "preset", "cost_model", "execution", "precision")
# per-symbol test figures averaged over the symbols into `hparam/test_<name>`
TEST_FIGURES = ("total_return", "bh_total_return", "sharpe", "max_drawdown", "win_rate", "exposure", "trades")


def tensorboard_dir(run: RunDir) -> Path:
    return run.path / TENSORBOARD_DIR


def member_dir(run: RunDir, member: int | None) -> Path:
    """The event folder of one agent: the run's tensorboard/ itself, or member-<k>/ of it."""
    base = tensorboard_dir(run)
    return base if member is None else base / f"member-{member}"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def scalars_of(row: Mapping[str, Any]) -> dict[str, float]:
    """The scalars of one metrics.jsonl row: every finite numeric field but the index fields."""
    return {k: v for k, v in ((k, _number(v)) for k, v in row.items() if k not in INDEX_FIELDS) if v is not None}


class EventWriter:
    """Event files of one run, one writer per agent (opened on first use). `members`: the number
    of agents of the run (1: no member folders)."""

    def __init__(self, run: RunDir, members: int = 1) -> None:
        self.run = run
        self.members = members
        self._writers: dict[int | None, SummaryWriter] = {}

    def _writer(self, member: int | None) -> SummaryWriter:
        key = member if self.members > 1 else None
        if key not in self._writers:
            path = member_dir(self.run, key)
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise RunDirError(f"{path}: cannot write TensorBoard events ({exc.strerror or exc})") from None
            self._writers[key] = SummaryWriter(logdir=str(path), flush_secs=10)
        return self._writers[key]

    def write_rows(self, rows: Iterable[Mapping[str, Any]], started_at: float | None = None) -> None:
        """metrics.jsonl rows as scalars, each under its member's writer, at its env steps; with
        `started_at` (the run's start, epoch seconds) each at the time it was measured."""
        for row in rows:
            step = int(row.get("env_steps") or 0)
            writer = self._writer(int(row.get("member", 0)))
            offset = _number(row.get("wall_time"))
            wall = started_at + offset if started_at is not None and offset is not None else None
            for tag, value in scalars_of(row).items():
                writer.add_scalar(tag, value, step, walltime=wall)

    def write_hparams(self, hparams_by_member: Mapping[int, dict[str, Any]],
                      figures_by_member: Mapping[int, dict[str, float]], step: int) -> None:
        """One HParams session per agent: its hyperparameters with its final figures."""
        for member, hp in hparams_by_member.items():
            figures = figures_by_member.get(member, {})
            writer = self._writer(member)
            exp, ssi, sei = hparams_summary(hp, figures)
            for summary in (exp, ssi, sei):
                writer.file_writer.add_summary(summary)
            for tag, value in figures.items():
                writer.add_scalar(tag, value, step)

    def rewrite(self, rows: Iterable[Mapping[str, Any]], started_at: float | None = None) -> None:
        """Start the folder again from `rows` (a resumed run: metrics.jsonl as cut back to its checkpoint)."""
        self.close()
        shutil.rmtree(tensorboard_dir(self.run), ignore_errors=True)
        self.write_rows(rows, started_at)

    def flush(self) -> None:
        for writer in self._writers.values():
            writer.flush()

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()


def _hparam_value(value: Any) -> bool | str | float | int:
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def run_hparams(run: RunDir, config: Mapping[str, Any], members: int) -> dict[int, dict[str, Any]]:
    """Each agent's hyperparameters: the config's, a seed's own seed, a PBT member's final values."""
    base = {name: _hparam_value(config[name]) for name in HPARAM_FIELDS if config.get(name) is not None}
    base["members"] = members
    out = {m: dict(base) for m in range(members)}
    if members > 1:
        for m in range(members):
            out[m]["seed"] = int(config.get("seed") or 0) + m
            out[m]["member"] = m
    final: dict[int, dict[str, Any]] = {}
    for row in run.read_population("hyperparams"):
        if isinstance(row.get("member"), int):
            final[row["member"]] = row  # rows are in update order: the last one wins
    for m, row in final.items():
        if m in out:
            out[m].update({k: float(v) for k, v in row.items()
                           if k in HPARAM_FIELDS and _number(v) is not None})
    return out


def _mean(values: Iterable[Any]) -> float | None:
    finite = [v for v in (_number(x) for x in values) if v is not None]
    return sum(finite) / len(finite) if finite else None


def run_figures(run: RunDir, members: int) -> dict[int, dict[str, float]]:
    """Each agent's final figures: mean validation net log return over the symbols
    (`hparam/val_log_return`), and each test figure averaged over the symbols (`hparam/test_<name>`)."""
    selection = run.read_selection() or {}
    validation = selection.get("validation_log_return") or {}
    if members > 1:
        tests = {int(m): v for m, v in (run.read_member_metrics() or {}).items() if str(m).isdigit()}
        # buy & hold is the same for every member: from the headline table
        headline = run.read_backtest_metrics() or {}
        for per_symbol in tests.values():
            for symbol, row in per_symbol.items():
                if isinstance(row, dict) and "bh_total_return" not in row:
                    row["bh_total_return"] = (headline.get(symbol) or {}).get("bh_total_return")
    else:
        tests = {0: run.read_backtest_metrics() or {}}
    out: dict[int, dict[str, float]] = {}
    for m in range(members):
        figures: dict[str, float] = {}
        val = validation.get(str(m))
        if isinstance(val, dict) and (mean := _mean(val.values())) is not None:
            figures["hparam/val_log_return"] = mean
        per_symbol = [row for row in (tests.get(m) or {}).values() if isinstance(row, dict)]
        for name in TEST_FIGURES:
            if (mean := _mean(row.get(name) for row in per_symbol)) is not None:
                figures[f"hparam/test_{name}"] = mean
        out[m] = figures
    return out


def write_final(writer: EventWriter, run: RunDir) -> None:
    """The HParams sessions of a finished run (after its backtest)."""
    config = run.read_config() or {}
    members = writer.members
    rows = run.read_metrics()
    step = max((int(r.get("env_steps") or 0) for r in rows), default=0)
    writer.write_hparams(run_hparams(run, config, members), run_figures(run, members), step)


def run_members(run: RunDir) -> int:
    """Agents of a run (as `TrainConfig.members`): the population when there is one, else the seeds."""
    config = run.read_config() or {}
    population, seeds = int(config.get("population") or 0), int(config.get("seeds") or 1)
    return population if population > 1 else max(seeds, 1)


def training_started_at(status: Mapping[str, Any]) -> float | None:
    """When the first update of the run's last session started (metrics' `wall_time` counts from it)."""
    if (at := _number(status.get("training_started_at"))) is not None:
        return at
    started, compile_seconds = _number(status.get("started_at")), _number(status.get("compile_seconds")) or 0.0
    return None if started is None else started + compile_seconds


def export_run(run: RunDir) -> Path:
    """Write (or rewrite) a run's tensorboard/ from its metrics.jsonl and backtest; returns the folder."""
    if not run.config_path.exists():
        raise RunDirError(f"{run.path}: not a run directory (no config.json)")
    rows = run.read_metrics()
    if not rows:
        raise RunDirError(f"run {run.run_id!r} has no metrics yet (metrics.jsonl is empty or missing)")
    shutil.rmtree(tensorboard_dir(run), ignore_errors=True)
    writer = EventWriter(run, run_members(run))
    try:
        writer.write_rows(rows, training_started_at(run.read_status() or {}))
        if run.read_backtest_metrics():
            write_final(writer, run)
    finally:
        writer.close()
    return tensorboard_dir(run)
