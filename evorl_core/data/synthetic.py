"""Synthetic data: offline, deterministic, realistic enough to exercise the whole pipeline.

`synthetic_ohlcv` draws GARCH(1,1)-like daily bars with fat tails per (seed, symbol);
`synthetic_length` gives each symbol a default history length, as real listings differ.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pandas as pd

from evorl_core.data.validate import DataError, validate_ohlcv

SYNTHETIC_END = "2025-12-31"
SYNTHETIC_DAYS = 2500  # ~10 years of business days, the longest default synthetic history
# Real listing dates, so the synthetic stand-ins of young stocks are as short as the real ones.
_LISTING_DATES = {
    "HDFCLIFE": "2017-11-17",
    "SBILIFE": "2017-10-03",
    "ICICIGI": "2017-09-27",
    "ICICIPRULI": "2016-09-29",
    "HDFCAMC": "2018-08-06",
}


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def synthetic_length(symbol: str, end: str = SYNTHETIC_END) -> int:
    """Default synthetic history length: deterministic per symbol name, like real listings differ.

    Known young listings get their real number of business days; other names get 2000..2500.
    """
    listed = _LISTING_DATES.get(symbol.upper().split(".")[0])
    if listed:
        return min(SYNTHETIC_DAYS, len(pd.bdate_range(listed, end)))
    return SYNTHETIC_DAYS - 100 * (_stable_int(symbol) % 6)


def synthetic_ohlcv(
    symbol: str, n_days: int | None = None, seed: int = 0, start: str | None = None, *,
    end: str = SYNTHETIC_END,
) -> pd.DataFrame:
    """A validated synthetic daily OHLCV frame, deterministic per (seed, symbol).

    Log returns follow a GARCH(1,1) variance (volatility clustering) driven by unit-variance
    Student-t innovations (fat tails) plus a small drift. Each day's return is split into an
    overnight gap (open vs previous close) and an intraday move; high/low extend beyond the
    open-close body; volume rises with the size of the move. Business days: `n_days` of them
    (default `synthetic_length(symbol)`) ending at `end`, or starting at `start` when given.
    """
    n = synthetic_length(symbol, end) if n_days is None else int(n_days)
    if n < 2:
        raise DataError(f"{symbol}: synthetic data needs at least 2 days (got n_days={n_days})")
    if start is not None:
        dates = pd.bdate_range(start=start, periods=n)
    else:
        dates = pd.bdate_range(end=end, periods=n)
    rng = np.random.default_rng(_stable_int(f"{seed}|{symbol}"))

    # Per-symbol character: volatility level, drift, tail weight, clustering, price and volume scale.
    daily_vol = rng.uniform(0.013, 0.024)
    drift = rng.uniform(0.0, 0.16) / 252
    nu = rng.uniform(3.5, 6.0)
    alpha = rng.uniform(0.06, 0.12)
    beta = rng.uniform(0.85, 0.975 - alpha)
    gap_share = rng.uniform(0.15, 0.35)  # fraction of daily variance that arrives overnight
    price0 = math.exp(rng.uniform(math.log(80), math.log(3000)))
    volume0 = math.exp(rng.uniform(math.log(2e5), math.log(2e7)))

    t_scale = math.sqrt((nu - 2) / nu)  # Student-t with unit variance
    z_gap = rng.standard_t(nu, n) * t_scale
    z_day = rng.standard_t(nu, n) * t_scale
    z_range = np.abs(rng.standard_normal((2, n)))
    z_volume = rng.standard_normal(n)

    shock = math.sqrt(gap_share) * z_gap + math.sqrt(1 - gap_share) * z_day  # unit variance
    omega = daily_vol**2 * (1 - alpha - beta)
    var = np.empty(n)
    v = daily_vol**2
    for t in range(n):
        var[t] = v
        v = omega + alpha * v * shock[t] ** 2 + beta * v
    sigma = np.sqrt(var)

    gap = gap_share * (drift - 0.5 * var) + sigma * math.sqrt(gap_share) * z_gap
    intraday = (1 - gap_share) * (drift - 0.5 * var) + sigma * math.sqrt(1 - gap_share) * z_day
    log_close = math.log(price0) + np.cumsum(gap + intraday)
    log_prev = np.concatenate([[math.log(price0)], log_close[:-1]])
    open_, close = np.exp(log_prev + gap), np.exp(log_close)
    wick = 0.5 * sigma * math.sqrt(1 - gap_share)
    high = np.maximum(open_, close) * np.exp(wick * z_range[0])
    low = np.minimum(open_, close) * np.exp(-wick * z_range[1])
    volume = np.maximum(1.0, np.round(volume0 * np.exp(0.3 * z_volume + 0.6 * (np.abs(shock) - 0.8))))

    def tick(x: np.ndarray) -> np.ndarray:  # rounding is monotone, so low <= open,close <= high holds
        return np.maximum(np.round(x, 2), 0.01)

    frame = pd.DataFrame(
        {"open": tick(open_), "high": tick(high), "low": tick(low), "close": tick(close), "volume": volume},
        index=dates,
    )
    frame = validate_ohlcv(frame, f"synthetic {symbol}")
    frame.attrs["source"] = "synthetic"
    return frame



# -- markets with a known answer, for learning tests, calibration and benchmarks ------------------
def _known_answer_frame(close: np.ndarray, open_: np.ndarray, start: str) -> pd.DataFrame:
    dates = pd.bdate_range(start, periods=len(close), name="date")
    return pd.DataFrame({
        "open": open_, "high": np.maximum(open_, close) * 1.001, "low": np.minimum(open_, close) * 0.999,
        "close": close, "volume": np.full(len(close), 1e6),
    }, index=dates)


def planted_signal_frames(symbols, n_days: int = 1500, mu: float = 0.01, noise: float = 0.002,
                          p_stay: float = 0.9, seed: int = 0, start: str = "2012-01-02") -> dict[str, pd.DataFrame]:
    """A two-regime market per symbol: up/down days whose regime persists with probability
    `p_stay`. Day t's intraday return reveals day t's regime and opens equal the previous close,
    so the Bayes-optimal causal long-only rule is "long after an up day, flat after a down day"
    (expected next-day return +(2 p_stay - 1) mu against -(2 p_stay - 1) mu)."""
    frames = {}
    for i, symbol in enumerate(symbols):
        open_, close = planted_prices(n_days, np.random.default_rng(seed + i), mu, noise, p_stay)
        frames[symbol] = _known_answer_frame(close, open_, start)
    return frames


def planted_prices(n_days: int, rng: np.random.Generator, mu: float = 0.01, noise: float = 0.002,
                   p_stay: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """(open, close) of one planted-signal symbol (see planted_signal_frames), drawn from `rng`."""
    regime = np.empty(n_days)
    regime[0] = 1.0
    flips = rng.random(n_days) > p_stay
    for t in range(1, n_days):
        regime[t] = -regime[t - 1] if flips[t] else regime[t - 1]
    intraday = np.exp(regime * mu + noise * rng.standard_normal(n_days))
    close = 100.0 * np.cumprod(intraday)
    open_ = np.concatenate([[100.0], close[:-1]])  # no overnight gap: the decision earns the regime
    return open_, close


def random_walk_frames(symbols, n_days: int = 1500, sigma: float = 0.015, seed: int = 0,
                       start: str = "2012-01-02") -> dict[str, pd.DataFrame]:
    """Log-normal random walks with small overnight gaps: nothing to learn."""
    frames = {}
    for i, symbol in enumerate(symbols):
        rng = np.random.default_rng(1000 + seed + i)
        close = 100.0 * np.exp(np.cumsum(sigma * rng.standard_normal(n_days)))
        gap = np.exp(0.003 * rng.standard_normal(n_days))
        open_ = np.concatenate([[100.0], close[:-1]]) * gap
        open_ = np.clip(open_, np.minimum(open_, close), None)
        frames[symbol] = _known_answer_frame(close, open_, start)
    return frames


# -- a synthetic universe with a factor structure (portfolio mode, offline) -----------------------
def universe_symbols(size: int) -> list[str]:
    """The names of the synthetic universe of `size` assets: SYN001, SYN002, ..."""
    if size < 1:
        raise DataError(f"universe size: must be at least 1 (got {size})")
    return [f"SYN{i + 1:03d}" for i in range(size)]


def _listing_span(symbol: str, n: int) -> tuple[int, int]:
    """Rows [first, last] of a symbol inside the universe's calendar of n days: about 1 in 7 names
    lists late (up to 60% into the history) and about 1 in 20 ends early (delisted), as in a real
    universe; deterministic per name."""
    h = _stable_int(f"listing|{symbol}")
    first = int((h % 1000) / 1000 * 0.6 * n) if h % 7 == 3 else 0
    last = n - 1 - int(((h >> 12) % 1000) / 1000 * 0.25 * n) if (h >> 24) % 20 == 7 else n - 1
    return first, max(last, min(n - 1, first + 1))


def factor_universe_frames(symbols, n_days: int = SYNTHETIC_DAYS, seed: int = 0, *, end: str = SYNTHETIC_END,
                           ragged: bool = True) -> dict[str, pd.DataFrame]:
    """Validated daily frames of a universe driven by one market factor plus idiosyncratic noise.

    Day t's log return of asset i is beta_i * m_t + e_it + drift_i: the market factor m (Student-t,
    GARCH(1,1) volatility around 1% a day) is shared by every asset, betas lie in 0.6 .. 1.4 and
    idiosyncratic volatilities in 0.9% .. 2.2% a day, which gives pairwise correlations of about
    0.1 .. 0.3 and annual volatilities of about 23% .. 40%, like large Indian stocks. With `ragged`,
    some names list late or stop early (`_listing_span`), so the calendar is not rectangular.
    Deterministic per (seed, symbol); the market factor depends on the seed only.
    """
    symbols = list(symbols)
    n = int(n_days)
    if n < 2:
        raise DataError(f"synthetic universe needs at least 2 days (got n_days={n_days})")
    dates = pd.bdate_range(end=end, periods=n)
    market_rng = np.random.default_rng(_stable_int(f"{seed}|market-factor"))
    nu_m = 5.0
    z_m = market_rng.standard_t(nu_m, n) * math.sqrt((nu_m - 2) / nu_m)
    var_m, v = np.empty(n), 0.01**2
    omega, alpha, beta_g = 0.01**2 * (1 - 0.08 - 0.9), 0.08, 0.9
    for t in range(n):
        var_m[t] = v
        v = omega + alpha * v * z_m[t] ** 2 + beta_g * v
    market = np.sqrt(var_m) * z_m
    frames: dict[str, pd.DataFrame] = {}
    for symbol in symbols:
        rng = np.random.default_rng(_stable_int(f"{seed}|universe|{symbol}"))
        beta = rng.uniform(0.6, 1.4)
        idio_vol = rng.uniform(0.009, 0.022)
        drift = rng.uniform(-0.02, 0.14) / 252
        nu = rng.uniform(3.5, 6.0)
        gap_share = rng.uniform(0.15, 0.35)
        price0 = math.exp(rng.uniform(math.log(80), math.log(3000)))
        volume0 = math.exp(rng.uniform(math.log(2e5), math.log(2e7)))
        idio = rng.standard_t(nu, n) * math.sqrt((nu - 2) / nu) * idio_vol
        total = beta * market + idio
        var = beta**2 * var_m + idio_vol**2
        log_ret = drift - 0.5 * var + total
        split = rng.standard_normal(n) * np.sqrt(var * gap_share * (1 - gap_share))
        gap = gap_share * log_ret + split
        log_close = math.log(price0) + np.cumsum(log_ret)
        log_prev = np.concatenate([[math.log(price0)], log_close[:-1]])
        open_, close = np.exp(log_prev + gap), np.exp(log_close)
        wick = 0.5 * np.sqrt(var * (1 - gap_share))
        z_range = np.abs(rng.standard_normal((2, n)))
        high = np.maximum(open_, close) * np.exp(wick * z_range[0])
        low = np.minimum(open_, close) * np.exp(-wick * z_range[1])
        volume = np.maximum(1.0, np.round(volume0 * np.exp(0.3 * rng.standard_normal(n)
                                                           + 0.6 * (np.abs(total) / np.sqrt(var) - 0.8))))
        first, last = _listing_span(symbol, n) if ragged else (0, n - 1)
        rows = slice(first, last + 1)
        frame = pd.DataFrame({
            "open": np.maximum(np.round(open_[rows], 2), 0.01), "high": np.maximum(np.round(high[rows], 2), 0.01),
            "low": np.maximum(np.round(low[rows], 2), 0.01), "close": np.maximum(np.round(close[rows], 2), 0.01),
            "volume": volume[rows],
        }, index=dates[rows])
        frame = validate_ohlcv(frame, f"synthetic {symbol}")
        frame.attrs["source"] = "synthetic"
        frames[symbol] = frame
    return frames


def planted_universe_frames(n_assets: int = 20, n_days: int = 1500, tilt: float = 0.004, seed: int = 0,
                            start: str = "2012-01-02") -> dict[str, pd.DataFrame]:
    """A universe with a planted cross-sectional signal: each asset's intraday return of day t+1 is
    tilted by +tilt or -tilt according to the sign of its own intraday return of day t (visible at
    the close of t as the `intraday_return` feature), on top of a common market factor and
    idiosyncratic noise. Opens equal the previous close, so the allocator that holds the assets
    with yesterday's positive intraday move earns the tilt; 1/N earns nothing from it."""
    rng = np.random.default_rng(_stable_int(f"{seed}|planted-universe"))
    market = 0.008 * rng.standard_normal(n_days)
    frames = {}
    for symbol in universe_symbols(n_assets):
        noise = 0.012 * rng.standard_normal(n_days)
        r = np.empty(n_days)
        r[0] = market[0] + noise[0]
        for t in range(1, n_days):
            r[t] = market[t] + noise[t] + tilt * np.sign(r[t - 1])
        close = 100.0 * np.exp(np.cumsum(r))
        open_ = np.concatenate([[100.0], close[:-1]])
        frames[symbol] = _known_answer_frame(close, open_, start)
    return frames
