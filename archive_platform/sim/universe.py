"""The simulated market's symbol universe and its knobs (plain frozen dataclasses).

``DEFAULT_UNIVERSE`` holds the 56 symbols of the original archive design: the index ETFs and liquid US large caps,
each with a price level close to where it traded in 2025 and an annual volatility. The price is
the level the simulated daily series passes through on ``SimConfig.anchor_day``; the volatility is
the long-run at-the-money implied volatility (realised volatility runs a little below it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class SymbolSpec:
    """One simulated underlying: ticker, anchor price (USD), annual volatility (0.25 = 25 %).

    ``adv`` is the average daily share volume (None: derived from the price, about $3bn a day);
    ``index_etf`` lists strikes $1 apart at any price level, like SPY/QQQ/IWM/DIA.
    """

    symbol: str
    price: float
    vol: float
    adv: int | None = None
    index_etf: bool = False

    def __post_init__(self) -> None:
        if not self.symbol or self.symbol != self.symbol.upper():
            raise ValueError(f"symbol must be a non-empty upper-case ticker, got {self.symbol!r}")
        if not self.price > 0:
            raise ValueError(f"{self.symbol}: price must be > 0, got {self.price}")
        if not 0 < self.vol < 5:
            raise ValueError(f"{self.symbol}: vol must be in (0, 5), got {self.vol}")

    @property
    def daily_volume(self) -> int:
        return self.adv if self.adv is not None else int(min(max(3e9 / self.price, 2e6), 1e8))


@dataclass(frozen=True)
class SimConfig:
    """Knobs of the simulated market. Defaults give ~270 contracts per symbol per snapshot."""

    anchor_day: date = date(2025, 1, 2)  # the day each symbol's close equals SymbolSpec.price
    rate: float = 0.04  # continuously compounded risk-free rate; dividend yield is 0
    weekly_expiries: int = 6  # next N Friday expiries after the day
    monthly_expiries: int = 3  # then the next N third-Friday expiries not already listed
    max_strikes_per_expiry: int = 15  # strikes are thinned to a coarser listed step above this
    moneyness_band: float = 0.25  # widest |ln(K/S)| listed for the longest expiry
    band_sd: float = 2.5  # band = band_sd standard deviations to expiry, capped by the above
    substeps_per_minute: int = 6  # path resolution: 10-second steps
    alerts_per_symbol_day: float = 12.0  # mean alerts per day at 20M shares/day, scaled by volume
    trade_symbols: tuple[str, ...] = ("SPY", "QQQ", "IWM", "AAPL", "NVDA", "TSLA")
    trade_minutes_before_close: int = 30  # when the trading rule looks at the day's move
    trade_move_threshold: float = 0.003  # |move from previous close| that triggers an order
    commission_per_contract: float = 0.65
    iv_rank_window: int = 252  # trading days of daily IV history behind iv_rank

    def __post_init__(self) -> None:
        if self.weekly_expiries < 0 or self.monthly_expiries < 0:
            raise ValueError("expiry counts must be >= 0")
        if self.weekly_expiries + self.monthly_expiries == 0:
            raise ValueError("at least one expiry is needed (weekly_expiries + monthly_expiries)")
        if not 1 <= self.max_strikes_per_expiry <= 400:
            raise ValueError(
                f"max_strikes_per_expiry must be in 1..400, got {self.max_strikes_per_expiry}"
            )
        if not 0 < self.moneyness_band < 2:
            raise ValueError(f"moneyness_band must be in (0, 2), got {self.moneyness_band}")
        if not 1 <= self.substeps_per_minute <= 60:
            raise ValueError("substeps_per_minute must be in 1..60")


_ETF = {"SPY": (600.0, 0.16, 70_000_000), "QQQ": (520.0, 0.21, 45_000_000),
        "IWM": (225.0, 0.23, 30_000_000), "DIA": (440.0, 0.15, 3_500_000)}

# ticker: (price around 2025, annual vol)
_STOCKS = {
    "AAPL": (235.0, 0.27), "MSFT": (430.0, 0.24), "NVDA": (140.0, 0.50), "AMZN": (215.0, 0.33),
    "META": (600.0, 0.38), "GOOGL": (180.0, 0.31), "TSLA": (380.0, 0.62), "AMD": (130.0, 0.50),
    "AVGO": (230.0, 0.48), "NFLX": (900.0, 0.36), "JPM": (240.0, 0.24), "V": (320.0, 0.20),
    "MA": (530.0, 0.21), "UNH": (500.0, 0.33), "XOM": (110.0, 0.24), "JNJ": (150.0, 0.17),
    "PG": (165.0, 0.17), "HD": (390.0, 0.24), "COST": (920.0, 0.23), "WMT": (90.0, 0.22),
    "BAC": (44.0, 0.28), "KO": (63.0, 0.16), "PEP": (150.0, 0.19), "CRM": (330.0, 0.36),
    "ORCL": (170.0, 0.42), "ADBE": (440.0, 0.34), "INTC": (20.0, 0.50), "CSCO": (60.0, 0.24),
    "QCOM": (155.0, 0.36), "TXN": (190.0, 0.30), "MU": (100.0, 0.55), "PLTR": (75.0, 0.70),
    "COIN": (270.0, 0.75), "MSTR": (300.0, 0.85), "UBER": (65.0, 0.40), "SHOP": (105.0, 0.55),
    "BA": (175.0, 0.36), "CAT": (360.0, 0.29), "GS": (580.0, 0.29), "MS": (125.0, 0.29),
    "C": (70.0, 0.30), "WFC": (70.0, 0.28), "DIS": (110.0, 0.27), "NKE": (75.0, 0.35),
    "PYPL": (85.0, 0.37), "SMCI": (35.0, 0.90), "ARM": (150.0, 0.65), "LLY": (780.0, 0.31),
    "ABBV": (175.0, 0.25), "MRK": (100.0, 0.25), "PFE": (26.0, 0.25), "CVX": (145.0, 0.23),
}

DEFAULT_UNIVERSE: tuple[SymbolSpec, ...] = tuple(
    [SymbolSpec(s, p, v, adv=a, index_etf=True) for s, (p, v, a) in _ETF.items()]
    + [SymbolSpec(s, p, v) for s, (p, v) in _STOCKS.items()]
)


def default_symbols() -> list[str]:
    """The 56 tickers of the default universe, in universe order."""
    return [s.symbol for s in DEFAULT_UNIVERSE]


def index_universe(universe: Sequence[SymbolSpec]) -> dict[str, SymbolSpec]:
    """Map ticker -> spec; a clear error on duplicate tickers."""
    out: dict[str, SymbolSpec] = {}
    for spec in universe:
        if spec.symbol in out:
            raise ValueError(f"duplicate symbol {spec.symbol!r} in the simulated universe")
        out[spec.symbol] = spec
    return out


def resolve_symbols(symbols: Sequence[str], universe: dict[str, SymbolSpec]) -> list[SymbolSpec]:
    """The specs of ``symbols`` (order kept, duplicates dropped); unknown tickers are an error."""
    if isinstance(symbols, str):
        raise TypeError(f"symbols must be a sequence of tickers, not the string {symbols!r}")
    unknown = sorted({s for s in symbols if s not in universe})
    if unknown:
        raise ValueError(
            f"symbols not in the simulated universe: {', '.join(unknown)} "
            f"(the universe has {len(universe)} symbols; pass universe=... to add them)"
        )
    return [universe[s] for s in dict.fromkeys(symbols)]
