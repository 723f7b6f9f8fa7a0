"""Backfill of crypto_trades from Binance's daily aggTrades files, over a loopback HTTP server."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from archive_platform.crypto.backfill import BackfillError, fetch_aggtrades_day
from archive_platform_tests.fakes.binance_data import FakeBinanceData, aggtrades_zip

DAY = date(2026, 11, 28)
LINES = ["26129,91234.10,0.004,27781,27783,1795824000123,true",
         "26130,91234.20,1.250,27784,27784,1795824000456,false",
         "26131,91233.90,0.001,27785,27790,1795910399999,True"]


@pytest.mark.parametrize("header", [True, False])
def test_daily_file_with_or_without_header_becomes_trade_rows(header):
    with FakeBinanceData() as portal:
        portal.add_aggtrades("BTCUSDT", DAY, aggtrades_zip("BTCUSDT", DAY, LINES, header=header))
        table = fetch_aggtrades_day("btcusdt", DAY, base_url=portal.url, receive_us=5)
    rows = table.to_pylist()
    assert [r["trade_id"] for r in rows] == [26129, 26130, 26131]
    assert [r["side"] for r in rows] == ["sell", "buy", "sell"]  # buyer is maker -> aggressor sold
    assert [Decimal(repr(r["price"])) for r in rows] == [Decimal("91234.10"), Decimal("91234.20"), Decimal("91233.90")]
    assert rows[0]["event_time"].isoformat() == "2026-11-28T00:00:00.123000+00:00"
    assert {r["exchange"] for r in rows} == {r["source"] for r in rows} == {"binance"}
    assert portal.requests[0] == "/data/futures/um/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2026-11-28.zip"


def test_missing_day_checksum_mismatch_and_bad_rows_are_clear_errors():
    with FakeBinanceData() as portal:
        with pytest.raises(BackfillError, match="no aggTrades file"):
            fetch_aggtrades_day("BTCUSDT", DAY, base_url=portal.url)
        portal.add_aggtrades("BTCUSDT", DAY, aggtrades_zip("BTCUSDT", DAY, LINES, header=True), checksum="0" * 64)
        with pytest.raises(BackfillError, match="checksum mismatch"):
            fetch_aggtrades_day("BTCUSDT", DAY, base_url=portal.url)
        portal.add_aggtrades("ETHUSDT", DAY, aggtrades_zip("ETHUSDT", DAY, ["1,x,1,1,1,1,true"], header=False))
        with pytest.raises(BackfillError, match="bad aggTrades value"):
            fetch_aggtrades_day("ETHUSDT", DAY, base_url=portal.url)
    with pytest.raises(BackfillError, match="only Binance"):
        fetch_aggtrades_day("BTC", DAY, base_url="http://127.0.0.1:1")


def test_server_errors_and_a_body_that_is_no_zip_are_backfill_errors():
    # the caller (the daily asset) turns a BackfillError into a note and keeps the captured rows;
    # anything else would fail the whole day
    path = "/data/futures/um/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2026-11-28.zip"
    with FakeBinanceData() as portal:
        portal.add_aggtrades("BTCUSDT", DAY, aggtrades_zip("BTCUSDT", DAY, LINES, header=True))
        for status in (403, 503):
            portal.statuses[path] = status
            with pytest.raises(BackfillError, match=f"download of .* failed: .*{status}"):
                fetch_aggtrades_day("BTCUSDT", DAY, base_url=portal.url)
        portal.statuses.clear()
        portal.add_aggtrades("BTCUSDT", DAY, b"<html>maintenance</html>")
        with pytest.raises(BackfillError, match="not a zip file"):
            fetch_aggtrades_day("BTCUSDT", DAY, base_url=portal.url)
    with pytest.raises(BackfillError, match="failed"):  # nothing listening
        fetch_aggtrades_day("BTCUSDT", DAY, base_url="http://127.0.0.1:9")


def test_a_header_with_a_byte_order_mark_and_zero_quantity_trades_are_read():
    import io
    import zipfile

    from archive_platform_tests.fakes.binance_data import HEADER

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("BTCUSDT-aggTrades-2026-11-28.csv",
                    ("\ufeff" + HEADER + "\r\n" + "\r\n".join([LINES[0], "26130,91234.20,0.000,27784,27784,1795824000456,false"])
                     + "\r\n").encode())
    with FakeBinanceData() as portal:
        portal.add_aggtrades("BTCUSDT", DAY, buf.getvalue())
        rows = fetch_aggtrades_day("BTCUSDT", DAY, base_url=portal.url).to_pylist()
    assert [(r["trade_id"], r["size"]) for r in rows] == [(26129, 0.004), (26130, 0.0)]
