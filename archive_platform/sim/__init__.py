"""The deterministic simulated market: the offline default source of every archive type.

See docs/simulated-market.md for the model, its knobs and what it is not.
"""

from archive_platform.sim.market import SimulatedMarket
from archive_platform.sim.universe import DEFAULT_UNIVERSE, SimConfig, SymbolSpec, default_symbols

__all__ = ["DEFAULT_UNIVERSE", "SimConfig", "SimulatedMarket", "SymbolSpec", "default_symbols"]
