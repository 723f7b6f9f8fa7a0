"""Pure normalisers, symbol grammar and settings: exact decimals, aggressor side, refusals."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from archive_platform.crypto.config import SettingsError, capture_settings_from_env
from archive_platform.crypto.dedup import RecentKeys
from archive_platform.crypto.normalise import MalformedMessage, normalise_binance, normalise_hyperliquid, trade_key
from archive_platform.crypto.routes import stream_groups
from archive_platform.crypto.symbols import CryptoSymbol, SymbolError, parse_symbol, parse_symbols

DEPTH = {"stream": "btcusdt@depth20@100ms", "data": {
    "e": "depthUpdate", "E": 1764504000123, "T": 1764504000120, "s": "BTCUSDT", "U": 10, "u": 15, "pu": 9,
    "b": [["91234.50", "0.012"], ["91234.40", "1.500"]], "a": [["91234.60", "3.000"]]}}
AGG = {"stream": "btcusdt@aggTrade", "data": {"e": "aggTrade", "E": 1764504000200, "s": "BTCUSDT", "a": 26129,
                                              "p": "91234.60", "q": "0.004", "f": 100, "l": 105, "T": 1764504000199,
                                              "m": True}}


def test_binance_depth_row_is_exact():
    (row,) = normalise_binance(json.dumps(DEPTH), 7).books
    assert (row["symbol"], row["event_time"], row["update_id"], row["prev_update_id"]) == ("BTCUSDT", 1764504000123000, 15, 9)
    assert [Decimal(repr(v)) for v in row["bid_px"]] == [Decimal("91234.50"), Decimal("91234.40")]
    assert [Decimal(repr(v)) for v in row["ask_sz"]] == [Decimal("3.000")]
    assert row["bid_n"] is None and row["receive_time"] == 7


def test_binance_aggtrade_maker_flag_gives_the_aggressor_side():
    (row,) = normalise_binance(json.dumps(AGG), 1).trades
    assert (row["trade_id"], row["event_time"], row["side"]) == (26129, 1764504000199000, "sell")
    buy = json.loads(json.dumps(AGG))
    buy["data"]["m"] = False
    assert normalise_binance(json.dumps(buy), 1).trades[0]["side"] == "buy"


def test_hyperliquid_book_trades_and_control_messages():
    book = {"channel": "l2Book", "data": {"coin": "BTC", "time": 1764504000000, "levels": [
        [{"px": "91230.0", "sz": "1.25", "n": 3}], [{"px": "91231.0", "sz": "0.5", "n": 1}]]}}
    (row,) = normalise_hyperliquid(json.dumps(book), 1).books
    assert row["bid_n"] == [3] and row["ask_px"] == [91231.0] and row["update_id"] is None
    trades = {"channel": "trades", "data": [
        {"coin": "BTC", "side": "B", "px": "91231.0", "sz": "0.1", "hash": "0x1", "time": 1764504000001, "tid": 5},
        {"coin": "BTC", "side": "A", "px": "91230.0", "sz": "0.2", "hash": "0x2", "time": 1764504000002, "tid": 6}]}
    rows = normalise_hyperliquid(json.dumps(trades), 1).trades
    assert [(r["trade_id"], r["side"]) for r in rows] == [(5, "buy"), (6, "sell")]
    assert normalise_hyperliquid("Websocket connection established.", 1).control == "greeting"
    assert normalise_hyperliquid('{"channel":"pong"}', 1).control == "pong"
    assert normalise_binance('{"result":null,"id":1}', 1).control == "ack"


def test_levels_are_stored_best_first_whatever_order_they_came_in():
    # Binance's own doc example lists bids rising; level 0 must be the best bid all the same
    doc = {"stream": "btcusdt@depth20@100ms", "data": {
        "e": "depthUpdate", "E": 1571889248277, "T": 1571889248276, "s": "BTCUSDT", "U": 390497796,
        "u": 390497878, "pu": 390497794,
        "b": [["7403.89", "0.002"], ["7403.90", "3.906"], ["7404.00", "1.428"], ["7404.85", "5.239"]],
        "a": [["7405.96", "3.340"], ["7406.63", "4.525"], ["7407.08", "2.475"]]}}
    (row,) = normalise_binance(json.dumps(doc), 1).books
    assert row["bid_px"] == [7404.85, 7404.0, 7403.9, 7403.89] and row["bid_sz"] == [5.239, 1.428, 3.906, 0.002]
    assert row["ask_px"] == [7405.96, 7406.63, 7407.08] and row["ask_sz"] == [3.34, 4.525, 2.475]
    hl = {"channel": "l2Book", "data": {"coin": "BTC", "time": 1764504000000, "levels": [
        [{"px": "100.0", "sz": "1", "n": 1}, {"px": "101.0", "sz": "2", "n": 2}],
        [{"px": "103.0", "sz": "3", "n": 3}, {"px": "102.0", "sz": "4", "n": 4}]]}}
    (row,) = normalise_hyperliquid(json.dumps(hl), 1).books
    assert (row["bid_px"], row["bid_sz"], row["bid_n"]) == ([101.0, 100.0], [2.0, 1.0], [2, 1])
    assert (row["ask_px"], row["ask_sz"], row["ask_n"]) == ([102.0, 103.0], [4.0, 3.0], [4, 3])


def test_zero_quantity_trades_are_archived_as_sent():
    # Binance's daily aggTrades files hold zero-quantity aggregate trades; live and backfill agree
    msg = dict(AGG, data=dict(AGG["data"], q="0.000"))
    (row,) = normalise_binance(json.dumps(msg), 1).trades
    assert row["size"] == 0.0
    hl = {"channel": "trades", "data": [{"coin": "BTC", "side": "B", "px": "1.5", "sz": "0", "hash": "0x1",
                                         "time": 1764504000001, "tid": 5}]}
    assert normalise_hyperliquid(json.dumps(hl), 1).trades[0]["size"] == 0.0


def test_hyperliquid_error_channel_is_the_exchange_speaking_not_a_malformed_message():
    text = '{"channel":"error","data":"Already subscribed: {\\"type\\":\\"trades\\",\\"coin\\":\\"BTC\\"}"}'
    got = normalise_hyperliquid(text, 1)
    assert got.control == "error" and got.error.startswith("Already subscribed") and not got.trades


def test_hyperliquid_trade_ids_are_unique_only_with_the_block_time():
    # the docs: tid is a hash of (buyer_oid, seller_oid); (block_time, coin, tid) is unique
    a = {"coin": "BTC", "side": "B", "px": "1", "sz": "1", "hash": "0x1", "time": 1787195046105, "tid": 7}
    rows = normalise_hyperliquid(json.dumps({"channel": "trades", "data": [a, dict(a, time=1787195099999)]}), 1).trades
    assert trade_key(rows[0]) != trade_key(rows[1])
    keys = RecentKeys(10)
    assert [keys.add(trade_key(r)) for r in rows + rows] == [True, True, False, False]


@pytest.mark.parametrize("text", [
    "nope", "[]", '{"stream":"x","data":{"e":"depthUpdate","s":"BTCUSDT","E":1,"u":1,"pu":0,"b":[["x","1"]],"a":[]}}',
    '{"stream":"x","data":{"e":"aggTrade","s":"BTCUSDT","a":1,"p":"1","q":"-1","T":1764504000000,"m":false}}',
    '{"stream":"x","data":{"e":"aggTrade","s":"BTCUSDT","a":1,"p":"0","q":"1","T":1764504000000,"m":false}}',
    '{"stream":"x","data":{"e":"aggTrade","s":"BTCUSDT","a":1,"p":"1","q":"1","T":1764504000000,"m":"yes"}}',
    '{"stream":"x","data":{"e":"kline","s":"BTCUSDT"}}',
])
def test_binance_malformed_messages_are_refused(text):
    with pytest.raises(MalformedMessage):
        normalise_binance(text, 1)


@pytest.mark.parametrize("text", [
    '{"channel":"l2Book","data":{"coin":"BTC","time":1764504000000,"levels":[[]]}}',
    '{"channel":"trades","data":[{"coin":"BTC","side":"X","px":"1","sz":"1","time":1764504000000,"tid":1}]}',
    '{"channel":"l2Book","data":{"coin":"BTC","time":1764504000000,"levels":[[{"px":"NaN","sz":"1","n":1}],[]]}}',
])
def test_hyperliquid_malformed_messages_are_refused(text):
    with pytest.raises(MalformedMessage):
        normalise_hyperliquid(text, 1)


@given(st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal("9999999"), places=8))
def test_prices_round_trip_as_decimals(d):
    text = format(d.normalize(), "f")
    msg = dict(AGG, data=dict(AGG["data"], p=text))
    stored = normalise_binance(json.dumps(msg), 1).trades[0]["price"]
    assert Decimal(repr(stored)) == Decimal(text)


def test_symbol_routing_and_naming():
    assert parse_symbols("btcusdt, BTC ,hyperliquid:kPEPE,binance:ETHUSDC,BTCUSDT_261225") == (
        CryptoSymbol("binance", "BTCUSDT"), CryptoSymbol("hyperliquid", "BTC"), CryptoSymbol("hyperliquid", "kPEPE"),
        CryptoSymbol("binance", "ETHUSDC"), CryptoSymbol("binance", "BTCUSDT_261225"))
    for bad, words in [("BTC/USDT", "path"), ("../etc", "path"), ("kraken:BTC", "unknown exchange"),
                       ("binance:BTC", "not a Binance"), ("BTC-PERP", "unknown symbol")]:
        with pytest.raises(SymbolError, match=words):
            parse_symbol(bad)


@pytest.mark.parametrize("env, setting", [
    ({"BINANCE_FUTURES_WS_URL": "https://fstream.binance.com"}, "BINANCE_FUTURES_WS_URL"),
    ({"HYPERLIQUID_WS_URL": "ftp://x"}, "HYPERLIQUID_WS_URL"),
    ({"HYPERLIQUID_WS_URL": "wss://api.hyperliquid.xyz?x=1"}, "HYPERLIQUID_WS_URL"),
    ({"ARCHIVE_CRYPTO_SYMBOLS": "BTCUSDT,okx:BTC"}, "ARCHIVE_CRYPTO_SYMBOLS"),
    ({"ARCHIVE_CRYPTO_SYMBOLS": "BTC%2FUSDT"}, "ARCHIVE_CRYPTO_SYMBOLS"),
    ({"ARCHIVE_CRYPTO_SYMBOLS": " , "}, "ARCHIVE_CRYPTO_SYMBOLS"),
    ({"ARCHIVE_CRYPTO_FLUSH_SECONDS": "soon"}, "ARCHIVE_CRYPTO_FLUSH_SECONDS"),
    ({"REDIS_URL": "http://localhost"}, "REDIS_URL"),
])
def test_bad_settings_name_the_setting(env, setting):
    with pytest.raises(SettingsError, match=f"^{setting}"):
        capture_settings_from_env(env)


def test_routes_follow_binance_2026_split_and_hyperliquid_ws():
    s = capture_settings_from_env({"ARCHIVE_CRYPTO_SYMBOLS": "BTCUSDT,ETHUSDT,BTC", "BINANCE_FUTURES_WS_URL": "wss://h/"})
    urls = {g.name: g.url for g in stream_groups(s)}
    assert urls == {"binance-public-0": "wss://h/public/stream?streams=btcusdt@depth20@100ms/ethusdt@depth20@100ms",
                    "binance-market-0": "wss://h/market/stream?streams=btcusdt@aggTrade/ethusdt@aggTrade",
                    "hyperliquid": "wss://api.hyperliquid.xyz/ws"}
    hl = [g for g in stream_groups(s) if g.exchange == "hyperliquid"][0]
    assert json.loads(hl.subscribe[0]) == {"method": "subscribe", "subscription": {"type": "l2Book", "coin": "BTC"}}
    assert json.loads(hl.app_ping) == {"method": "ping"}


def test_cli_refuses_bad_input_and_writes_nothing(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from archive_platform.crypto.cli import capture

    monkeypatch.setenv("BINANCE_FUTURES_WS_URL", "http://fstream.binance.com")
    res = CliRunner().invoke(capture, ["--root", str(tmp_path), "--seconds", "1"])
    assert res.exit_code == 2 and "BINANCE_FUTURES_WS_URL" in res.output
    monkeypatch.delenv("BINANCE_FUTURES_WS_URL")
    res = CliRunner().invoke(capture, ["--root", str(tmp_path), "--symbols", "BTC/USDT", "--seconds", "1"])
    assert res.exit_code == 2 and "--symbols" in res.output and "path" in res.output
    res = CliRunner().invoke(capture, ["--root", str(tmp_path), "--exchange", "kraken"])
    assert res.exit_code == 2
    assert list(tmp_path.iterdir()) == []
