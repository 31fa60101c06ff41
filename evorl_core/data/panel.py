"""A universe on one trading calendar for portfolio mode: `load_panel` = resolve the universe,
load and validate every symbol, align on the union calendar (`build_panel`).

Nothing is filled in: a symbol listed later than the others (or delisted, or suspended) simply
has no bar on those days (`PanelData.present` False); its weight is forced to 0 on every day it
could not be traded (`PanelData.tradable`), and no price is ever invented for it. The run records
the calendar (its first and last day and the splits) and each symbol's first and last day.

`--symbols all` takes every symbol a source holds (every CSV of a `csv:DIR` folder, the synthetic
universe of `universe_size` names); a file that fails validation is left out with one line naming
the file and the reason (recorded in the run's data info). With an explicit list, any bad file is
an error.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax.numpy as jnp
import numpy as np
import pandas as pd

from evorl_core.data import market as single_market
from evorl_core.data.arrays import PanelData, day_major
from evorl_core.data.csv_files import csv_folder
from evorl_core.data.features import (
    STD_FLOOR,
    _normalise,
    num_features,
    pooled_stats,
    raw_features,
)
from evorl_core.data.market import Market, hash_frames, rows_needed, split_indices
from evorl_core.data.sources import data_info, load_frames
from evorl_core.data.synthetic import factor_universe_frames, universe_symbols
from evorl_core.data.validate import DataError, validate_ohlcv

ALL = "all"  # `--symbols all`: every symbol the source holds
SURVIVORSHIP_NOTE = ("survivorship bias: a universe chosen from today's list of names (an index's current "
                     "members, the files in a folder today) and applied to the past leaves out the names "
                     "that were dropped or delisted, which flatters every strategy and 1/N alike")


@dataclass
class PanelMarket(Market):
    """A `Market` whose `data` is a `PanelData` on one calendar (`calendar`, datetime64[D] [T])."""

    calendar: np.ndarray = field(default_factory=lambda: np.array([], dtype="datetime64[D]"))
    skipped: dict[str, str] = field(default_factory=dict)  # symbol (file) -> why it was left out

    def split_dates(self, s: int) -> dict[str, str]:
        """The calendar's split as dates, plus symbol s's own first and last day."""
        out = self.calendar_split()
        out.update(symbol_first=str(self.dates[s][0]), symbol_last=str(self.dates[s][-1]),
                   symbol_rows=int(len(self.dates[s])))
        return out

    def prices(self, start: int, num_days: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(open, close, tradable) [N, num_days] of the calendar days start .. start + num_days - 1,
        prices in float64 from the validated frames (1.0 where a symbol has no bar: it is never
        tradable there, so the accounting never reads it)."""
        days = self.calendar[start:start + num_days]
        n = len(self.symbols)
        open_, close = np.ones((n, len(days))), np.ones((n, len(days)))
        for i, symbol in enumerate(self.symbols):
            frame = self.frames[symbol]
            index = frame.index.values.astype("datetime64[D]")
            pos = np.searchsorted(index, days)
            hit = (pos < len(index)) & (index[np.minimum(pos, len(index) - 1)] == days)
            open_[i, hit] = frame["open"].to_numpy(np.float64)[pos[hit]]
            close[i, hit] = frame["close"].to_numpy(np.float64)[pos[hit]]
        return open_, close, np.asarray(self.data.tradable)[:, start:start + num_days]

    def calendar_split(self) -> dict[str, Any]:
        d, data = self.calendar, self.data
        train_end, val_start, test_start = int(data.train_end), int(data.val_start), int(data.test_start)
        out: dict[str, Any] = {"first": str(d[0]), "train_end": str(d[train_end - 1])}
        if self.val_days:
            out.update(val_start=str(d[val_start]), val_end=str(d[val_start + self.val_days - 1]))
        out.update(test_start=str(d[test_start]), last=str(d[-1]), rows=int(len(d)),
                   embargo_days=self.embargo_days)
        return out


def list_symbols(source: str, universe_size: int) -> list[str]:
    """Every symbol a source holds: the CSV files of a `csv:DIR` folder (by file name, a Yahoo
    `.NS`/`.BO` suffix dropped), or the synthetic universe of `universe_size` names."""
    if source.startswith("csv:"):
        directory = csv_folder(source[4:])
        names: dict[str, None] = {}
        for path in sorted(directory.glob("*.csv")) + sorted(directory.glob("*.CSV")):
            stem = path.stem
            for suffix in (".NS", ".BO", ".ns", ".bo"):
                if stem.endswith(suffix):
                    stem = stem[: -len(suffix)]
            names.setdefault(stem.upper(), None)
        if not names:
            raise DataError(f"{source}: no CSV files in {directory}")
        return list(names)
    if source == "synthetic":
        return universe_symbols(universe_size)
    raise DataError(f"--symbols all: the data source {source!r} holds no list of symbols; use --data csv:DIR "
                    "(every CSV in the folder) or --data synthetic (a synthetic universe), or name the symbols")


def load_universe(config: Any, cache_dir: str | os.PathLike = "data_cache", *, synthetic_fallback: bool = True
                  ) -> tuple[dict[str, pd.DataFrame], dict, dict[str, str]]:
    """(frames, data info, skipped) for a portfolio run's universe.

    Synthetic data is a factor universe (`factor_universe_frames`); other sources load per symbol
    as in single-asset mode. With `--symbols all` a symbol whose file fails validation is left out
    (`skipped`: symbol -> reason); with an explicit list it is an error.
    """
    requested = tuple(config.symbols)
    everything = requested == (ALL,)
    symbols = list_symbols(config.data, config.universe_size) if everything else list(requested)
    skipped: dict[str, str] = {}
    if config.data == "synthetic":
        frames = factor_universe_frames(symbols, seed=config.seed)
        info = data_info(frames, "synthetic")
    elif not everything:
        frames, info = load_frames(config.data, symbols, cache_dir=cache_dir, seed=config.seed,
                                   price_adjustment=config.price_adjustment, synthetic_fallback=synthetic_fallback)
    else:
        frames, infos = {}, []
        for symbol in symbols:
            try:
                one, one_info = load_frames(config.data, [symbol], cache_dir=cache_dir, seed=config.seed,
                                            price_adjustment=config.price_adjustment,
                                            synthetic_fallback=synthetic_fallback)
            except DataError as exc:
                skipped[symbol] = " ".join(str(exc).split())
                continue
            frames.update(one)
            infos.append(one_info)
        if not frames:
            raise DataError(f"{config.data}: no file passed validation; "
                            + "; ".join(f"{s}: {r}" for s, r in skipped.items()))
        info = _merge_infos(infos, config.data, config.price_adjustment)
    info["universe"] = {"requested": ALL if everything else list(requested), "symbols": list(frames),
                        "skipped": skipped, "note": SURVIVORSHIP_NOTE}
    info.setdefault("warnings", [])
    info["warnings"] += [f"left out {s}: {r}" for s, r in skipped.items()]
    return frames, info, skipped


def _merge_infos(infos: list[dict], requested: str, price_adjustment: str) -> dict:
    per_symbol: dict[str, dict] = {}
    warnings: list[str] = []
    for one in infos:
        per_symbol.update(one["per_symbol"])
        warnings += one["warnings"]
    kinds = {e["source"] for e in per_symbol.values()}
    return {"source": kinds.pop() if len(kinds) == 1 else "mixed", "requested": requested,
            "price_adjustment": price_adjustment,
            "synthetic": any(e["source"] == "synthetic" for e in per_symbol.values()),
            "warnings": warnings, "per_symbol": per_symbol}


def tradable_mask(present: np.ndarray, window: int, execution: str) -> np.ndarray:
    """[N, T] bool: bars on every day from t - window to t + ahead (ahead 2 with next_open, 1 with
    close), so a symbol chosen at the close of t has a full feature window, a fill and a close to
    hold to, and can still be sold at the next decision's fill. Days after the calendar's last day
    count as bars of the symbols that trade on that last day (they are still listed): the last
    decisions of a backtest and the signal for the next session may hold them."""
    n, horizon = present.shape
    ahead = 2 if execution == "next_open" else 1
    padded = np.concatenate([present, np.repeat(present[:, -1:], ahead, axis=1)], axis=1)
    span = window + 1 + ahead
    counts = np.concatenate([np.zeros((n, 1), np.int64), np.cumsum(padded.astype(np.int64), axis=1)], axis=1)
    out = np.zeros((n, horizon), dtype=bool)
    t = np.arange(window, horizon)
    out[:, t] = (counts[:, t + ahead + 1] - counts[:, t - window]) == span
    return out


def build_panel(frames: dict[str, pd.DataFrame], window: int, test_days: int, *, val_days: int = 0,
                embargo_days: int = 0, execution: str = "next_open", norm: tuple | None = None,
                info: dict | None = None, skipped: dict[str, str] | None = None,
                feature_set: str = "default") -> PanelMarket:
    """Align validated frames on the union of their trading days.

    Splits are on the calendar (one train | validation | test split for the whole account).
    Features are each symbol's own causal features (`raw_features` over its own bars), normalised
    with statistics pooled over every symbol's training rows (so a model trained on one universe
    reads another the same way); `norm=(mean, std)` ([F] or [N, F] with equal rows) replaces them.
    """
    if not frames:
        raise DataError("no symbols given")
    symbols = list(frames)
    valid = {s: validate_ohlcv(frames[s], s) for s in symbols}
    calendar = np.unique(np.concatenate([valid[s].index.values.astype("datetime64[D]") for s in symbols]))
    horizon = len(calendar)
    need = rows_needed(window, test_days, val_days, embargo_days)
    if horizon < need:
        raise DataError(f"the universe's calendar has {horizon} trading days, need at least {need} (window "
                        f"{window}, embargoes, val_days {val_days}, test_days {test_days})")
    train_end, val_start, test_start = (int(x) for x in split_indices(np.int64(horizon), test_days, val_days,
                                                                      embargo_days))
    n = len(symbols)
    nf = num_features(feature_set)
    open_ = np.ones((n, horizon), np.float32)
    close = np.ones((n, horizon), np.float32)
    present = np.zeros((n, horizon), bool)
    raws, rows = [], []
    for i, s in enumerate(symbols):
        idx = np.searchsorted(calendar, valid[s].index.values.astype("datetime64[D]"))
        rows.append(idx)
        open_[i, idx] = valid[s]["open"].to_numpy(np.float32)
        close[i, idx] = valid[s]["close"].to_numpy(np.float32)
        present[i, idx] = True
        raws.append(raw_features(valid[s], feature_set))
    if norm is None:
        train_rows = [raw[1:][idx[1:] < train_end] for raw, idx in zip(raws, rows, strict=True)]
        pooled = np.concatenate(train_rows) if any(len(r) for r in train_rows) else np.zeros((1, nf))
        mean, std = pooled_stats(pooled)
    else:
        if np.size(norm[0]) % nf or np.size(norm[1]) % nf or not np.size(norm[0]):
            raise DataError(f"norm: statistics of shape {np.shape(norm[0])} do not fit the {nf} features of "
                            f"feature set {feature_set!r}")
        mean = np.asarray(norm[0], np.float64).reshape(-1, nf)[0]
        std = np.maximum(np.asarray(norm[1], np.float64).reshape(-1, nf)[0], STD_FLOOR)
    features = np.zeros((n, horizon, nf), np.float32)
    for i in range(n):
        features[i, rows[i]] = _normalise(raws[i], mean, std)
    tradable = tradable_mask(present, window, execution)
    if not tradable[:, :train_end - 1].any():
        raise DataError(f"no symbol of the universe has a full window of {window} days inside the training range")
    first_index = int(np.flatnonzero(tradable.any(axis=0))[0])
    data = PanelData(
        open=jnp.asarray(open_), close=jnp.asarray(close), features=jnp.asarray(features),
        present=jnp.asarray(present), tradable=jnp.asarray(tradable),
        length=jnp.int32(horizon), first_index=jnp.int32(first_index), train_end=jnp.int32(train_end),
        val_start=jnp.int32(val_start), test_start=jnp.int32(test_start), by_day=day_major(open_, close, tradable),
    )
    if info is None:
        info = data_info(valid, "frames")
    market = PanelMarket(
        symbols=symbols, frames=valid, dates=[valid[s].index.values.astype("datetime64[D]") for s in symbols],
        data=data, norm_mean=np.broadcast_to(mean, (n, nf)).copy(),
        norm_std=np.broadcast_to(std, (n, nf)).copy(), window=int(window), test_days=int(test_days),
        info=info, data_hash=hash_frames(valid), val_days=int(val_days), embargo_days=int(embargo_days),
        calendar=calendar, skipped=dict(skipped or {}),
    )
    # the run records its own calendar (a copy: one info dict may serve several panels, e.g. folds)
    market.info = {**(info or {}), "calendar": market.calendar_split()}
    return market


def load_panel(config: Any, cache_dir: str | os.PathLike = "data_cache", norm=None,
               on_features: Callable[[], Any] | None = None) -> PanelMarket:
    """`load_universe` + `build_panel` for a portfolio TrainConfig (`on_features` between the two)."""
    frames, info, skipped = load_universe(config, cache_dir)
    if on_features is not None:
        on_features()
    market = build_panel(frames, config.window, config.test_days, val_days=config.val_days,
                         embargo_days=config.embargo, execution=config.execution, norm=norm, info=info,
                         skipped=skipped, feature_set=getattr(config, "features", "default"))
    return market


def load_market(config: Any, cache_dir: str | os.PathLike = "data_cache", norm=None,
                on_features: Callable[[], Any] | None = None) -> Market:
    """The market of a run in its mode: a portfolio run's universe on one calendar
    (`load_panel`), else one padded market of independent symbols (`market.load_market`)."""
    if getattr(config, "mode", "single") == "portfolio":
        return load_panel(config, cache_dir, norm=norm, on_features=on_features)
    return single_market.load_market(config, cache_dir, norm=norm, on_features=on_features)
