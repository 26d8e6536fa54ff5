"""``recorder demo``: the simulator, a short recording of every topic, a summary, two queries.

Needs no gateway and no account: the simulated gateway runs in-process on a free loopback
port with a fresh self-signed certificate, and the real recorder records it.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import click

DEMO_MARK = ".recorder-demo"

OHLC_SQL = """\
SELECT conid, time_bucket(INTERVAL 1 minute, recv_ts) AS minute,
       first(last ORDER BY recv_ts) AS open, max(last) AS high,
       min(last) AS low, last(last ORDER BY recv_ts) AS close, count(*) AS updates
FROM quotes WHERE last IS NOT NULL AND last_is_close IS NOT TRUE
GROUP BY ALL ORDER BY conid, minute"""

SPREAD_SQL = """\
SELECT conid, any_value(symbol) AS symbol, count(*) AS quotes,
       round(avg(ask - bid), 4) AS avg_spread, round(max(ask - bid), 4) AS max_spread
FROM quotes WHERE bid IS NOT NULL AND ask IS NOT NULL
GROUP BY conid ORDER BY conid"""


def _prepare(out: Path) -> None:
    """Make ``out`` an empty demo folder. An earlier demo's folder is replaced; anything else
    is refused: a folder without the mark (``recorder record`` removes it when it records
    into a demo folder), or one a recorder is using now."""
    from recorder.recover import FolderLock

    if out.exists() and not out.is_dir():
        raise click.ClickException(f"{out} is a file, not a folder; choose --out DIR")
    try:
        if out.exists() and any(out.iterdir()):
            if not (out / DEMO_MARK).exists():
                raise click.ClickException(
                    f"{out} already holds files that are not a demo recording; choose --out DIR")
            if FolderLock(out).held_elsewhere():
                raise click.ClickException(f"{out} is in use by a recorder process; choose "
                                           "--out DIR")
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / DEMO_MARK).write_text("made by recorder demo; safe to delete\n")
    except OSError as exc:
        raise click.ClickException(f"cannot write {out}: {exc.strerror or exc}") from None


def _finite(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if value != value:  # NaN passes FloatRange's comparisons
        raise click.BadParameter(f"must be a number of seconds, got {value}")
    return value


@click.command()
@click.option("--seconds", default=20.0, show_default=True,
              type=click.FloatRange(min=1, max=3600), callback=_finite,
              help="How long to record (1 to 3600).")
@click.option("--out", default=Path("demo-data"), show_default=True,
              type=click.Path(path_type=Path), help="Where to write the recording (replaced if it "
              "holds an earlier demo).")
def demo(seconds: float, out: Path) -> None:
    """Start the simulator on a free port, record every topic, print a summary and queries."""
    _prepare(out)
    summary = asyncio.run(_run(seconds, out))
    click.echo(summary)
    click.echo(_report(out))


async def _run(seconds: float, out: Path) -> str:
    import logging

    from recorder.commands.record import _record, _summary_text, setup_logging
    from recorder.config import (
        Config,
        GatewayConfig,
        OrdersConfig,
        OutputConfig,
        PnlConfig,
        SbdRequest,
        SessionConfig,
        SmdGroup,
        SmhRequest,
        TradesConfig,
    )
    from recorder.redact import Redactor
    from recorder.sim import SimGateway, SimOptions
    from recorder.status import StatusReporter

    redactor = Redactor()
    setup_logging(redactor, quiet=True)
    logging.getLogger("recorder").setLevel(logging.WARNING)
    async with SimGateway(SimOptions(seed=42, hb_interval=10.0, update_interval=0.5)) as gw:
        click.echo(f"simulated gateway on {gw.url} (self-signed TLS); recording {seconds:g} s "
                   f"into {out}/", err=True)
        config = Config(
            gateway=GatewayConfig(url=gw.url, cafile=gw.cafile or ""),
            output=OutputConfig(dir=out, timezone="America/New_York", rotate_seconds=300.0,
                                flush_seconds=1.0),
            session=SessionConfig(),
            smd=(SmdGroup(conids=("265598", "8314@NYSE", "756733")),),
            smh=(SmhRequest(conid=265598, period="1d", bar="1min"),
                 SmhRequest(conid=8314, period="1d", bar="5min")),
            sbd=(SbdRequest(account="DU1234567", conid=265598),),
            orders=OrdersConfig(enabled=True),
            trades=TradesConfig(enabled=True),
            pnl=PnlConfig(enabled=True),
            duration_seconds=seconds,
        )
        # as `recorder record` runs: Ctrl-C (or SIGTERM, SIGHUP) stops and publishes
        summary = await _record(config, redactor, StatusReporter())
    return _summary_text(summary, out)


def _report(out: Path) -> str:
    from recorder.summary import summarize, to_text
    from recorder.views import open_views

    lines = ["", to_text(summarize(out)), ""]
    con = open_views(out)
    for title, sql in (("1-minute OHLC per conid, from quotes", OHLC_SQL),
                       ("Spread per conid", SPREAD_SQL)):
        lines += [f"-- {title}", f"recorder query {out} \"{' '.join(sql.split())}\"", ""]
        lines.append(str(con.sql(sql)))
    lines.append(f"Open it in a notebook: import recorder; con = recorder.open({str(out)!r})")
    return "\n".join(lines)
