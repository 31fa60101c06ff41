"""The feature registry: causality of every feature, agreement with the `ta` package, `default`
bit-for-bit the legacy six, spec parsing and validation, and a technical-set run end to end."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from market_csv import write_csv_dir

from evorl_core.bench.harness import run_suite
from evorl_core.bench.report import format_table
from evorl_core.cli import main
from evorl_core.config import ConfigError, TrainConfig, make_config
from evorl_core.data import build_market, synthetic_ohlcv
from evorl_core.data import feature_registry as registry
from evorl_core.data.features import (
    FEATURE_NAMES,
    canonical_features,
    feature_names,
    features_for_inference,
    normalisation_stats,
    num_features,
    raw_features,
)
from evorl_core.data.panel import build_panel

ta = pytest.importorskip("ta")

# every registered feature at its default parameters and at a small one
CASES = [(name, f.defaults) for name, f in registry.FEATURES.items()] + [
    (name, tuple(2 for _ in f.params)) for name, f in registry.FEATURES.items() if f.params and name != "macd"
] + [("macd", (3, 5, 2))]


def random_frame(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """A valid OHLCV frame: positive prices, high >= open, close >= low, some flat volume runs."""
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    open_ = close * np.exp(rng.normal(0, 0.01, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.01, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.01, n)))
    volume = np.round(rng.lognormal(12, 1, n))
    volume[rng.random(n) < 0.1] = 0.0
    index = pd.bdate_range("2020-01-01", periods=n, name="date")
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index)


def ohlcv(frame: pd.DataFrame) -> tuple[np.ndarray, ...]:
    return tuple(frame[c].to_numpy(np.float64) for c in ("open", "high", "low", "close", "volume"))


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 90), case=st.sampled_from(CASES), data=st.data())
def test_every_feature_is_causal(seed, n, case, data):
    """Changing any rows after t (to other valid bars) never changes row t or earlier."""
    t = data.draw(st.integers(0, n - 1))
    rng = np.random.default_rng(seed)
    frame = random_frame(rng, n)
    other = random_frame(rng, n)
    changed = frame.copy()
    changed.iloc[t + 1:] = other.iloc[t + 1:].to_numpy()
    name, args = case
    before = registry.compute(name, args, ohlcv(frame))
    after = registry.compute(name, args, ohlcv(changed))
    assert before.shape == (n, len(registry.FEATURES[name].columns(args)))
    np.testing.assert_array_equal(before[: t + 1], after[: t + 1])  # NaN (warm-up) equal to NaN


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}{c[1]}")
def test_every_feature_reads_the_rows_it_is_given(case):
    """The causality test is not vacuous: changing rows after t does move row t+1 on."""
    rng = np.random.default_rng(11)
    frame, other = random_frame(rng, 90), random_frame(rng, 90)
    changed = frame.copy()
    changed.iloc[60:] = other.iloc[60:].to_numpy()
    before, after = (registry.compute(*case, ohlcv(f)) for f in (frame, changed))
    assert np.isfinite(before[60:]).all() and (before[60:] != after[60:]).any(axis=0).all()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(40, 120), data=st.data())
def test_the_normalised_technical_set_is_causal_and_never_nan(seed, n, data):
    t = data.draw(st.integers(0, n - 1))
    rng = np.random.default_rng(seed)
    frame, other = random_frame(rng, n), random_frame(rng, n)
    changed = frame.copy()
    changed.iloc[t + 1:] = other.iloc[t + 1:].to_numpy()
    mean, std = normalisation_stats(raw_features(frame, "technical"), n // 2)
    a = features_for_inference(frame, mean, std, 1, features="technical")
    b = features_for_inference(changed, mean, std, 1, features="technical")
    assert a.shape == (n, num_features("technical")) and np.isfinite(a).all() and np.isfinite(b).all()
    np.testing.assert_array_equal(a[: t + 1], b[: t + 1])


FRAME = random_frame(np.random.default_rng(7), 400)
OP, HI, LO, CL, VO = ARRAYS = ohlcv(FRAME)


def agree(ours: np.ndarray, theirs: pd.Series, first_valid: int) -> None:
    theirs = theirs.to_numpy(np.float64)
    assert np.isnan(ours[:first_valid]).all() and not np.isnan(ours[first_valid:]).any()
    np.testing.assert_allclose(ours[first_valid:], theirs[first_valid:], rtol=0, atol=1e-9)


def test_rsi_matches_ta_once_the_start_has_decayed():
    """ta seeds Wilder's recursion with a zero change on row 0 (its diff there is NaN, which its
    `where` turns into 0) and reports from row k-1; ours starts at the first real change (row 1)
    and reports from row k. The two differ by a term that decays as (1 - 1/k)^t (docs/features.md)."""
    frame = random_frame(np.random.default_rng(8), 1500)
    for k in (2, 14):
        ours = registry.compute("rsi", (k,), ohlcv(frame))[:, 0]
        theirs = ta.momentum.RSIIndicator(frame.close, k).rsi().to_numpy()
        assert np.isnan(ours[:k]).all() and not np.isnan(ours[k:]).any()
        late = 60 * k
        np.testing.assert_allclose(ours[late:], theirs[late:], rtol=0, atol=1e-9)
        assert np.abs(ours[k:late] - theirs[k:late]).max() > 1e-6  # the documented difference is real


def test_macd_matches_ta():
    ours = registry.compute("macd", (12, 26, 9), ARRAYS)
    ref = ta.trend.MACD(FRAME.close, window_slow=26, window_fast=12, window_sign=9)
    agree(ours[:, 0], ref.macd(), 25)
    agree(ours[:, 1], ref.macd_signal(), 33)
    agree(ours[:, 2], ref.macd_diff(), 33)


def test_atr_matches_ta_divided_by_close():
    for k in (3, 14):
        ref = ta.volatility.AverageTrueRange(FRAME.high, FRAME.low, FRAME.close, k).average_true_range() / FRAME.close
        agree(registry.compute("atr", (k,), ARRAYS)[:, 0], ref, k - 1)  # ta writes 0 before k-1


def test_bollinger_percent_b_matches_ta():
    ref = ta.volatility.BollingerBands(FRAME.close, window=20, window_dev=2).bollinger_pband()
    agree(registry.compute("bbp", (20,), ARRAYS)[:, 0], ref, 19)


def test_simple_features_match_their_formulas():
    get = lambda name, *a: registry.compute(name, a, ARRAYS)[:, 0]  # noqa: E731
    r1 = np.log(CL[1:] / CL[:-1])
    np.testing.assert_allclose(get("ret", 5)[5:], np.log(CL[5:] / CL[:-5]), rtol=0, atol=1e-12)
    np.testing.assert_allclose(get("vol", 10)[10:], pd.Series(r1).rolling(10).std(ddof=0).to_numpy()[9:], atol=1e-12)
    np.testing.assert_allclose(get("dhigh", 20)[19:], np.log(CL / FRAME.high.rolling(20).max()).to_numpy()[19:], atol=1e-12)
    np.testing.assert_allclose(get("dlow", 20)[19:], np.log(CL / FRAME.low.rolling(20).min()).to_numpy()[19:], atol=1e-12)
    x = np.log1p(FRAME.volume)
    z = ((x - x.rolling(20).mean()) / x.rolling(20).std(ddof=0)).to_numpy()
    np.testing.assert_allclose(get("volz", 20)[19:], z[19:], atol=1e-9)
    np.testing.assert_allclose(get("gap")[1:], np.log(OP[1:] / CL[:-1]), rtol=0, atol=1e-12)
    assert (get("dhigh", 20)[19:] <= 0).all() and (get("dlow", 20)[19:] >= 0).all()


def legacy_raw_features(df: pd.DataFrame) -> np.ndarray:
    """The six features as features.py computed them before the registry (a verbatim copy)."""
    o, h, low, c, v = (df[col].to_numpy(dtype=np.float64) for col in ("open", "high", "low", "close", "volume"))
    n = len(c)
    out = np.zeros((n, 6))
    if n < 2:
        return out
    prev_close = c[:-1]
    out[1:, 0] = np.log(c[1:] / prev_close)
    out[1:, 1] = np.log(o[1:] / prev_close)
    out[1:, 2] = np.log(c[1:] / o[1:])
    out[1:, 3] = np.log(h[1:] / c[1:])
    out[1:, 4] = np.log(low[1:] / c[1:])
    log_volume = np.log1p(v)
    prefix = np.concatenate([[0.0], np.cumsum(log_volume)])
    t = np.arange(1, n)
    lo = np.maximum(0, t - 20)
    out[1:, 5] = log_volume[1:] - (prefix[t] - prefix[lo]) / (t - lo)
    return out


def test_default_is_bit_for_bit_the_legacy_six():
    frames = {s: synthetic_ohlcv(s, n_days=300, seed=3) for s in ("AAA", "BBB")}
    for frame in frames.values():
        legacy = legacy_raw_features(frame)
        assert raw_features(frame).tobytes() == legacy.tobytes() == raw_features(frame, "default").tobytes()
        mean, std = normalisation_stats(legacy, 200)
        old_mean, old_std = legacy[1:200].mean(axis=0), np.maximum(legacy[1:200].std(axis=0), 1e-8)
        assert mean.tobytes() == old_mean.tobytes() and std.tobytes() == old_std.tobytes()
    assert feature_names(None) == feature_names(make_config("quick")) == FEATURE_NAMES
    a = build_market(frames, 8, 30)
    b = build_market(frames, 8, 30, feature_set="default")
    assert np.asarray(a.data.features).tobytes() == np.asarray(b.data.features).tobytes()
    assert np.asarray(a.data.features).shape[-1] == 6


def test_markets_and_panels_follow_the_feature_set():
    frames = {s: synthetic_ohlcv(s, n_days=300, seed=4) for s in ("AAA", "BBB")}
    spec = "default,rsi(14),macd"
    market = build_market(frames, 8, 30, feature_set=spec)
    assert np.asarray(market.data.features).shape == (2, 300, 10) and market.norm_mean.shape == (2, 10)
    assert np.isfinite(np.asarray(market.data.features)).all()
    # the first six columns are the default set's own, the stats over training rows only
    plain = build_market(frames, 8, 30)
    np.testing.assert_array_equal(np.asarray(market.data.features)[..., :6], np.asarray(plain.data.features))
    raw = raw_features(market.frames["AAA"], spec)
    train_end = int(market.data.train_end[0])
    rsi = raw[1:train_end, 6]
    assert market.norm_mean[0, 6] == pytest.approx(np.nanmean(rsi), rel=1e-12)
    panel = build_panel(frames, 8, 30, feature_set="technical")
    assert np.asarray(panel.data.features).shape[-1] == 14 and np.isfinite(np.asarray(panel.data.features)).all()


def test_spec_parsing_and_validation():
    assert canonical_features(" RSI , macd,ret(5)") == "rsi(14),macd(12,26,9),ret(5)"
    assert feature_names("technical")[:5] == ("ret(1)", "ret(5)", "ret(20)", "vol(20)", "rsi(14)")
    assert feature_names("macd(3,5,2)") == ("macd(3,5,2).line", "macd(3,5,2).signal", "macd(3,5,2).hist")
    assert num_features("default,gap") == 7
    for bad, why in [("nope", "unknown feature 'nope'"), ("rsi(0)", "positive"), ("macd(26,12,9)", "fast must be below"),
                     ("rsi(x)", "integers"), ("rsi(3,4)", "takes 1"), ("ret,ret(1)", "named twice"), ("", "give")]:
        with pytest.raises(ConfigError, match=why) as err:
            make_config("quick", features=bad)
        assert str(err.value).startswith("features:")
        if bad and "twice" not in why:
            assert "known features: ret(k), vol(k), rsi(k)" in str(err.value)
    assert TrainConfig.from_dict({**make_config("quick").to_dict(), "features": "technical"}).features == "technical"


def test_cli_lists_features_and_names_the_flag(capsys, tmp_path):
    assert main(["features"]) == 0
    out = capsys.readouterr().out
    for name, f in registry.FEATURES.items():
        assert f"  {name}" in out and f.description in out
    assert "technical    ret(1),ret(5)" in out and "default" in out
    assert main(["train", "--preset", "quick", "--features", "rsi(-1)", "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "features:" in err and "(--features)" in err and "known features" in err


TINY = ["--preset", "quick", "--num-envs", "8", "--num-steps", "16", "--minibatch-size", "32", "--epochs", "1",
        "--hidden", "16", "--window", "8", "--timesteps", "512", "--test-days", "30", "--val-days", "0",
        "--seed", "1", "--quiet"]


def test_a_technical_run_trains_backtests_deploys_and_signals(tmp_path, capsys):
    frames = {s: synthetic_ohlcv(s, n_days=300, seed=5) for s in ("AAA", "BBB")}
    write_csv_dir(tmp_path / "csv", frames)
    data, runs, models = f"csv:{tmp_path / 'csv'}", str(tmp_path / "runs"), str(tmp_path / "models")
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["train", "--symbols", "AAA", "BBB", "--data", data, *TINY, "--features", "Technical",
                     "--runs-dir", runs, "--run-id", "tech", "--deploy", "--model-name", "tech",
                     "--models-dir", models]) == 0
    capsys.readouterr()
    config = json.loads((tmp_path / "runs" / "tech" / "config.json").read_text())
    assert config["features"] == "technical" and config["feature_names"] == list(feature_names("technical"))
    assert len(config["normalization"]["AAA"]["mean"]) == 14
    assert main(["backtest", "--run", str(tmp_path / "runs" / "tech"), "--out", str(tmp_path / "bt")]) == 0
    assert (tmp_path / "bt" / "metrics.json").exists()
    capsys.readouterr()
    assert main(["signal", "--model", "tech", "--models-dir", models, "--data", data, "--json",
                 "--features", "technical"]) == 0
    signals = json.loads(capsys.readouterr().out)["signals"]
    assert {s["symbol"] for s in signals} == {"AAA", "BBB"}

    # a caller asking for another set is refused, naming both
    assert main(["signal", "--model", "tech", "--models-dir", models, "--data", data, "--features", "default"]) == 2
    err = capsys.readouterr().err
    assert "'technical'" in err and "'default'" in err and "Traceback" not in err
    # a bundle whose normalisation does not fit its set is refused
    meta_path = tmp_path / "models" / "tech" / "bundle.json"
    meta = json.loads(meta_path.read_text())
    meta["normalization"]["AAA"]["mean"] = meta["normalization"]["AAA"]["mean"][:6]
    meta_path.write_text(json.dumps(meta))
    assert main(["signal", "--model", "tech", "--models-dir", models, "--data", data, "--force"]) == 2
    assert "does not have 14 values" in capsys.readouterr().err
    # a bundle recording another set than its feature names say is refused
    meta = json.loads(meta_path.read_text())
    meta["normalization"]["AAA"]["mean"] = [0.0] * 14
    meta["config"]["features"] = "default"
    meta_path.write_text(json.dumps(meta))
    assert main(["signal", "--model", "tech", "--models-dir", models, "--data", data, "--force"]) == 2
    assert "not the ones inference builds" in capsys.readouterr().err


def test_the_features_bench_section_times_the_technical_set():
    result = run_suite(tiny=True, only=["features"], repeats=2, log=lambda *a: None)
    feats = result["features"]
    assert (feats["set"], feats["features"], feats["symbols"], feats["days"]) == ("technical", 14, 3, 300)
    assert feats["seconds"]["n"] == 2 and 0 < feats["seconds"]["median"] and feats["default_seconds"]["median"] > 0
    assert feats["symbol_days_per_s"] == pytest.approx(900 / feats["seconds"]["median"])
    assert "features: technical (14 features) for 3 symbols x 300 days" in format_table(result)
    # the 500 x 5,000 target is judged only on the full size
    assert not any(t["name"].startswith("technical features") and t["value"] is not None
                   for t in result["derived"]["targets"])
