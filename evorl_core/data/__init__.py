"""Market data: load, validate, build causal features, split train/test.

The stages, one module each, read in this order (each imports only the ones before it):

1. `validate`: the validated-frame contract and its errors (`DataError`, `validate_ohlcv`);
2. the sources: `csv_files` (`read_symbol_csv`, Yahoo and NSE layouts), `yahoo` (`fetch_yahoo`,
   the download cache; reads its cache with `csv_files`), `synthetic` (`synthetic_ohlcv`);
3. `sources`: `load_frames`, one source per symbol; `auto` falls back to synthetic data loudly,
   never quietly; `data_info` is the record of what was used;
4. `feature_registry`: every feature declared once (name, parameters, description, one causal
   NumPy function), the named sets and the `--features` spec parser; `features`: the legacy six,
   `FEATURE_SETS`, `num_features(config)`, `feature_names(config)`, `raw_features`, the
   training-rows-only normalisation and `features_for_inference`;
5. `market`: `build_market`, padded device arrays, train/test split indices, training-range
   normalisation, data hash;
6. `panel`: portfolio mode's universe on one trading calendar (`build_panel`, listing masks,
   `--symbols all`); `load_market` does 3 + 5 (or 3 + 6 in portfolio mode) from a `TrainConfig`.

Nothing here fills gaps: a missing or inconsistent value is a `DataError` naming the file, the
column and the row (one error lists every problem a file has), so a user can fix the data instead
of training on invented prices. The names
below are re-exported so callers import from `evorl_core.data`; to replace a module-level
function or constant (a test stubbing `_download`), patch it in the module that defines it
(`evorl_core.data.yahoo`).
"""

from evorl_core.data.arrays import MarketData  # the device arrays every JAX stage takes as an argument
from evorl_core.data.csv_files import (
    NSE_LAYOUT,
    YAHOO_LAYOUT,
    parse_symbol_csv,
    read_symbol_csv,
    yahoo_ticker,
)
from evorl_core.data.features import (
    FEATURE_CLIP,
    FEATURE_NAMES,
    FEATURE_SETS,
    STD_FLOOR,
    VOLUME_LOOKBACK,
    feature_names,
    features_for_inference,
    normalisation_stats,
    num_features,
    raw_features,
)
from evorl_core.data.market import (
    MIN_TRAIN_STEPS,
    Market,
    build_market,
    hash_frames,
    rows_needed,
    split_indices,
)
from evorl_core.data.panel import ALL, PanelMarket, list_symbols, load_market, load_panel
from evorl_core.data.sources import DATA_SOURCES, data_info, load_frames
from evorl_core.data.synthetic import (
    SYNTHETIC_DAYS,
    SYNTHETIC_END,
    planted_signal_frames,
    random_walk_frames,
    synthetic_length,
    synthetic_ohlcv,
)
from evorl_core.data.validate import (
    MAX_LISTED,
    OHLCV,
    PRICE_TOLERANCE,
    PRICES,
    SPLIT_MOVE_THRESHOLD,
    DataError,
    DataFallbackWarning,
    suspicious_moves,
    validate_ohlcv,
)
from evorl_core.data.yahoo import (
    DOWNLOAD_ATTEMPTS,
    DOWNLOAD_START,
    DOWNLOAD_TIMEOUT_S,
    NETWORK_CHECK_TIMEOUT_S,
    RETRY_BACKOFF_S,
    YAHOO_HOST,
    cache_path,
    fetch_yahoo,
)

__all__ = [
    "ALL",
    "PanelMarket",
    "list_symbols",
    "load_panel",
    "DATA_SOURCES",
    "DOWNLOAD_ATTEMPTS",
    "DOWNLOAD_START",
    "DOWNLOAD_TIMEOUT_S",
    "FEATURE_CLIP",
    "FEATURE_NAMES",
    "FEATURE_SETS",
    "MAX_LISTED",
    "MIN_TRAIN_STEPS",
    "NETWORK_CHECK_TIMEOUT_S",
    "NSE_LAYOUT",
    "OHLCV",
    "PRICES",
    "PRICE_TOLERANCE",
    "RETRY_BACKOFF_S",
    "STD_FLOOR",
    "SPLIT_MOVE_THRESHOLD",
    "SYNTHETIC_DAYS",
    "SYNTHETIC_END",
    "VOLUME_LOOKBACK",
    "YAHOO_HOST",
    "YAHOO_LAYOUT",
    "DataError",
    "DataFallbackWarning",
    "Market",
    "MarketData",
    "build_market",
    "cache_path",
    "data_info",
    "feature_names",
    "features_for_inference",
    "num_features",
    "fetch_yahoo",
    "hash_frames",
    "load_frames",
    "load_market",
    "normalisation_stats",
    "raw_features",
    "parse_symbol_csv",
    "read_symbol_csv",
    "rows_needed",
    "split_indices",
    "suspicious_moves",
    "planted_signal_frames",
    "random_walk_frames",
    "synthetic_length",
    "synthetic_ohlcv",
    "validate_ohlcv",
    "yahoo_ticker",
]
