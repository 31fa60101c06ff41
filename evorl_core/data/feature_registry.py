"""The feature registry: every feature declared once (name, parameters, description, one causal
NumPy function over the OHLCV arrays), the named feature sets, and the `--features` spec parser.

A feature function takes one symbol's `Bars` (float64 open, high, low, close, volume, and the
logarithms features share) plus its integer parameters and returns [T] (or [T, m] for a feature with m outputs) float64 values where
row t uses rows <= t only. Rows without enough history are NaN here; `features.py` leaves them
out of the normalisation statistics and sets them to 0 after normalisation (the training mean),
so no NaN ever reaches an observation. docs/features.md gives each formula and its warm-up.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

from evorl_core.config import ConfigError, register_features_check

LEGACY_SET = "default"  # the six features of features.py, built by its own code path (bit-for-bit)


@dataclass(frozen=True)
class Feature:
    name: str
    params: tuple[str, ...]  # parameter names, all positive integers
    defaults: tuple[int, ...]
    description: str
    fn: Callable[..., np.ndarray]
    outputs: tuple[str, ...] = ()  # column suffixes of a feature with several outputs
    check: Callable[..., str | None] = lambda *p: None  # a message when parameters do not fit

    def columns(self, args: tuple[int, ...]) -> tuple[str, ...]:
        base = f"{self.name}({','.join(map(str, args))})" if self.params else self.name
        return tuple(f"{base}.{o}" for o in self.outputs) if self.outputs else (base,)


# ---------------------------------------------------------------------------------------------
# building blocks: causal, vectorised, NaN where history is short
def _shift(x: np.ndarray, k: int) -> np.ndarray:
    out = np.full_like(x, np.nan)
    if k < len(x):
        out[k:] = x[: len(x) - k]
    return out


def _window_terms(x: np.ndarray, k: int):
    """The k aligned slices x[t-i] (i = 0 .. k-1) over rows t = k-1 .. T-1: k contiguous vector
    operations per rolling statistic, much faster than a strided window view at our k."""
    n = len(x)
    return (x[k - 1 - i: n - i] for i in range(k))


def _rolling(x: np.ndarray, k: int, kind: str):
    """mean | std (ddof 0) | max | min over rows t-k+1 .. t (NaN for t < k-1); "mean_std" gives both."""
    out = np.full_like(x, np.nan)
    if k > len(x):
        return (out, out.copy()) if kind == "mean_std" else out
    terms = _window_terms(x, k)
    acc = next(terms).copy()
    if kind in ("max", "min"):
        combine = np.maximum if kind == "max" else np.minimum
        for term in terms:
            combine(acc, term, out=acc)
        out[k - 1:] = acc
        return out
    for term in terms:
        acc += term
    mean = acc / k
    if kind == "mean":
        out[k - 1:] = mean
        return out
    squares, dev = np.zeros_like(mean), np.empty_like(mean)
    for term in _window_terms(x, k):  # two passes: no cancellation between E[x^2] and E[x]^2
        np.subtract(term, mean, out=dev)
        dev *= dev
        squares += dev
    out[k - 1:] = np.sqrt(squares / k)
    if kind == "mean_std":
        means = np.full_like(x, np.nan)
        means[k - 1:] = mean
        return means, out
    return out


def _ewm(x: np.ndarray, alpha: float, start: int, seed: float | None = None) -> np.ndarray:
    """y_t = (1 - alpha) y_{t-1} + alpha x_t from row `start` on, y_start = seed (default x_start),
    the recursion of pandas' ewm(adjust=False); NaN before `start`."""
    out = np.full_like(x, np.nan)
    if start >= len(x):
        return out
    y0 = x[start] if seed is None else seed
    out[start] = y0
    if start + 1 < len(x):
        out[start + 1:], _ = lfilter([alpha], [1.0, alpha - 1.0], x[start + 1:], zi=[(1.0 - alpha) * y0])
    return out


class Bars:
    """One symbol's OHLCV float64 arrays, with the logarithms several features share computed once."""

    def __init__(self, open_, high, low, close, volume):
        self.open, self.high, self.low, self.close, self.volume = open_, high, low, close, volume

    @functools.cached_property
    def log_close(self) -> np.ndarray:
        return np.log(self.close)

    @functools.cached_property
    def log_high(self) -> np.ndarray:
        return np.log(self.high)

    @functools.cached_property
    def log_low(self) -> np.ndarray:
        return np.log(self.low)

    @functools.cached_property
    def log_volume(self) -> np.ndarray:
        return np.log1p(self.volume)

    def diff_log_close(self, k: int) -> np.ndarray:
        """log(close_t / close_{t-k}) as a difference of logs; NaN for t < k."""
        out = np.full_like(self.close, np.nan)
        if k < len(out):
            out[k:] = self.log_close[k:] - self.log_close[:-k]
        return out


# ---------------------------------------------------------------------------------------------
# the features
def _ret(b: Bars, k):
    return b.diff_log_close(k)


def _vol(b: Bars, k):
    out = np.full_like(b.close, np.nan)
    out[1:] = _rolling(b.diff_log_close(1)[1:], k, "std")
    return out


def _rsi(b: Bars, k):
    diff = np.diff(b.close)
    up, down = np.where(diff > 0, diff, 0.0), np.where(diff < 0, -diff, 0.0)
    out = np.full_like(b.close, np.nan)
    if len(out) > k:
        avg_up, avg_down = _ewm(up, 1.0 / k, 0), _ewm(down, 1.0 / k, 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            rsi = np.where(avg_down == 0, 100.0, 100.0 - 100.0 / (1.0 + avg_up / avg_down))
        out[1:] = rsi
        out[:k] = np.nan
    return out


def _ema(x: np.ndarray, span: int, start: int = 0) -> np.ndarray:
    out = _ewm(x, 2.0 / (span + 1.0), start)
    out[: start + span - 1] = np.nan
    return out


def _macd(b: Bars, fast, slow, signal):
    line = _ema(b.close, fast) - _ema(b.close, slow)
    sig = _ema(line, signal, start=min(slow - 1, len(line)))
    return np.stack([line, sig, line - sig], axis=1)


def _atr(b: Bars, k):
    h, lo, c = b.high, b.low, b.close
    prev = np.concatenate([[np.nan], c[:-1]])
    tr = np.fmax(h - lo, np.fmax(np.abs(h - prev), np.abs(lo - prev)))  # row 0: high - low
    out = np.full_like(c, np.nan)
    if len(c) >= k:
        out = _ewm(tr, 1.0 / k, k - 1, seed=float(tr[:k].mean()))
    return out / c


def _bbp(b: Bars, k):
    mean, std = _rolling(b.close, k, "mean_std")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(std > 0, (b.close - (mean - 2 * std)) / (4 * std), np.nan)


def _dhigh(b: Bars, k):
    return b.log_close - _rolling(b.log_high, k, "max")  # log is increasing: log of the max = max of logs


def _dlow(b: Bars, k):
    return b.log_close - _rolling(b.log_low, k, "min")


def _volz(b: Bars, k):
    x = b.log_volume
    mean, std = _rolling(x, k, "mean_std")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(std > 0, (x - mean) / std, np.where(np.isnan(std), np.nan, 0.0))


def _gap(b: Bars):
    out = np.full_like(b.close, np.nan)
    out[1:] = np.log(b.open[1:]) - b.log_close[:-1]
    return out


def _range(b: Bars):
    return b.log_high - b.log_low


def _positive(*p):
    return None if all(x >= 1 for x in p) else "parameters must be positive integers"


def _at_least_two(k):
    return None if k >= 2 else "k must be at least 2"


def _fast_below_slow(fast, slow, signal):
    return _positive(fast, slow, signal) or (None if fast < slow else "fast must be below slow")


FEATURES: dict[str, Feature] = {f.name: f for f in (
    Feature("ret", ("k",), (1,), "log return over k days: log(close_t / close_{t-k})", _ret, check=_positive),
    Feature("vol", ("k",), (20,), "realised volatility: std (ddof 0) of the last k one-day log returns",
            _vol, check=_at_least_two),
    Feature("rsi", ("k",), (14,), "relative strength index with Wilder smoothing (alpha 1/k), 0..100",
            _rsi, check=_positive),
    Feature("macd", ("fast", "slow", "signal"), (12, 26, 9),
            "MACD: EMA(fast) - EMA(slow) of close, its EMA(signal), and their difference",
            _macd, outputs=("line", "signal", "hist"), check=_fast_below_slow),
    Feature("atr", ("k",), (14,), "average true range (Wilder, seeded by the mean of the first k) / close",
            _atr, check=_positive),
    Feature("bbp", ("k",), (20,), "Bollinger %b: (close - lower) / (upper - lower), bands mean +- 2 std over k",
            _bbp, check=_at_least_two),
    Feature("dhigh", ("k",), (20,), "log(close_t / highest high of the last k days), <= 0", _dhigh, check=_positive),
    Feature("dlow", ("k",), (20,), "log(close_t / lowest low of the last k days), >= 0", _dlow, check=_positive),
    Feature("volz", ("k",), (20,), "z-score of log1p(volume_t) over the last k days (0 when flat)",
            _volz, check=_at_least_two),
    Feature("gap", (), (), "overnight gap: log(open_t / close_{t-1})", _gap),
    Feature("range", (), (), "daily range: log(high_t / low_t)", _range),
)}

# Named sets. `default` is features.py's six (today's runs); `technical` a broad technical set.
FEATURE_SETS_SPEC: dict[str, str] = {
    LEGACY_SET: LEGACY_SET,
    "technical": "ret(1),ret(5),ret(20),vol(20),rsi(14),macd(12,26,9),atr(14),bbp(20),dhigh(20),dlow(20),"
                 "volz(20),gap",
}

_TOKEN = re.compile(r"^([a-z_][a-z0-9_]*)(?:\(([^()]*)\))?$")


def _split(spec: str) -> list[str]:
    tokens, depth, cur = [], 0, ""
    for ch in spec.replace(" ", ""):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            tokens.append(cur)
            cur = ""
        else:
            cur += ch
    tokens.append(cur)
    return tokens


def _known() -> str:
    return (f"known features: {', '.join(f.name + ('(' + ','.join(f.params) + ')' if f.params else '') for f in FEATURES.values())}"
            f"; sets: {', '.join(FEATURE_SETS_SPEC)}")


@functools.lru_cache(maxsize=256)  # specs are few; raw_features asks once per symbol
def parse(spec: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """The spec as (feature or set name, parameters) items in order; ConfigError naming
    `features` and listing the known features for anything unknown or ill-formed."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"features: give a set name or NAME,NAME(k),...; {_known()}")
    items = []
    for token in _split(spec.strip().lower()):
        match = _TOKEN.match(token)
        if not match:
            raise ConfigError(f"features: {token!r} is not NAME or NAME(k,...); {_known()}")
        name, arg_text = match.group(1), match.group(2)
        if name in FEATURE_SETS_SPEC and arg_text is None:
            items.append((name, ()))
            continue
        feature = FEATURES.get(name)
        if feature is None:
            raise ConfigError(f"features: unknown feature {name!r}; {_known()}")
        try:
            args = tuple(int(a) for a in arg_text.split(",")) if arg_text else feature.defaults
        except ValueError:
            raise ConfigError(f"features: {token!r}: parameters must be integers ({name}"
                              f"({','.join(feature.params)})); {_known()}") from None
        if len(args) != len(feature.params):
            raise ConfigError(f"features: {token!r}: {name} takes {len(feature.params)} parameter(s) "
                              f"({','.join(feature.params) or 'none'}); {_known()}")
        problem = _positive(*args) or feature.check(*args)
        if problem:
            raise ConfigError(f"features: {token!r}: {problem}; {_known()}")
        items.append((name, args))
    return tuple(items)


@functools.lru_cache(maxsize=256)
def _expand(spec: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    out = []
    for name, args in parse(spec):
        if name in FEATURE_SETS_SPEC and FEATURE_SETS_SPEC[name] != name:
            out.extend(_expand(FEATURE_SETS_SPEC[name]))
        else:
            out.append((name, args))
    return tuple(out)


def canonical(spec: str) -> str:
    """One spelling per feature set: lower case, no spaces, default parameters written out."""
    parts = []
    for name, args in parse(spec):
        if name in FEATURE_SETS_SPEC and name not in FEATURES:
            parts.append(name)
        else:
            parts.append(FEATURES[name].columns(args)[0].split(".")[0])
    return ",".join(parts)


@functools.lru_cache(maxsize=256)
def resolve(spec: str, legacy_names: tuple[str, ...]) -> tuple[str, ...]:
    """Column names of a spec in observation order (a set expands to its members); duplicates
    are refused."""
    names: list[str] = []
    for name, args in _expand(spec):
        names.extend(legacy_names if name == LEGACY_SET else FEATURES[name].columns(args))
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"features: {', '.join(dupes)} named twice in {spec!r}")
    return tuple(names)


def blocks(spec: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """The expanded (name, parameters) items of a spec, `default` kept as one item."""
    return _expand(spec)


def compute(name: str, args: tuple[int, ...], bars: Bars | tuple[np.ndarray, ...]) -> np.ndarray:
    """[T, m] float64 values of one registered feature (NaN where history is short) over `Bars`
    or an (open, high, low, close, volume) tuple of float64 arrays."""
    bars = bars if isinstance(bars, Bars) else Bars(*bars)
    return FEATURES[name].fn(bars, *args).reshape(len(bars.close), -1)


def _check_for_config(spec: str) -> str | None:
    try:
        resolve(spec, ())
    except ConfigError as exc:
        return str(exc)
    return None


register_features_check(_check_for_config)


def describe() -> str:
    """`evorl features`: every feature with its parameters (defaults) and description, then the sets."""
    lines = ["features (NAME or NAME(params); defaults in brackets):"]
    for f in FEATURES.values():
        params = f"({', '.join(f'{p}={d}' for p, d in zip(f.params, f.defaults, strict=True))})" if f.params else ""
        outputs = f" [outputs: {', '.join(f.outputs)}]" if f.outputs else ""
        lines.append(f"  {f.name + params:<28} {f.description}{outputs}")
    lines.append("")
    lines.append("sets:")
    lines.append(f"  {LEGACY_SET:<12} log_return, overnight_gap, intraday_return, high_to_close, low_to_close, "
                 "volume_surprise (the six features every run used before feature sets)")
    for name, spec in FEATURE_SETS_SPEC.items():
        if name != LEGACY_SET:
            lines.append(f"  {name:<12} {spec}")
    lines.append("")
    lines.append("usage: evorl train --features technical | --features default,rsi(14),macd | ... (docs/features.md)")
    return "\n".join(lines)
