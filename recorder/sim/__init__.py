"""The simulated IBKR Client Portal gateway (SPEC §8): the fixture of every end-to-end test.

Public face::

    from recorder.sim import SimGateway, SimOptions
    async with SimGateway(SimOptions(seed=1, tls=True)) as gw:
        gw.url, gw.ws_url, gw.cafile, gw.session_id, gw.stats, gw.sent, gw.received

Modules: ``options`` (SimOptions, traffic records, counters), ``encode`` (pure frame encoders),
``market`` (deterministic quotes and value encodings), ``history`` (smh answers), ``account``
(sor/str/spl/sbd), ``protocol`` (client message parsing), ``rest`` (auth states and REST
bodies), ``cert`` (self-signed certificate), ``load`` (pre-built frames for rate/burst),
``server``/``websocket``/``routes``/``connection`` (the aiohttp driver).
"""

from recorder.sim.options import ReceivedFrame, SentFrame, SimOptions, SimStats
from recorder.sim.server import SimGateway

__all__ = ["ReceivedFrame", "SentFrame", "SimGateway", "SimOptions", "SimStats"]
