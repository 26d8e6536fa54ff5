"""Account activity: order lifecycles (sor), executions (str), P&L (spl), depth ladders (sbd).

Pure and deterministic: an :class:`Account` is seeded; ``now_ms`` is always a parameter.

Rules (behaviours.md §7–8 and frames/sor.jsonl, str.jsonl, spl.jsonl):
- An order lifecycle is a list of sor frames, each ``args`` holding one element: a full
  snapshot (``Inactive``), an identity mini frame, status deltas ``PendingSubmit`` ->
  ``PreSubmitted`` -> ``Submitted``, then either a cancel (full ``PendingCancel`` snapshot, then
  ``Cancelled``) or fills (``sizeAndFills``/``avgPrice`` deltas, then ``Filled``).
- Every execution is sent twice: first without ``commission``, then with it. A ``str``
  subscription first gets ``{"topic":"str","args":[]}``, then the backfill.
- ``spl`` values are JSON numbers under ``"<acct>.Core"``.
- Depth rows are ``{"row","focus","price"[,"bid"|"ask"]}``; the focus row's price is
  ``"size @ price"``.
- ``/iserver/account/orders`` lists the day's orders, each at its latest state (every sor row
  of it merged), after one order placed before the gateway started: a GTC limit buy well
  under the market, ``Submitted``, that no sor frame ever mentions.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

from recorder.sim.encode import dumps
from recorder.sim.market import Quote


@dataclass(frozen=True)
class Execution:
    """One execution; :meth:`frame` encodes it without or with the commission."""

    fields: tuple[tuple[str, Any], ...]
    commission: str

    def frame(self, with_commission: bool) -> bytes:
        row: dict[str, Any] = {}
        for key, value in self.fields:
            row[key] = value
            if key == "exchange" and with_commission:
                row["commission"] = self.commission
        return dumps({"topic": "str", "args": [row]})


STR_EMPTY = b'{"topic":"str","args":[]}'
RESTING_ORDER_ID = 912091170  # below every lifecycle's orderId (they start at 912091175)


def _sor(row: dict[str, Any]) -> bytes:
    return dumps({"topic": "sor", "args": [row]})


def _stamp(now_ms: int) -> str:
    return time.strftime("%y%m%d%H%M%S", time.gmtime(now_ms / 1000))


class Account:
    """Orders and executions of one simulated account."""

    def __init__(self, account: str, seed: int) -> None:
        self.account = account
        self.rng = random.Random(f"{seed}:account:{account}")
        self.next_order_id = 912091175 + self.rng.randint(0, 1000)
        self.next_exec = self.rng.randint(0x1000, 0xFFFF)
        self.lifecycles = 0
        self._history: list[Execution] | None = None  # yesterday's, made once
        self._orders: dict[int, dict[str, Any]] = {}  # the day's, by orderId, latest state
        self._resting: dict[str, Any] | None = None  # placed before the gateway started

    def _order_frame(self, row: dict[str, Any]) -> bytes:
        """An sor frame of ``row``; the order's state in :meth:`day_orders` takes it in."""
        self._orders.setdefault(row["orderId"], {}).update(row)
        return _sor(row)

    def day_orders(self, quote: Quote, started_ms: int) -> dict[str, Any]:
        """The ``/iserver/account/orders`` answer: the order resting since before
        ``started_ms`` (made from ``quote`` on the first call), then the day's orders."""
        if self._resting is None:
            price = f"{quote.bid * 0.9:.2f}"
            row = self._full(quote, RESTING_ORDER_ID, "BUY", 100.0, price, "Submitted",
                             "Submitted", "#00F000", started_ms)
            row["timeInForce"] = "GTC"
            row["orderDesc"] = row["orderDesc"].replace(", Day", ", GTC")
            self._resting = row
        return {"orders": [self._resting, *self._orders.values()], "snapshot": True}

    def _full(
        self,
        quote: Quote,
        order_id: int,
        side: str,
        qty: float,
        price: str,
        status: str,
        ccp: str,
        fg: str,
        now_ms: int,
    ) -> dict[str, Any]:
        inst = quote.instrument
        verb = "Buy" if side == "BUY" else "Sell"
        row: dict[str, Any] = {
            "acct": self.account,
            "conidex": str(inst.conid),
            "conid": inst.conid,
            "account": self.account,
            "orderId": order_id,
            "cashCcy": "USD",
            "sizeAndFills": f"0/{qty:g}",
            "orderDesc": f"{verb} {qty:g} {inst.symbol} Limit {price}, Day",
            "description1": inst.symbol,
            "ticker": inst.symbol,
            "secType": inst.sec_type,
            "listingExchange": "NASDAQ.NMS",
            "remainingQuantity": qty,
            "filledQuantity": 0.0,
            "totalSize": qty,
            "companyName": inst.name,
            "status": status,
            "order_ccp_status": ccp,
            "outsideRTH": False,
            "origOrderType": "LIMIT",
            "supportsTaxOpt": "1",
            "lastExecutionTime": _stamp(now_ms),
            "orderType": "Limit",
            "bgColor": "#000000",
            "fgColor": fg,
            "isEventTrading": "0",
            "price": price,
            "timeInForce": "CLOSE",
            "lastExecutionTime_r": now_ms // 1000 * 1000,
            "side": side,
        }
        if status != "Inactive":  # the live PendingCancel snapshot has no outsideRTH
            del row["outsideRTH"]
        return row

    def lifecycle(self, quote: Quote, now_ms: int) -> tuple[list[bytes], list[Execution]]:
        """The next order's sor frames and its executions (cancels and fills alternate)."""
        rng = self.rng
        self.lifecycles += 1
        order_id = self.next_order_id
        self.next_order_id += rng.randint(1, 50)
        side = "BUY" if rng.random() < 0.5 else "SELL"
        qty = float(rng.choice((1, 2, 10, 100)))
        px = quote.bid if side == "BUY" else quote.ask
        price = f"{px:.2f}"
        acct = self.account
        inst = quote.instrument
        frames = [
            self._order_frame(
                self._full(
                    quote,
                    order_id,
                    side,
                    qty,
                    price,
                    "Inactive",
                    "Pending Submit",
                    "#AFAFAF",
                    now_ms,
                )
            ),
            self._order_frame(
                {
                    "acct": acct,
                    "conidex": str(inst.conid),
                    "conid": inst.conid,
                    "orderId": order_id,
                    "isEventTrading": "0",
                }
            ),
            self._order_frame(
                {"acct": acct, "orderId": order_id, "status": "PendingSubmit", "fgColor": "#3399CC"}
            ),
            self._order_frame(
                {
                    "acct": acct,
                    "orderId": order_id,
                    "status": "PreSubmitted",
                    "bgColor": "#FFFFFF",
                    "fgColor": "#997EE5",
                }
            ),
            self._order_frame(
                {
                    "acct": acct,
                    "orderId": order_id,
                    "status": "Submitted",
                    "order_ccp_status": "Submitted",
                    "bgColor": "#000000",
                    "fgColor": "#00F000",
                }
            ),
        ]
        executions: list[Execution] = []
        if self.lifecycles % 2 == 1:
            frames.append(
                self._order_frame(
                    self._full(
                        quote,
                        order_id,
                        side,
                        qty,
                        price,
                        "PendingCancel",
                        "Submitted",
                        "#FF64FF",
                        now_ms,
                    )
                )
            )
            frames.append(
                self._order_frame(
                    {
                        "acct": acct,
                        "orderId": order_id,
                        "status": "Cancelled",
                        "order_ccp_status": "Cancelled",
                        "bgColor": "#FFFFFF",
                        "fgColor": "#AA0000",
                    }
                )
            )
            return frames, executions
        first = qty if qty == 1 else max(1.0, float(int(qty * 0.4)))  # never a fill of 0
        parts = [first] if first == qty else [first, qty - first]
        filled = 0.0
        for n, part in enumerate(parts):
            filled += part
            last = n == len(parts) - 1
            row: dict[str, Any] = {
                "acct": acct,
                "orderId": order_id,
                "sizeAndFills": f"{filled:g}" if last else f"{filled:g}/{qty - filled:g}",
                "remainingQuantity": qty - filled,
                "filledQuantity": filled,
                "avgPrice": price,
            }
            if last:
                row.update({"status": "Filled", "bgColor": "#FFFFFF", "fgColor": "#000000"})
            frames.append(self._order_frame(row))
            executions.append(self._execution(quote, order_id, side, part, price, now_ms))
        return frames, executions

    def _execution(
        self, quote: Quote, order_id: int, side: str, size: float, price: str, now_ms: int
    ) -> Execution:
        inst = quote.instrument
        self.next_exec += 1
        exec_id = f"0000{self.next_exec:04x}.{now_ms // 1000 & 0xFFFFFFFF:08x}.01.01"
        verb = "Bot" if side == "BUY" else "Sold"
        fields = (
            ("execution_id", exec_id),
            ("symbol", inst.symbol),
            ("supports_tax_opt", "1"),
            ("side", "B" if side == "BUY" else "S"),
            ("order_description", f"{verb} {size:g} @ {price} on {inst.exchange}"),
            ("trade_time", time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(now_ms / 1000))),
            ("trade_time_r", now_ms // 1000 * 1000),
            ("size", size),
            ("price", price),
            ("exchange", inst.exchange),
            ("net_amount", round(size * float(price), 6)),
            ("account", self.account),
            ("accountCode", self.account),
            ("account_allocation_name", self.account),
            ("company_name", inst.name),
            ("contract_description_1", inst.symbol),
            ("sec_type", inst.sec_type),
            ("listing_exchange", "NASDAQ.NMS"),
            ("conid", inst.conid),
            ("conidEx", str(inst.conid)),
            ("position", f"{size:g}"),
            ("clearing_id", "IB"),
            ("clearing_name", "IB"),
            ("liquidation_trade", "0"),
            ("is_event_trading", "0"),
            ("order_id", order_id),
        )
        return Execution(fields, "1.0" if size >= 1 else "0.0")

    def backfill(self, quote: Quote, now_ms: int, count: int = 2) -> list[Execution]:
        """Yesterday's executions, for a ``str`` subscription that asked for history: the
        same ones to every subscription, as a real account's history is (made at the first)."""
        if self._history is None:
            self._history = self._yesterday(quote, now_ms, count)
        return self._history

    def _yesterday(self, quote: Quote, now_ms: int, count: int) -> list[Execution]:
        day_ago = now_ms - 86_400_000
        out = []
        for i in range(count):
            out.append(
                self._execution(
                    quote,
                    96335105 + i,
                    "BUY" if i % 2 == 0 else "SELL",
                    float(self.rng.choice((1, 2, 5))),
                    f"{quote.last:.2f}",
                    day_ago + i * 60_000,
                )
            )
        return out

    def pnl(self, quote_moves: float) -> bytes:
        """An spl frame; ``quote_moves`` shifts the daily P&L so consecutive frames differ."""
        rng = self.rng
        dpl = round(-58.28 + quote_moves + rng.uniform(-5, 5), 2)
        upl = round(4600.0 + dpl, 2)
        return dumps(
            {
                "topic": "spl",
                "args": {
                    f"{self.account}.Core": {
                        "rowType": 1,
                        "dpl": dpl,
                        "nl": round(1020000.0 + dpl, 2),
                        "upl": upl,
                        "el": round(1010000.0 + dpl, 2),
                        "uel": 1005353.88,
                        "mv": round(37910.0 + upl - 4600.0, 2),
                    }
                },
            }
        )


def ladder(topic: str, quote: Quote, levels: int = 5) -> bytes:
    """One sbd frame: ``levels`` ask rows, the focus (last price) row, ``levels`` bid rows."""
    rng = quote.rng
    tick = quote.tick
    d = quote.instrument.decimals
    rows: list[dict[str, Any]] = []
    row = 0
    for i in range(levels, 0, -1):
        rows.append(
            {
                "row": row,
                "focus": 0,
                "price": f"{quote.ask + (i - 1) * tick:.{d}f}",
                "ask": str(rng.randint(1, 2000)),
            }
        )
        row += 1
    rows.append({"row": row, "focus": 1, "price": f"{quote.last_size} @ {quote.last:.{d}f}"})
    row += 1
    for i in range(levels):
        rows.append(
            {
                "row": row,
                "focus": 0,
                "price": f"{quote.bid - i * tick:.{d}f}",
                "bid": str(rng.randint(1, 2000)),
            }
        )
        row += 1
    return dumps({"topic": topic, "data": rows})
