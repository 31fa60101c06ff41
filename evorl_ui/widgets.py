"""Widgets more than one page uses: the data-source picker (with CSV uploads), the run picker,
the data-provenance badge, field errors, form drafts, and drawing a figure.

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
from evorl_core.config import DEFAULT_DATA
from evorl_core.data import DataError, parse_symbol_csv
from evorl_core.store.atomic import StorageError, atomic_write_bytes, atomic_write_json, read_json
from evorl_core.store.rundir import ACTIVE_STATES
from evorl_ui import forms, settings, shell
from evorl_ui.presenters import runs as run_presenters
from evorl_ui.presenters.format import message_markdown, plain

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


def source_picker(prefix: str, symbols: Sequence[str], *, default: str = DEFAULT_DATA,
                  column: Any = None, form: str | None = None, many: bool = False) -> SourceChoice:
    """The data-source selectbox (in ``column`` when given) and, below it, what the chosen kind
    needs: a folder field, one uploader per symbol (``many``: one uploader for several files, each
    file one symbol named by its file name), or a note. Widget keys start with ``prefix``; with
    ``form``, the kind and the folder are kept in that form's draft."""
    kinds = list(SOURCES)
    key = f"{prefix}_source"
    if st.session_state.get(key) not in kinds:  # first draw (or a draft with a stale value)
        st.session_state[key] = default

    def kept(k: str) -> dict[str, Any]:
        return keep(form, k) if form else {"key": k}

    kind = (column or st).selectbox("Data source", kinds, format_func=SOURCES.get, help=SOURCE_HELP, **kept(key))
    choice = SourceChoice(kind)
    if kind == "csv_dir":
        choice.csv_dir = st.text_input("CSV directory (one <SYMBOL>.csv per symbol; Yahoo or NSE layout)",
                                       **kept(f"{prefix}_csv_dir"))
    elif kind == "upload" and many:
        files = st.file_uploader(f"CSV files, one per symbol, named <SYMBOL>.csv ({CSV_LAYOUTS})", type=["csv"],
                                 accept_multiple_files=True, key=f"{prefix}_uploads")
        choice.uploads = {upload_symbol(f.name): f for f in files or ()}
    elif kind == "upload":
        st.caption(f"One CSV per symbol ({CSV_LAYOUTS}).")
        cols = st.columns(max(1, min(3, len(symbols))))
        for i, sym in enumerate(symbols):
            choice.uploads[sym] = cols[i % len(cols)].file_uploader(f"{sym}.csv", type=["csv"],
                                                                    key=f"{prefix}_upload_{sym}")
    elif kind == "yahoo":
        st.caption("Downloads need internet access; downloaded data is cached in the data cache directory.")
    return choice


def upload_symbol(file_name: str) -> str:
    """The symbol an uploaded file stands for: its name without '.csv' and a Yahoo '.NS'/'.BO'
    suffix, in capitals ('tatasteel.NS.csv' -> 'TATASTEEL'); save_uploads refuses one that is not a ticker."""
    stem = str(file_name).rsplit("/", 1)[-1]
    stem = stem[:-4] if stem.lower().endswith(".csv") else stem
    for suffix in (".NS", ".BO"):
        if stem.upper().endswith(suffix):
            stem = stem[: -len(suffix)]
    return stem.upper()


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
        # Messages call the file what the user called it: display text only, never a path.
        shown = " ".join(str(getattr(uploads[sym], "name", None) or f"{sym}.csv").split())[:200]
        try:
            parse_symbol_csv(content, shown)
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
        raise DataError("\n".join(errors))  # a message per symbol, each problem on its own line
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
    chosen = (column or st).selectbox(label, ids, key=key,
                                      format_func=lambda i: run_presenters.run_label(by_id[i]),
                                      label_visibility=label_visibility)
    st.session_state[shell.SELECTED_RUN] = chosen
    if st.query_params.get("run") != chosen:
        st.query_params["run"] = chosen
    return chosen


def data_badge(synthetic: bool | None, source: str | None = None, column: Any = None) -> None:
    """The data-provenance badge (presenters.runs.data_badge): synthetic, real (source), or unknown yet."""
    text, color, icon = run_presenters.data_badge(synthetic, source)
    (column or st).badge(plain(text), icon=icon, color=color)


def field_errors(messages: Sequence[str] | None, column: Any = None) -> None:
    """Errors that belong to one form field, drawn right under it (each line of a message on its
    own line: a DataError lists one problem a line)."""
    for msg in messages or ():
        (column or st).error(message_markdown(msg), icon=":material/error:")


# form drafts ------------------------------------------------------------------------------
# Streamlit forgets (or leaves stale) a widget's value when a page without it runs, and a reload
# starts a new session. A form's draft is the one truth: each widget writes its value into the
# draft when it changes (``keep``, an on_change callback, which runs before the page does), and
# every run of the page sets the widgets from the draft before drawing them. The draft lives in
# the session (navigation) and in <data cache>/drafts/<form>.json (reload, a new tab).
DRAFT_PREFIX = "_draft_"


def draft_path(form: str) -> Path:
    return settings.data_cache() / "drafts" / f"{form}.json"


def _write_draft_file(form: str, draft: Mapping[str, Any]) -> None:
    try:
        atomic_write_json(draft_path(form), dict(draft))
    except OSError:  # a read-only data cache: the session draft still works
        pass


def restore_draft(form: str, defaults: Mapping[str, Any]) -> None:
    """Before a form's widgets are drawn: set each of them from this session's draft (else the
    saved draft, else ``defaults``)."""
    draft = st.session_state.get(DRAFT_PREFIX + form)
    if draft is None:
        saved = read_json(draft_path(form), {})
        saved = saved if isinstance(saved, dict) else {}
        draft = {k: saved.get(k, v) for k, v in defaults.items()}
        st.session_state[DRAFT_PREFIX + form] = draft
    for key, value in defaults.items():
        st.session_state[key] = draft.get(key, value)


def _remember(form: str, key: str) -> None:
    draft = st.session_state.setdefault(DRAFT_PREFIX + form, {})
    value = st.session_state.get(key)
    scalar = (str, int, float, bool, type(None))
    if isinstance(value, (list, tuple)) and all(isinstance(v, scalar) for v in value):
        value = list(value)  # a multiselect's choice
    if isinstance(value, (*scalar, list)):
        draft[key] = value
        _write_draft_file(form, draft)


def keep(form: str, key: str) -> dict[str, Any]:
    """Widget keyword arguments that keep its value in the form's draft: ``**keep("train", key)``."""
    return {"key": key, "on_change": _remember, "args": (form, key)}


def set_form_values(form: str, values: Mapping[str, Any]) -> None:
    """Change several widgets of a form from a callback (e.g. a preset), draft included."""
    draft = st.session_state.setdefault(DRAFT_PREFIX + form, {})
    for key, value in values.items():
        st.session_state[key] = value
        draft[key] = value
    _write_draft_file(form, draft)


def update_draft(form: str, **values: Any) -> None:
    """Change some values of a form's draft (e.g. clear a run name once its run has started)."""
    draft = {**saved_draft(form), **values}
    st.session_state[DRAFT_PREFIX + form] = draft
    _write_draft_file(form, draft)


def clear_draft(form: str) -> None:
    """Forget a form's draft (session and file); the next run starts from the defaults."""
    st.session_state.pop(DRAFT_PREFIX + form, None)
    draft_path(form).unlink(missing_ok=True)


def saved_draft(form: str) -> dict[str, Any]:
    """A form's draft (session, else file), e.g. the Data page starting from the Train form's source."""
    draft = st.session_state.get(DRAFT_PREFIX + form)
    if draft is None:
        draft = read_json(draft_path(form), {})
    return dict(draft) if isinstance(draft, dict) else {}


def chart(fig: go.Figure, key: str | None = None) -> None:
    """Draw a figure from the evorl_ui.charts modules (no plotly logo in the toolbar)."""
    st.plotly_chart(fig, key=key, config={"displaylogo": False})
