"""Data stage: loaders, validation messages, synthetic realism, causal features, split, padding.

No test touches the network: the Yahoo downloader is replaced by a recorded yfinance frame.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evorl_core import data as D
from evorl_core.data import DataError
from evorl_core.data import yahoo as Y  # where the downloader lives: tests patch it there
from evorl_core.data.arrays import MarketData

FIXTURES = Path(__file__).parent / "fixtures"
YAHOO_CSV = FIXTURES / "BPCL_yahoo.csv"
NSE_CSV = FIXTURES / "BPCL_nse.csv"
YF_RECORDED = FIXTURES / "yfinance_BPCL.NS.csv"


def recorded_download(ticker: str, start: str, end: str | None) -> pd.DataFrame:
    """What yfinance.download returned for BPCL.NS: MultiIndex (Price, Ticker) columns."""
    assert ticker == "BPCL.NS"
    return pd.read_csv(YF_RECORDED, header=[0, 1], index_col=0, parse_dates=True)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any test that reaches the real downloader fails, and retries do not sleep."""

    def forbidden(ticker, start, end):
        raise AssertionError(f"network download attempted for {ticker}")

    monkeypatch.setattr(Y, "_download", forbidden)
    monkeypatch.setattr(Y, "RETRY_BACKOFF_S", (0.0, 0.0))


# --------------------------------------------------------------------------- CSV layouts


def test_yahoo_and_nse_layouts_load_to_the_same_validated_frame():
    yahoo = D.read_symbol_csv(YAHOO_CSV)
    nse = D.read_symbol_csv(NSE_CSV)
    pd.testing.assert_frame_equal(yahoo, nse)
    assert list(yahoo.columns) == ["open", "high", "low", "close", "volume"]
    assert all(dt == np.float64 for dt in yahoo.dtypes)
    assert isinstance(yahoo.index, pd.DatetimeIndex) and yahoo.index.name == "date"
    assert yahoo.index.tz is None and yahoo.index.is_monotonic_increasing and yahoo.index.is_unique
    assert len(yahoo) == 24
    first = yahoo.iloc[0]
    assert (first.open, first.high, first.low, first.close, first.volume) == (454.02, 461.84, 446.24, 450.0, 1249496)
    assert yahoo.loc["2024-01-04", "volume"] == 4646991  # NSE "4,646,991" with thousands separators


def test_nse_layout_keeps_only_eq_series_rows():
    text = NSE_CSV.read_text()
    assert ",BL," in text and ",BE," in text  # the fixture really mixes series
    frame = D.read_symbol_csv(NSE_CSV)
    assert len(frame) == 24
    assert not (frame["close"] == 500.0).any() and not (frame["close"] == 1.0).any()


def test_close_is_used_not_adjusted_close():
    raw = pd.read_csv(YAHOO_CSV)
    frame = D.read_symbol_csv(YAHOO_CSV)
    np.testing.assert_array_equal(frame["close"].to_numpy(), raw["Close"].to_numpy())
    assert not np.allclose(frame["close"].to_numpy(), raw["Adj Close"].to_numpy())


def test_yfinance_multiindex_csv_is_read():
    frame = D.read_symbol_csv(YF_RECORDED)
    raw = pd.read_csv(YF_RECORDED, header=[0, 1], index_col=0, parse_dates=True)
    assert len(frame) == len(raw) == 80
    np.testing.assert_array_equal(frame["close"].to_numpy(), raw[("Close", "BPCL.NS")].to_numpy())


def test_validate_ohlcv_accepts_capitalised_frame_and_date_column():
    frame = D.read_symbol_csv(YAHOO_CSV)
    as_file = pd.read_csv(YAHOO_CSV).drop(columns=["Adj Close"])
    pd.testing.assert_frame_equal(D.validate_ohlcv(as_file, "mine"), frame)


# --------------------------------------------------------------------------- validation messages


def _edit(lines: list[str], row: int, column: str, value: str) -> None:
    """Set a cell; `row` is the spreadsheet row (header = 1)."""
    header = lines[0].split(",")
    cells = lines[row - 1].split(",")
    cells[header.index(column)] = value
    lines[row - 1] = ",".join(cells)


def _malformed(case: str) -> tuple[list[str], str, int]:
    """(file lines, column named in the error, row named in the error)."""
    lines = YAHOO_CSV.read_text().splitlines()
    if case == "missing column":
        header = lines[0].split(",")
        keep = [i for i, h in enumerate(header) if h != "Close"]  # Adj Close stays: not a substitute
        lines = [",".join(line.split(",")[i] for i in keep) for line in lines]
        return lines, "Close", 1
    if case == "unparsable date":
        _edit(lines, 6, "Date", "2024-13-45")
        return lines, "Date", 6
    if case == "unsorted dates":
        lines[4], lines[5] = lines[5], lines[4]  # rows 5 and 6 swapped
        return lines, "Date", 6
    if case == "duplicate date":
        _edit(lines, 8, "Date", lines[6].split(",")[0])
        return lines, "Date", 8
    if case == "nan price":
        _edit(lines, 9, "Open", "")
        return lines, "Open", 9
    if case == "non-positive price":
        _edit(lines, 10, "Low", "0")
        return lines, "Low", 10
    if case == "high below close":
        for column, value in (("Open", "100.00"), ("High", "104.00"), ("Low", "99.00"), ("Close", "105.00")):
            _edit(lines, 12, column, value)
        return lines, "High", 12
    if case == "low above open":
        for column, value in (("Open", "100.00"), ("High", "110.00"), ("Low", "101.00"), ("Close", "105.00")):
            _edit(lines, 13, column, value)
        return lines, "Low", 13
    if case == "nan volume":
        _edit(lines, 14, "Volume", "null")
        return lines, "Volume", 14
    if case == "not a number":
        _edit(lines, 15, "Close", "12o.5")
        return lines, "Close", 15
    raise AssertionError(case)


MALFORMED = {
    "missing column": "missing column",
    "unparsable date": "cannot parse date",
    "unsorted dates": "ascending",
    "duplicate date": "duplicate date",
    "nan price": "missing value",
    "non-positive price": "must be positive",
    "high below close": "is below close",
    "low above open": "is above open",
    "nan volume": "missing value",
    "not a number": "is not a number",
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_csv_names_file_column_and_row(tmp_path, case):
    lines, column, row = _malformed(case)
    path = tmp_path / "BROKEN.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as err:
        D.read_symbol_csv(path)
    msg = str(err.value)
    assert "BROKEN.csv" in msg
    assert f"'{column}'" in msg
    assert f"row {row}" in msg
    assert MALFORMED[case] in msg


def test_nse_row_numbers_count_filtered_rows(tmp_path):
    lines = NSE_CSV.read_text().splitlines()
    # row 20 of the file is an EQ row after the BL (row 8) and BE (row 15) rows were inserted
    assert lines[19].split(",")[2] == "EQ"
    cells = lines[19].split(",")
    cells[8] = "-5"  # Close
    lines[19] = ",".join(cells)
    path = tmp_path / "BPCL.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"BPCL\.csv: column 'Close', row 20: price must be positive"):
        D.read_symbol_csv(path)


# --------------------------------------------------------------------------- every problem in one error


def _four_problems() -> tuple[list[str], list[tuple[str, int, str]]]:
    """The Yahoo fixture with 4 planted problems: (file lines, (column, row, text) of each, in row order)."""
    lines = YAHOO_CSV.read_text().splitlines()
    _edit(lines, 5, "Close", "")
    _edit(lines, 9, "Open", "-4.5")
    # high below low: below the close as well, reported once (at High: low is still under open and close)
    for column, value in (("Open", "100.00"), ("High", "99.50"), ("Low", "99.80"), ("Close", "100.00")):
        _edit(lines, 12, column, value)
    day_before = lines[18].split(",")[0]
    _edit(lines, 20, "Date", day_before)
    return lines, [("Close", 5, "missing value (evorl never fills gaps: fix or delete the row)"),
                   ("Open", 9, "price must be positive (got -4.5)"),
                   ("High", 12, "high 99.5 is below close 100"),
                   ("Date", 20, f"duplicate date {day_before} (also in row 19)")]


def test_every_problem_of_a_file_is_in_one_error_one_a_line(tmp_path):
    lines, planted = _four_problems()
    path = tmp_path / "BROKEN.csv"
    path.write_text("\n".join(lines) + "\n")
    for read, name in ((lambda: D.read_symbol_csv(path), str(path)),
                       (lambda: D.parse_symbol_csv(path.read_bytes(), "my upload.csv"), "my upload.csv")):
        with pytest.raises(DataError) as err:
            read()
        exc = err.value
        assert isinstance(exc, ValueError)
        expected = tuple(f"{name}: column '{column}', row {row}: {text}" for column, row, text in planted)
        assert exc.problems == expected and exc.count == 4
        # the first line is a problem on its own (and says there are more), then one line per problem
        assert str(exc).splitlines() == [expected[0] + " (3 more problems)", *expected[1:]]


def test_row_numbers_of_a_yfinance_multiindex_file_count_its_three_header_lines(tmp_path):
    lines = YF_RECORDED.read_text().splitlines()
    assert lines[2].startswith("Date,")  # rows 1-3 are headers, the first data row is row 4
    header = lines[0].split(",")
    for row, column, value in ((4, "Open", "abc"), (10, "Volume", "-1")):
        cells = lines[row - 1].split(",")
        cells[header.index(column)] = value
        lines[row - 1] = ",".join(cells)
    path = tmp_path / "BPCL.NS.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as err:
        D.read_symbol_csv(path)
    assert err.value.problems == (f"{path}: column 'Open', row 4: 'abc' is not a number",
                                  f"{path}: column 'Volume', row 10: volume must be >= 0 (got -1)")


def test_a_file_with_many_problems_lists_the_first_twenty_and_counts_the_rest():
    frame = D.synthetic_ohlcv("AAA", n_days=150, seed=0)
    frame.iloc[:100, frame.columns.get_loc("volume")] = -1.0
    with pytest.raises(DataError) as err:
        D.validate_ohlcv(frame, "AAA")
    exc = err.value
    assert exc.count == 100 and len(exc.problems) == D.MAX_LISTED == 20
    assert exc.problems == tuple(f"AAA: column 'volume', row {r}: volume must be >= 0 (got -1)" for r in range(2, 22))
    lines = str(exc).splitlines()
    assert len(lines) == 21
    assert lines[0] == exc.problems[0] + " (99 more problems)"
    assert lines[1:20] == list(exc.problems[1:])
    assert lines[-1] == "... and 80 more"


def test_a_bad_cell_is_reported_once_and_its_row_skips_the_high_low_checks(tmp_path):
    lines = YAHOO_CSV.read_text().splitlines()
    _edit(lines, 6, "Close", "-5")  # would also be 'outside 1e-12 ..' and make low look above close
    _edit(lines, 7, "High", "12o")  # would also be a missing value and make high look below open
    _edit(lines, 8, "Low", "inf")  # would also be outside the price range
    path = tmp_path / "BPCL.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as err:
        D.read_symbol_csv(path)
    assert [p.split(": ", 1)[1] for p in err.value.problems] == [
        "column 'Close', row 6: price must be positive (got -5)",
        "column 'High', row 7: '12o' is not a number",
        "column 'Low', row 8: inf is not a finite number",
    ]


def test_a_newest_first_file_is_one_problem_and_a_date_column_without_dates_stops_at_once(tmp_path):
    lines = YAHOO_CSV.read_text().splitlines()
    path = tmp_path / "BPCL.csv"
    path.write_text("\n".join([lines[0], *reversed(lines[1:])]) + "\n")
    with pytest.raises(DataError) as err:
        D.read_symbol_csv(path)
    assert err.value.count == 1 and "the file is newest-first: sort it oldest-first" in str(err.value)
    path.write_text("\n".join([lines[0]] + [",".join(["soon", *ln.split(",")[1:]]) for ln in lines[1:]]) + "\n")
    with pytest.raises(DataError) as err:
        D.read_symbol_csv(path)
    assert str(err.value) == f"{path}: column 'Date', row 2: cannot parse date 'soon' (23 more rows like this)"


def test_every_bad_adj_close_is_listed(tmp_path):
    lines = YAHOO_CSV.read_text().splitlines()
    _edit(lines, 7, "Adj Close", "")
    _edit(lines, 11, "Adj Close", "0")
    (tmp_path / "BPCL.csv").write_text("\n".join(lines))
    with pytest.raises(DataError) as err:
        D.load_frames(f"csv:{tmp_path}", ["BPCL"], price_adjustment="dividends")
    assert [p.split(": ", 1)[1] for p in err.value.problems] == [
        "column 'Adj Close', row 7: missing value (evorl never fills gaps: fix or delete the row)",
        "column 'Adj Close', row 11: price must be positive (got 0)",
    ]


def test_a_data_error_keeps_its_problems_when_pickled():
    import pickle

    exc = DataError.listing(["a.csv: column 'Open', row 2: x", "a.csv: column 'Open', row 3: y"])
    again = pickle.loads(pickle.dumps(exc))
    assert (str(again), again.problems, again.count) == (str(exc), exc.problems, 2)
    plain = DataError("a.csv: file not found")
    assert plain.problems == ("a.csv: file not found",) and plain.count == 1


def _clean_rows(draw_cents: list[tuple[int, int, int, int, int, int]]) -> list[tuple[str, float, float, float, float, float]]:
    """(date, open, high, low, close, volume) rows from drawn integers; ascending dates, valid prices."""
    rows, day = [], pd.Timestamp("2020-01-01")
    for gap, o, c, up, down, volume in draw_cents:
        day += pd.Timedelta(days=gap)
        o, c = o / 100, c / 100
        rows.append((day.strftime("%Y-%m-%d"), o, max(o, c) + up / 100, min(o, c) - down / 100, c, float(volume)))
    return rows


_ROW = st.tuples(st.integers(1, 4), st.integers(200, 100_000), st.integers(200, 100_000), st.integers(0, 500),
                 st.integers(1, 100), st.integers(0, 10**7))
# A planted problem: (column, text the problem names, cell value from the row's cells).
_PLANTS = {
    "missing": ("Close", "missing value", lambda cells: ""),
    "not a number": ("Open", "is not a number", lambda cells: "12o.5"),
    "negative": ("Low", "price must be positive", lambda cells: "-1"),
    "volume": ("Volume", "volume must be >= 0", lambda cells: "-5"),
    "high below": ("High", "is below", lambda cells: cells[3]),  # high := low, under the open or close
    "bad date": ("Date", "cannot parse date", lambda cells: "2020-13-45"),
}


@settings(max_examples=40, deadline=None)
@given(rows=st.lists(_ROW, min_size=2, max_size=40))
def test_a_clean_file_validates_to_exactly_its_numbers(rows):
    clean = _clean_rows(rows)
    text = "Date,Open,High,Low,Close,Volume\n" + "".join(
        f"{d},{o!r},{h!r},{low!r},{c!r},{v:.0f}\n" for d, o, h, low, c, v in clean)
    frame = D.parse_symbol_csv(text.encode(), "clean.csv")
    expected = pd.DataFrame([r[1:] for r in clean], columns=list(D.OHLCV),
                            index=pd.DatetimeIndex([r[0] for r in clean], name="date").as_unit("ns"))
    pd.testing.assert_frame_equal(frame, expected, check_exact=True, check_freq=False)  # freq: as pandas infers it


@settings(max_examples=40, deadline=None)
@given(data=st.data(), rows=st.lists(_ROW, min_size=2, max_size=60))
def test_every_planted_problem_is_reported_at_its_column_and_row(data, rows):
    clean = _clean_rows(rows)
    lines = ["Date,Open,High,Low,Close,Volume"] + [
        f"{d},{o!r},{h!r},{low!r},{c!r},{v:.0f}" for d, o, h, low, c, v in clean]
    # one problem per chosen row; at least one row keeps its date (a column of no dates stops at once)
    where = data.draw(st.lists(st.integers(2, len(clean) + 1), min_size=1, max_size=len(clean) - 1, unique=True))
    planted = {}
    for row in where:
        column, what, value = _PLANTS[data.draw(st.sampled_from(sorted(_PLANTS)))]
        cells = lines[row - 1].split(",")
        cells[lines[0].split(",").index(column)] = value(cells)
        lines[row - 1] = ",".join(cells)
        planted[row] = (column, what)
    with pytest.raises(DataError) as err:
        D.parse_symbol_csv(("\n".join(lines) + "\n").encode(), "planted.csv")
    exc = err.value
    assert exc.count == len(planted)
    assert len(exc.problems) == min(len(planted), D.MAX_LISTED)
    listed = sorted(planted)[:D.MAX_LISTED]  # in row order
    for problem, row in zip(exc.problems, listed, strict=True):
        column, what = planted[row]
        assert problem.startswith(f"planted.csv: column '{column}', row {row}: ") and what in problem
    more = len(planted) - len(exc.problems)
    assert str(exc).splitlines()[-1] == (f"... and {more} more" if more else exc.problems[-1])


def test_zero_volume_is_legitimate(tmp_path):
    lines = YAHOO_CSV.read_text().splitlines()
    _edit(lines, 5, "Volume", "0")
    path = tmp_path / "ZERO.csv"
    path.write_text("\n".join(lines) + "\n")
    assert D.read_symbol_csv(path)["volume"].iloc[3] == 0.0


def test_tiny_float_excursion_of_high_is_tolerated():
    frame = D.read_symbol_csv(YAHOO_CSV).copy()
    frame.iloc[0, frame.columns.get_loc("high")] = max(frame.iloc[0]["open"], frame.iloc[0]["close"]) * (1 - 1e-9)
    D.validate_ohlcv(frame, "tiny")
    frame.iloc[0, frame.columns.get_loc("high")] = max(frame.iloc[0]["open"], frame.iloc[0]["close"]) * (1 - 1e-4)
    with pytest.raises(DataError, match="column 'high', row 2"):
        D.validate_ohlcv(frame, "tiny")


def test_too_short_series_is_rejected_by_build_market():
    window, test_days = 10, 15
    need = window + test_days + D.MIN_TRAIN_STEPS + 1
    frames = {
        "LONG": D.synthetic_ohlcv("LONG", n_days=200),
        "TINY": D.synthetic_ohlcv("TINY", n_days=need - 1),
    }
    with pytest.raises(DataError) as err:
        D.build_market(frames, window, test_days)
    msg = str(err.value)
    assert "TINY" in msg and f"{need - 1} rows present" in msg and f"need at least {need}" in msg
    # exactly enough rows: 20 training transitions
    frames["TINY"] = D.synthetic_ohlcv("TINY", n_days=need)
    market = D.build_market(frames, window, test_days)
    i = market.symbols.index("TINY")
    assert int(market.data.test_start[i]) - 1 - int(market.data.first_index[i]) == D.MIN_TRAIN_STEPS


# --------------------------------------------------------------------------- synthetic data


def _log_returns(frame: pd.DataFrame) -> np.ndarray:
    return np.diff(np.log(frame["close"].to_numpy()))


def test_synthetic_is_deterministic_per_seed_and_symbol():
    a = D.synthetic_ohlcv("BPCL", seed=0)
    pd.testing.assert_frame_equal(a, D.synthetic_ohlcv("BPCL", seed=0))
    b = D.synthetic_ohlcv("BPCL", seed=1)
    c = D.synthetic_ohlcv("TATASTEEL", seed=0)
    assert not np.allclose(a["close"].to_numpy()[:100], b["close"].to_numpy()[:100])
    assert not np.allclose(a["close"].to_numpy()[:100], c["close"].to_numpy()[:100])


def test_synthetic_lengths_differ_by_symbol_and_end_at_the_same_date():
    lengths = {s: len(D.synthetic_ohlcv(s)) for s in ("BPCL", "HDFCLIFE", "TATASTEEL")}
    assert len(set(lengths.values())) == 3
    assert lengths["HDFCLIFE"] < min(lengths["BPCL"], lengths["TATASTEEL"])
    hdfclife = D.synthetic_ohlcv("HDFCLIFE")
    assert hdfclife.index[0] >= pd.Timestamp("2017-11-01")  # listed in November 2017
    for s, n in lengths.items():
        assert 2000 <= n <= D.SYNTHETIC_DAYS or s == "HDFCLIFE"
        assert n >= D.rows_needed(32, 60) + 500
    assert D.synthetic_ohlcv("BPCL").index[-1] == pd.Timestamp(D.SYNTHETIC_END)
    assert D.synthetic_ohlcv("X", n_days=50, start="2020-01-01").index[0] == pd.Timestamp("2020-01-01")


@pytest.mark.parametrize("symbol", ["BPCL", "HDFCLIFE", "TATASTEEL"])
def test_synthetic_is_realistic(symbol):
    frame = D.synthetic_ohlcv(symbol, seed=0)
    o, h, low, c, v = (frame[k].to_numpy() for k in D.OHLCV)
    assert (h >= np.maximum(o, c)).all() and (low <= np.minimum(o, c)).all()
    assert (low > 0).all() and (v > 0).all()
    assert (frame.index.day_of_week < 5).all() and frame.index.is_unique
    r = _log_returns(frame)
    z = (r - r.mean()) / r.std()
    assert (z**4).mean() > 3.5, "fat tails: kurtosis above the normal's 3"
    sq = r**2
    clustering = np.mean([np.corrcoef(sq[:-lag], sq[lag:])[0, 1] for lag in range(1, 6)])
    assert clustering > 0.02, "volatility clustering: squared returns positively autocorrelated"
    gaps = np.log(o[1:] / c[:-1])
    assert (np.abs(gaps) > 1e-4).mean() > 0.5, "opens gap away from the previous close"
    assert 0.08 < r.std() * np.sqrt(252) < 0.6


# --------------------------------------------------------------------------- features


def test_feature_definitions_and_row_zero():
    frame = D.read_symbol_csv(YAHOO_CSV)
    raw = D.raw_features(frame)
    assert raw.shape == (len(frame), len(D.FEATURE_NAMES))
    np.testing.assert_array_equal(raw[0], 0.0)
    o, h, low, c, v = (frame[k].to_numpy() for k in D.OHLCV)
    t = 7
    np.testing.assert_allclose(
        raw[t, :5],
        [np.log(c[t] / c[t - 1]), np.log(o[t] / c[t - 1]), np.log(c[t] / o[t]), np.log(h[t] / c[t]),
         np.log(low[t] / c[t])],
    )
    np.testing.assert_allclose(raw[t, 5], np.log1p(v[t]) - np.log1p(v[:t]).mean())
    t = 23  # more than 20 days of history: only the last 20 count
    np.testing.assert_allclose(raw[t, 5], np.log1p(v[t]) - np.log1p(v[t - 20:t]).mean())


BASE = D.synthetic_ohlcv("PROP", n_days=60, seed=5)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    k=st.integers(min_value=0, max_value=58),
    factors=st.lists(st.floats(min_value=0.5, max_value=2.0), min_size=59, max_size=59),
    volume_factor=st.floats(min_value=0.1, max_value=10.0),
)
def test_features_have_no_look_ahead(k, factors, volume_factor):
    perturbed = BASE.copy()
    later = perturbed.index[k + 1:]
    scale = np.asarray(factors[: len(later)])
    for col in D.PRICES:  # the same factor for a whole row keeps OHLC valid
        perturbed.loc[later, col] = perturbed.loc[later, col].to_numpy() * scale
    perturbed.loc[later, "volume"] = perturbed.loc[later, "volume"].to_numpy() * volume_factor
    perturbed = D.validate_ohlcv(perturbed, "perturbed")
    before, after = D.raw_features(BASE), D.raw_features(perturbed)
    np.testing.assert_array_equal(before[: k + 1], after[: k + 1])


def _two_symbol_frames() -> dict[str, pd.DataFrame]:
    return {"AAA": D.synthetic_ohlcv("AAA", n_days=300, seed=2), "BBB": D.synthetic_ohlcv("BBB", n_days=180, seed=2)}


def test_normalisation_uses_training_range_only():
    window, test_days = 16, 40
    frames = _two_symbol_frames()
    market = D.build_market(frames, window, test_days)
    for i, s in enumerate(market.symbols):
        raw = D.raw_features(frames[s])
        test_start = len(frames[s]) - test_days
        train = raw[1:test_start]
        np.testing.assert_allclose(market.norm_mean[i], train.mean(axis=0))
        np.testing.assert_allclose(market.norm_std[i], train.std(axis=0))

    # Perturbing every test-range price changes test features, never the statistics.
    shocked = {}
    for s, frame in frames.items():
        f = frame.copy()
        test_days_index = f.index[-test_days:]
        for col in D.PRICES:
            f.loc[test_days_index, col] *= np.linspace(0.5, 3.0, test_days)
        f.loc[test_days_index, "volume"] *= 7.0
        shocked[s] = f
    market2 = D.build_market(shocked, window, test_days)
    np.testing.assert_array_equal(market.norm_mean, market2.norm_mean)
    np.testing.assert_array_equal(market.norm_std, market2.norm_std)
    ts = int(market.data.test_start[0])
    assert not np.allclose(market.data.features[0, ts + 1:], market2.data.features[0, ts + 1:])
    np.testing.assert_array_equal(market.data.features[0, :ts], market2.data.features[0, :ts])

    # ...whereas the last training day does move them (the range is not shifted by one)
    moved = {s: f.copy() for s, f in frames.items()}
    last_train = moved["AAA"].index[-test_days - 1]
    moved["AAA"].loc[last_train, list(D.PRICES)] *= 1.5
    market3 = D.build_market(moved, window, test_days)
    assert not np.allclose(market.norm_mean[0], market3.norm_mean[0])


def test_given_norm_is_used_and_features_match_inference_helper():
    window, test_days = 16, 40
    frames = _two_symbol_frames()
    market = D.build_market(frames, window, test_days)
    mean = np.full(len(D.FEATURE_NAMES), 0.01)
    std = np.full(len(D.FEATURE_NAMES), 0.02)
    given_norm = D.build_market(frames, window, test_days, norm=(mean, std))
    np.testing.assert_array_equal(given_norm.norm_mean, np.broadcast_to(mean, (2, len(mean))))
    for i, s in enumerate(market.symbols):
        n = len(frames[s])
        expected = D.features_for_inference(frames[s], market.norm_mean[i], market.norm_std[i], window)
        np.testing.assert_array_equal(np.asarray(market.data.features[i, :n]), expected)
        expected2 = D.features_for_inference(frames[s], mean, std, window)
        np.testing.assert_array_equal(np.asarray(given_norm.data.features[i, :n]), expected2)
        manual = np.clip((D.raw_features(frames[s]) - mean) / std, -10, 10)
        np.testing.assert_allclose(expected2[1:], manual[1:], rtol=1e-6)
    assert np.abs(np.asarray(market.data.features)).max() <= D.FEATURE_CLIP
    with pytest.raises(DataError, match="need at least 17"):
        D.features_for_inference(frames["AAA"].iloc[:16], mean, std, window)


# --------------------------------------------------------------------------- market arrays


def test_padded_market_shapes_lengths_and_split():
    window, test_days = 16, 40
    frames = _two_symbol_frames()
    market = D.build_market(frames, window, test_days)
    data = market.data
    assert isinstance(data, MarketData)  # the one class env/ppo/deploy use
    S, T, F = 2, 300, len(D.FEATURE_NAMES)
    assert market.symbols == ["AAA", "BBB"]
    assert data.open.shape == data.close.shape == (S, T) and data.features.shape == (S, T, F)
    assert str(data.open.dtype) == "float32" and str(data.features.dtype) == "float32"
    assert str(data.length.dtype) == "int32"
    assert data.length.tolist() == [300, 180]
    assert data.first_index.tolist() == [window, window]
    assert data.test_start.tolist() == [300 - test_days, 180 - test_days]
    short = frames["BBB"]
    np.testing.assert_allclose(data.close[1, :180], short["close"].to_numpy(), rtol=1e-6)
    np.testing.assert_array_equal(data.close[1, 180:], np.float32(short["close"].iloc[-1]))
    np.testing.assert_array_equal(data.open[1, 180:], np.float32(short["open"].iloc[-1]))
    np.testing.assert_array_equal(data.features[1, 180:], 0.0)
    np.testing.assert_array_equal(data.features[:, 0], 0.0)
    assert [len(d) for d in market.dates] == [300, 180]
    assert market.dates[1].dtype == np.dtype("datetime64[D]")
    assert market.dates[1][-1] == short.index[-1].to_datetime64().astype("datetime64[D]")
    assert market.norm_mean.shape == market.norm_std.shape == (S, F)
    assert (market.window, market.test_days) == (window, test_days)
    assert market.info["per_symbol"]["BBB"]["source"] == "synthetic" and market.info["synthetic"]


def test_data_hash_is_stable_and_sensitive():
    frames = _two_symbol_frames()
    h1 = D.build_market(frames, 16, 40).data_hash
    assert h1 == D.build_market(_two_symbol_frames(), 16, 40).data_hash == D.hash_frames(frames)
    assert len(h1) == 64
    changed = {s: f.copy() for s, f in frames.items()}
    changed["BBB"].iloc[100, changed["BBB"].columns.get_loc("volume")] += 1
    assert D.hash_frames(changed) != h1
    renamed = {"CCC" if s == "BBB" else s: f for s, f in frames.items()}
    assert D.hash_frames(renamed) != h1


def test_load_market_from_config(tmp_path):
    from evorl_core.config import TrainConfig

    config = TrainConfig(symbols=("BPCL", "HDFCLIFE"), data="synthetic", window=8, test_days=30, seed=3)
    market = D.load_market(config, cache_dir=tmp_path)
    assert market.symbols == ["BPCL", "HDFCLIFE"]
    assert market.info["synthetic"] is True and market.info["source"] == "synthetic"
    assert market.data.test_start.tolist() == [n - 30 for n in market.data.length.tolist()]
    pd.testing.assert_frame_equal(market.frames["BPCL"], D.synthetic_ohlcv("BPCL", seed=3))


# --------------------------------------------------------------------------- sources


def test_yahoo_ticker_rules():
    assert D.yahoo_ticker("BPCL") == "BPCL.NS"
    assert D.yahoo_ticker("M&M") == "M&M.NS"
    assert D.yahoo_ticker("RELIANCE.BO") == "RELIANCE.BO"
    assert D.yahoo_ticker("^NSEI") == "^NSEI"


def test_csv_source_finds_both_file_names(tmp_path):
    (tmp_path / "BPCL.NS.csv").write_text(YAHOO_CSV.read_text())
    (tmp_path / "TATASTEEL.csv").write_text(NSE_CSV.read_text())
    frames, info = D.load_frames(f"csv:{tmp_path}", ["BPCL", "TATASTEEL"])
    pd.testing.assert_frame_equal(frames["BPCL"], frames["TATASTEEL"])
    assert info["source"] == "csv" and info["synthetic"] is False and info["warnings"] == []
    entry = info["per_symbol"]["TATASTEEL"]
    assert entry["path"] == str(tmp_path / "TATASTEEL.csv") and entry["layout"] == "nse"
    assert (entry["rows"], entry["first_date"], entry["last_date"]) == (24, "2024-01-01", "2024-02-01")
    with pytest.raises(DataError, match=r"no file for SBIN \(looked for SBIN\.csv, SBIN\.NS\.csv\)"):
        D.load_frames(f"csv:{tmp_path}", ["SBIN"])
    frames2, info2 = D.load_frames("auto", ["BPCL"], csv_dir=tmp_path)
    assert info2["source"] == "csv"


def test_yahoo_download_writes_cache_then_reuses_it(tmp_path, monkeypatch):
    calls = []

    def download(ticker, start, end):
        calls.append(ticker)
        return recorded_download(ticker, start, end)

    monkeypatch.setattr(Y, "_download", download)
    frames, info = D.load_frames("yahoo", ["BPCL"], cache_dir=tmp_path)
    assert calls == ["BPCL.NS"]
    cache = tmp_path / "BPCL.NS.csv"
    assert cache.is_file()
    assert cache.read_text().splitlines()[0] == "Date,Open,High,Low,Close,Adj Close,Volume"
    assert info["source"] == "yahoo" and info["per_symbol"]["BPCL"]["path"] == str(cache)
    recorded = recorded_download("BPCL.NS", "", None)
    np.testing.assert_array_equal(frames["BPCL"]["close"].to_numpy(), recorded[("Close", "BPCL.NS")].to_numpy())

    monkeypatch.setattr(Y, "_download", lambda *a: pytest.fail("cache should have been used"))
    for source in ("yahoo", "auto"):
        again, info2 = D.load_frames(source, ["BPCL"], cache_dir=tmp_path)
        assert info2["source"] == "cache" and info2["per_symbol"]["BPCL"]["source"] == "cache"
        pd.testing.assert_frame_equal(again["BPCL"], frames["BPCL"])
        assert D.hash_frames(again) == D.hash_frames(frames)


def test_yahoo_retries_then_succeeds(tmp_path, monkeypatch):
    attempts = []

    def flaky(ticker, start, end):
        attempts.append(ticker)
        if len(attempts) < 3:
            raise ConnectionError("reset by peer")
        return recorded_download(ticker, start, end)

    monkeypatch.setattr(Y, "_download", flaky)
    frame, path = D.fetch_yahoo("BPCL", tmp_path)
    assert len(attempts) == 3 and len(frame) == 80 and path.is_file()


def test_yahoo_empty_frame_is_an_error_naming_the_symbol(tmp_path, monkeypatch):
    attempts = []

    def empty(ticker, start, end):
        attempts.append(ticker)
        return pd.DataFrame()

    monkeypatch.setattr(Y, "_download", empty)
    with pytest.raises(DataError) as err:
        D.load_frames("yahoo", ["NOSUCH"], cache_dir=tmp_path)
    assert "NOSUCH" in str(err.value) and "no rows" in str(err.value)
    assert len(attempts) == D.DOWNLOAD_ATTEMPTS
    assert not (tmp_path / "NOSUCH.NS.csv").exists()


def test_auto_falls_back_to_synthetic_with_a_warning_naming_why(tmp_path, monkeypatch):
    def offline(ticker, start, end):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(Y, "_download", offline)
    with pytest.warns(D.DataFallbackWarning) as record:
        frames, info = D.load_frames("auto", ["BPCL"], cache_dir=tmp_path, seed=4)
    message = str(record[0].message)
    assert "BPCL" in message and "SYNTHETIC" in message
    assert str(tmp_path / "BPCL.NS.csv") in message and "Network is unreachable" in message
    assert info["warnings"] == [message]
    assert info["source"] == "synthetic" and info["synthetic"] is True and info["requested"] == "auto"
    assert info["per_symbol"]["BPCL"]["source"] == "synthetic"
    assert "Network is unreachable" in info["per_symbol"]["BPCL"]["reason"]
    pd.testing.assert_frame_equal(frames["BPCL"], D.synthetic_ohlcv("BPCL", seed=4))


def test_auto_mixes_sources_per_symbol_and_respects_allow_download(tmp_path):
    (tmp_path / "BPCL.NS.csv").write_text(YAHOO_CSV.read_text())
    with pytest.warns(D.DataFallbackWarning, match="downloads are disabled") as record:
        frames, info = D.load_frames("auto", ["BPCL", "HDFCLIFE"], cache_dir=tmp_path, allow_download=False)
    assert len(record) == 1 and "HDFCLIFE" in str(record[0].message)
    assert info["source"] == "mixed" and info["synthetic"] is True
    assert info["per_symbol"]["BPCL"]["source"] == "cache"
    assert info["per_symbol"]["HDFCLIFE"]["source"] == "synthetic"
    assert len(frames["BPCL"]) == 24


def test_auto_replaces_an_invalid_cache_file(tmp_path, monkeypatch):
    (tmp_path / "BPCL.NS.csv").write_text("Date,Open\n2024-01-01,1\n")
    monkeypatch.setattr(Y, "_download", recorded_download)
    with warnings.catch_warnings():
        warnings.simplefilter("error", D.DataFallbackWarning)
        frames, info = D.load_frames("auto", ["BPCL"], cache_dir=tmp_path)
    assert info["source"] == "yahoo" and "invalid" in info["warnings"][0]
    assert len(D.read_symbol_csv(tmp_path / "BPCL.NS.csv")) == 80


def test_unknown_source_is_rejected():
    with pytest.raises(DataError, match="unknown data source"):
        D.load_frames("parquet", ["BPCL"])


# --------------------------------------------------------------------------- price adjustment, splits


def test_dividend_adjustment_uses_adj_close_and_is_recorded(tmp_path):
    (tmp_path / "BPCL.csv").write_text(YAHOO_CSV.read_text())
    raw = pd.read_csv(YAHOO_CSV)
    plain, info_plain = D.load_frames(f"csv:{tmp_path}", ["BPCL"])
    frames, info = D.load_frames(f"csv:{tmp_path}", ["BPCL"], price_adjustment="dividends")
    factor = raw["Adj Close"].to_numpy() / raw["Close"].to_numpy()
    adjusted = frames["BPCL"]
    np.testing.assert_allclose(adjusted["close"].to_numpy(), raw["Adj Close"].to_numpy(), rtol=1e-12)
    for col in ("open", "high", "low"):
        np.testing.assert_allclose(adjusted[col].to_numpy(), plain["BPCL"][col].to_numpy() * factor, rtol=1e-12)
    np.testing.assert_array_equal(adjusted["volume"].to_numpy(), plain["BPCL"]["volume"].to_numpy())
    assert info["price_adjustment"] == "dividends" and info["per_symbol"]["BPCL"]["price_adjustment"] == "dividends"
    assert info_plain["price_adjustment"] == "none" and info_plain["per_symbol"]["BPCL"]["price_adjustment"] == "none"
    assert D.hash_frames(frames) != D.hash_frames(plain)


def test_dividends_on_a_csv_without_adj_close_is_an_error(tmp_path):
    (tmp_path / "BPCL.csv").write_text(NSE_CSV.read_text())
    with pytest.raises(DataError, match=r"BPCL\.csv: price adjustment 'dividends' needs an 'Adj Close' column"):
        D.load_frames(f"csv:{tmp_path}", ["BPCL"], price_adjustment="dividends")
    with pytest.raises(DataError, match="price adjustment 'splits'"):
        D.load_frames(f"csv:{tmp_path}", ["BPCL"], price_adjustment="splits")


def test_dividends_without_adj_close_in_the_cache_or_synthetic_is_a_warning(tmp_path):
    lines = YAHOO_CSV.read_text().splitlines()
    keep = [i for i, h in enumerate(lines[0].split(",")) if h != "Adj Close"]
    (tmp_path / "BPCL.NS.csv").write_text("\n".join(",".join(line.split(",")[i] for i in keep) for line in lines))
    frames, info = D.load_frames("yahoo", ["BPCL"], cache_dir=tmp_path, price_adjustment="dividends")
    assert info["per_symbol"]["BPCL"]["price_adjustment"] == "none"
    assert any("BPCL: no 'Adj Close' column" in w and "NOT adjusted for dividends" in w for w in info["warnings"])
    _, info = D.load_frames("synthetic", ["BPCL"], price_adjustment="dividends")
    assert info["warnings"] == ["BPCL: synthetic prices have no dividends; price adjustment 'dividends' does not apply"]


def test_adj_close_gaps_name_their_row(tmp_path):
    lines = YAHOO_CSV.read_text().splitlines()
    _edit(lines, 7, "Adj Close", "")
    (tmp_path / "BPCL.csv").write_text("\n".join(lines))
    with pytest.raises(DataError, match=r"column 'Adj Close', row 7: missing value"):
        D.load_frames(f"csv:{tmp_path}", ["BPCL"], price_adjustment="dividends")
    D.load_frames(f"csv:{tmp_path}", ["BPCL"])  # not read without the adjustment


def test_unadjusted_split_or_bonus_is_a_warning_naming_symbol_and_date(tmp_path):
    lines = YAHOO_CSV.read_text().splitlines()
    header = lines[0].split(",")
    # A 1:10 split left in from row 12 on (close falls by 89.5% that day); a 1:2 bonus (ratio 2/3) at row 20.
    for row in range(len(lines)):
        if row == 0:
            continue
        cells = lines[row].split(",")
        scale = (0.105 if row >= 11 else 1.0) * (2 / 3 if row >= 19 else 1.0)
        if row >= 11:
            for col in ("Open", "High", "Low", "Close", "Adj Close"):
                cells[header.index(col)] = f"{float(cells[header.index(col)]) * scale:.6f}"
        lines[row] = ",".join(cells)
    (tmp_path / "BPCL.csv").write_text("\n".join(lines))
    frames, info = D.load_frames(f"csv:{tmp_path}", ["BPCL"])
    dates = frames["BPCL"].index
    warns = [w for w in info["warnings"] if "unadjusted split or bonus" in w]
    assert len(warns) == 2, info["warnings"]
    assert warns[0].startswith("BPCL: close moved ") and str(dates[10].date()) in warns[0] and "~ 1:10" in warns[0]
    assert str(dates[18].date()) in warns[1] and "~ a 1:2 bonus" in warns[1]
    # ordinary data: no warning
    assert D.load_frames(f"csv:{tmp_path}", ["BPCL"], n_days=5)[1]["warnings"] == []
    assert D.suspicious_moves(D.read_symbol_csv(YAHOO_CSV), "BPCL") == []


def test_load_market_passes_the_price_adjustment(tmp_path):
    from evorl_core.config import TrainConfig

    frame = D.synthetic_ohlcv("BPCL", n_days=200, seed=1)
    out = frame.rename(columns=str.title).rename_axis("Date").reset_index()
    out["Adj Close"] = out["Close"] * np.linspace(0.9, 1.0, len(out))
    out.to_csv(tmp_path / "BPCL.csv", index=False)
    config = TrainConfig(symbols=("BPCL",), data=f"csv:{tmp_path}", window=8, test_days=30,
                         price_adjustment="dividends")
    market = D.load_market(config, cache_dir=tmp_path)
    assert market.info["price_adjustment"] == "dividends"
    np.testing.assert_allclose(market.frames["BPCL"]["close"].to_numpy(), out["Adj Close"].to_numpy(), rtol=1e-12)
