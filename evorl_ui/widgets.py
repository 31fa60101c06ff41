"""Widgets more than one page uses: the data-source picker (with CSV uploads), the run picker,
and drawing a figure.

Every page that loads market data (Train, Data, Models) offers the same sources through
``source_picker``; uploaded CSVs are validated in memory and only then written to
``<data cache>/uploads/<name>/<SYMBOL>.csv`` by ``save_uploads`` only. The client's file name is
never used: `<name>` and `<SYMBOL>` are checked names of ours, so nothing lands outside that folder.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import streamlit as st

from evorl_core import data
from evorl_core.data import DataError, parse_symbol_csv
from evorl_core.rundir import ACTIVE_STATES, StorageError, atomic_write_bytes
from evorl_ui import forms, presenters, settings, shell

# source kind -> label; a kind other than csv_dir/upload is a load_frames source as it is.
SOURCES = {"auto": "Auto (cache → Yahoo → synthetic)", "synthetic": "Synthetic (offline)",
           "yahoo": "Yahoo Finance", "csv_dir": "CSV directory", "upload": "CSV upload per symbol"}
SOURCE_HELP = "auto: cached or downloaded real data; synthetic for a symbol with none available."
# What an uploaded symbol may be called on disk: a ticker, never a path.
UPLOAD_SYMBOL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9&_.-]{0,63}$")
CSV_LAYOUTS = "Yahoo `Date,Open,High,Low,Close,Adj Close,Volume` or NSE/Kaggle layout"


@dataclass
class SourceChoice:
    """What the source picker holds: the kind, the CSV folder text, the uploads by symbol."""

    kind: str
    csv_dir: str = ""
    uploads: dict[str, Any] = field(default_factory=dict)  # symbol -> UploadedFile | None


def source_picker(prefix: str, symbols: Sequence[str], *, default: str = "auto",
                  column: Any = None) -> SourceChoice:
    """The data-source selectbox (in ``column`` when given) and, below it, what the chosen kind
    needs: a folder field, one uploader per symbol, or a note. Widget keys start with ``prefix``."""
    kinds = list(SOURCES)
    kind = (column or st).selectbox("Data source", kinds, index=kinds.index(default), format_func=SOURCES.get,
                                    key=f"{prefix}_source", help=SOURCE_HELP)
    choice = SourceChoice(kind)
    if kind == "csv_dir":
        choice.csv_dir = st.text_input("CSV directory (one <SYMBOL>.csv per symbol; Yahoo or NSE layout)",
                                       key=f"{prefix}_csv_dir")
    elif kind == "upload":
        st.caption(f"One CSV per symbol ({CSV_LAYOUTS}).")
        cols = st.columns(max(1, min(3, len(symbols))))
        for i, sym in enumerate(symbols):
            choice.uploads[sym] = cols[i % len(cols)].file_uploader(f"{sym}.csv", type=["csv"],
                                                                    key=f"{prefix}_upload_{sym}")
    elif kind == "yahoo":
        st.caption("Downloads need internet access; downloaded data is cached in the data cache directory.")
    return choice


def source_spec(choice: SourceChoice) -> tuple[str | None, list[str]]:
    """The load_frames / TrainConfig.data source for a choice, or its problems.

    Uploads give None here: they become a source once ``save_uploads`` has written them.
    """
    if choice.kind == "csv_dir":
        return forms.csv_dir_source(choice.csv_dir)
    if choice.kind == "upload":
        return None, []
    return choice.kind, []


def save_uploads(uploads: Mapping[str, Any], symbols: Sequence[str], folder: Path) -> tuple[str | None, list[str]]:
    """Validate each symbol's uploaded CSV in memory, then write them all to ``folder/<SYMBOL>.csv``.

    Returns ('csv:<folder>', []) or (None, one message per problem, each naming its symbol); on
    problems nothing is written. The uploaded file's own name is never used; a symbol that is not a
    plain ticker is refused, so every file lands directly in ``folder`` (``settings.uploads_dir``).
    """
    missing = [s for s in symbols if uploads.get(s) is None]
    if missing:
        return None, [f"upload: no CSV for {', '.join(missing)}"]
    bad = [s for s in symbols if not UPLOAD_SYMBOL_RE.fullmatch(s) or ".." in s]
    if bad:
        return None, [f"upload: {s!r} is not a valid ticker (letters, digits, '&', '_', '.', '-')" for s in bad]
    errors, contents = [], {}
    for sym in symbols:
        content = uploads[sym].getvalue()
        try:
            parse_symbol_csv(content, f"{sym}.csv (upload)")
            contents[sym] = content
        except DataError as exc:
            errors.append(f"{sym}: {exc}")
        except Exception as exc:  # noqa: BLE001 - unreadable upload: show it, don't crash
            errors.append(f"{sym}: {shell.error_text(exc)}")
    if errors:
        return None, errors
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.csv"):  # a reused folder holds this upload only
            if old.stem not in contents:
                old.unlink()
        for sym, content in contents.items():
            atomic_write_bytes(folder / f"{sym}.csv", content)
    except StorageError as exc:
        return None, [f"upload: {exc}"]
    except OSError as exc:
        return None, [f"upload: cannot write {folder}: {exc.strerror or exc}"]
    return f"csv:{folder}", []


def load_frames(choice: SourceChoice, symbols: Sequence[str], uploads_name: str,
                **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """evorl_core.data.load_frames for the chosen source (uploads saved under ``uploads_name``);
    raises DataError naming every problem."""
    if not symbols:
        raise DataError("give at least one symbol")
    spec, errors = source_spec(choice)
    if choice.kind == "upload" and not errors:
        spec, errors = save_uploads(choice.uploads, symbols, settings.uploads_dir(uploads_name))
    if errors:
        raise DataError("; ".join(errors))
    return data.load_frames(spec, symbols, cache_dir=settings.data_cache(), **kwargs)


def pick_run(runs: Sequence[Mapping[str, Any]], key: str, label: str = "Run", prefer_active: bool = False,
             column: Any = None, label_visibility: str = "visible") -> str | None:
    """The run selector of every page. Its default: the run a link asked for (go_to / ?run=...),
    else the run selected on another page this session, else (prefer_active) a running one, else
    the first (newest). The choice becomes this session's selected run and the ?run= parameter."""
    if not runs:
        return None
    ids = [r["run_id"] for r in runs]
    by_id = {r["run_id"]: r for r in runs}
    requested = st.session_state.pop(shell.REQUESTED_RUN, None)
    if requested in ids:
        st.session_state[key] = requested
    elif st.session_state.get(key) not in ids:
        candidates = [st.query_params.get("run"), st.session_state.get(shell.SELECTED_RUN)]
        if prefer_active:
            candidates.insert(1, next((i for i in ids if by_id[i].get("state") in ACTIVE_STATES), None))
        st.session_state[key] = next((c for c in candidates if c in ids), ids[0])
    chosen = (column or st).selectbox(label, ids, key=key, format_func=lambda i: presenters.run_label(by_id[i]),
                                      label_visibility=label_visibility)
    st.session_state[shell.SELECTED_RUN] = chosen
    if st.query_params.get("run") != chosen:
        st.query_params["run"] = chosen
    return chosen


def chart(fig: go.Figure, key: str | None = None) -> None:
    """Draw a figure from evorl_ui.charts (no plotly logo in the toolbar)."""
    st.plotly_chart(fig, key=key, config={"displaylogo": False})
