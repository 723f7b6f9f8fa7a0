"""archive_platform: a market-data archive on Dagster (NYSE trading-day partitioned Parquet)."""

__version__ = "0.1.0"
