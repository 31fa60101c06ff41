"""Writing OHLCV frames as the CSV files a user brings (Yahoo layout: Date, Open, High, Low, Close,
Volume; ISO dates), for the tests that read markets from files. Not a test module."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd


def write_csv(path: Path, frame: pd.DataFrame) -> Path:
    """`frame` (lower-case OHLCV columns, a date index) as `path`; its folder is created."""
    out = frame.rename(columns=str.title).rename_axis("Date").reset_index()
    out["Date"] = out["Date"].dt.strftime("%Y-%m-%d")
    path.parent.mkdir(parents=True, exist_ok=True)
    out[["Date", "Open", "High", "Low", "Close", "Volume"]].to_csv(path, index=False)
    return path


def write_csv_dir(path: Path, frames: Mapping[str, pd.DataFrame]) -> None:
    """One `<symbol>.csv` per frame in folder `path` (a `--data csv:<path>` source)."""
    for symbol, frame in frames.items():
        write_csv(path / f"{symbol}.csv", frame)
