"""Crypto order books and trades: capture (Binance USD-M futures, Hyperliquid), spool, coverage.

Pure modules (no Dagster, no I/O): ``schemas``, ``symbols``, ``config``, ``normalise``,
``coverage``, ``candles``, ``sim_venue``. I/O: ``spool`` (atomic Parquet files), ``service``
(the asyncio WebSocket capture), ``live`` (Redis publication), ``backfill`` (Binance daily
aggTrades files), ``cli`` (the ``capture`` click command). See docs/crypto.md.
"""
