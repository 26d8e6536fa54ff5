"""Deterministic market data for the simulator: quotes that move, encoded the way IBKR shows them.

A :class:`Market` is pure: it is seeded once, and :meth:`Market.step` (called once per update
tick by the driver) moves every known instrument with its own ``random.Random``, so the same
seed and the same sequence of calls give the same values. It never reads a clock.

Encodings (behaviours.md §5): prices are strings at the instrument's precision; ``31`` carries a
``C`` prefix until the instrument trades (``38708077`` stays frozen, ``6509:"ZB"``, with
``"84":""``/``"88":""``); sizes ``85``/``88``/``7059`` are strings with comma thousands;
``87`` is ``"10.2K"``/``"12.2M"`` with ``87_raw`` a JSON number; ``83`` is a JSON number;
``8595`` is unusable (``"55":"-"``, ``"31":"N/A"``, no ``6509``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

from recorder.sim.encode import FieldValue

SERVICE_PARAMS: Final = (
    "&serviceID1=122&serviceID2=123&serviceID3=203&serviceID4=775"
    "&serviceID5=204&serviceID6=206&serviceID7=108&serviceID8=109"
)
DEFAULT_FIELDS: Final = ("31", "84", "86")
UNUSABLE_CONID: Final = 8595
FROZEN_CONID: Final = 38708077


@dataclass(frozen=True)
class Instrument:
    conid: int
    symbol: str
    name: str
    price: float
    decimals: int = 2
    availability: str = "DPB"
    sec_type: str = "STK"
    exchange: str = "NASDAQ"


KNOWN: Final = {
    i.conid: i
    for i in (
        Instrument(265598, "AAPL", "APPLE INC", 271.67),
        Instrument(272093, "MSFT", "MICROSOFT CORP", 417.89),
        Instrument(3691937, "AMZN", "AMAZON.COM INC", 272.50),
        Instrument(208813720, "GOOGL", "ALPHABET INC-CL A", 375.01),
        Instrument(107113386, "META", "META PLATFORMS INC-CLASS A", 606.14),
        Instrument(4815747, "NVDA", "NVIDIA CORP", 210.79),
        Instrument(76792991, "TSLA", "TESLA INC", 373.21),
        Instrument(8314, "IBM", "INTL BUSINESS MACHINES CORP", 241.30, exchange="NYSE"),
        Instrument(80268543, "RPB", "SIM 3DP INSTRUMENT", 64.800, decimals=3, availability="RPB"),
        Instrument(
            FROZEN_CONID,
            "ZB",
            "US TREASURY BOND FUT",
            4735.10,
            availability="ZB",
            sec_type="FUT",
            exchange="CBOT",
        ),
        Instrument(UNUSABLE_CONID, "-", "", 0.0),
    )
}


def format_size(n: int) -> str:
    """``1236`` -> ``"1,236"``."""
    return f"{n:,}"


def format_volume(v: int) -> str:
    """``10200`` -> ``"10.2K"``, ``12200000`` -> ``"12.2M"``, below 1000 plain digits."""
    if v >= 1_000_000:
        return f"{v / 1_000_000:.1f}M"
    if v >= 1_000:
        return f"{v / 1_000:.1f}K"
    return str(v)


class Quote:
    """The current state of one instrument (mutated only by :meth:`Market.step`)."""

    def __init__(self, instrument: Instrument, rng: random.Random) -> None:
        self.instrument = instrument
        self.rng = rng
        tick = 10**-instrument.decimals
        self.tick = tick
        self.prior_close = round(
            instrument.price * (1 - rng.uniform(-0.01, 0.01)), instrument.decimals
        )
        self.last = instrument.price
        self.bid = round(self.last - tick * rng.randint(1, 5), instrument.decimals)
        self.ask = round(self.last + tick * rng.randint(1, 5), instrument.decimals)
        self.bid_size = rng.randint(1, 3000)
        self.ask_size = rng.randint(1, 3000)
        self.last_size = rng.randint(1, 500)
        self.volume = rng.randint(5_000, 30_000_000)
        self.open = self.prior_close
        self.high = max(self.last, self.open)
        self.low = min(self.last, self.open)
        self.traded = instrument.conid != FROZEN_CONID
        self.service_params_due = False

    def _px(self, value: float) -> str:
        return f"{value:.{self.instrument.decimals}f}"

    def fields(self) -> dict[str, FieldValue]:
        """Every field this instrument can show now, encoded as on the wire."""
        inst = self.instrument
        if inst.conid == UNUSABLE_CONID:
            return {"55": "-", "31": "N/A"}
        last = self._px(self.last)
        change = self.last - self.prior_close
        out: dict[str, FieldValue] = {
            "6509": inst.availability,
            "31": last if self.traded else "C" + last,
            "55": inst.symbol,
            "7051": inst.name,
            "6070": inst.sec_type,
            "6004": inst.exchange,
            "7741": self._px(self.prior_close),
            "7295": self._px(self.open),
            "7296": "",
        }
        if inst.conid == FROZEN_CONID:  # frozen futures: no book, no trades today
            out.update({"84": "", "88": "", "86": "", "85": ""})
            return out
        out.update(
            {
                "84": self._px(self.bid),
                "86": self._px(self.ask),
                "88": format_size(self.bid_size),
                "85": format_size(self.ask_size),
                "7059": format_size(self.last_size),
                "87": format_volume(self.volume),
                "87_raw": float(self.volume),
                "7762": str(self.volume),
                "70": self._px(self.high),
                "71": self._px(self.low),
                "82": self._px(change),
                "83": round(change / self.prior_close * 100, 2) if self.prior_close else 0.0,
                "7635": self._px(min(max(self.last, self.bid), self.ask)),
            }
        )
        return out

    def step(self) -> None:
        rng = self.rng
        self.service_params_due = rng.random() < 0.08
        inst = self.instrument
        if inst.conid in (UNUSABLE_CONID, FROZEN_CONID) or rng.random() < 0.35:
            return
        d = inst.decimals
        mid = (self.bid + self.ask) / 2 + self.tick * rng.randint(-3, 3)
        spread = self.tick * rng.randint(1, 4)
        self.bid = round(max(self.tick, mid - spread / 2), d)
        self.ask = round(max(self.bid + self.tick, mid + spread / 2), d)
        if rng.random() < 0.5:
            self.bid_size = rng.randint(1, 3000)
            self.ask_size = rng.randint(1, 3000)
        if rng.random() < 0.5:
            self.traded = True
            self.last = self.bid if rng.random() < 0.5 else self.ask
            self.last_size = rng.randint(1, 500)
            self.volume += self.last_size * 100
            self.high = max(self.high, self.last)
            self.low = min(self.low, self.last)


def requested_fields(
    quote_fields: dict[str, FieldValue], fields: tuple[str, ...]
) -> list[tuple[str, FieldValue]]:
    """The requested fields this quote has, in request order; ``87`` brings ``87_raw``."""
    out: list[tuple[str, FieldValue]] = []
    for f in fields:
        if f in quote_fields:
            out.append((f, quote_fields[f]))
            if f == "87" and "87_raw" in quote_fields:
                out.append(("87_raw", quote_fields["87_raw"]))
    return out


class Market:
    """Every instrument the gateway has been asked about, moving deterministically from ``seed``."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._quotes: dict[int, Quote] = {}

    def quote(self, conid: int) -> Quote:
        """The quote of ``conid``, created on first use (unknown conids get a made-up stock)."""
        q = self._quotes.get(conid)
        if q is None:
            rng = random.Random(f"{self.seed}:{conid}")
            inst = KNOWN.get(conid) or Instrument(
                conid, f"SIM{conid % 10000}", f"SIMULATED {conid}", round(rng.uniform(10, 500), 2)
            )
            q = self._quotes[conid] = Quote(inst, rng)
        return q

    def step(self, conids: set[int]) -> None:
        """Advance the given instruments one update tick, in conid order (deterministic)."""
        for conid in sorted(conids):
            self.quote(conid).step()
