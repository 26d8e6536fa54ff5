"""``recorder record``: record a trading day (SPEC §3, §4, §5).

The config is loaded, merged with the options and validated before anything connects; a bad
one exits 2 with one line naming the key. After that the command never exits because of the
gateway: it waits and retries until stopped by ``--duration``, ``--until``, SIGINT, SIGTERM or
SIGHUP, and then exits 0 once everything is published. A second such signal while it stops ends
it at once (exit 128 + the signal's number), as a kill -9 would: the journal keeps what was
received, and ``recorder recover`` (or the next ``record``) publishes it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from recorder.redact import RedactingFilter, Redactor

if TYPE_CHECKING:
    from recorder.config import Config
    from recorder.runner import RunSummary
    from recorder.status import StatusReporter

#: Signals that stop a recording cleanly (and, sent again while it stops, at once).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _BesideStatusLine(logging.StreamHandler):
    """Log lines on the terminal that shows the live status line: the line is cleared before
    a record and drawn again after it, so neither runs into the other."""

    def __init__(self, status: StatusReporter | None) -> None:
        super().__init__(sys.stderr)
        self.status = status

    def emit(self, record: logging.LogRecord) -> None:
        if self.status is None:
            super().emit(record)
            return
        try:
            self.status.clear()
            super().emit(record)
            self.status.redraw()
        except Exception:  # a log call must never raise into the recorder
            self.handleError(record)


def setup_logging(redactor: Redactor, quiet: bool, status: StatusReporter | None = None) -> None:
    handler = _BesideStatusLine(status)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    handler.addFilter(RedactingFilter(redactor))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING if quiet else logging.INFO)
    for noisy in ("websockets", "aiohttp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@click.command()
@click.argument("config_file", required=False, type=click.Path(path_type=Path))
@click.option("--gateway", metavar="URL",
              help="Gateway base URL [default: https://localhost:5000].")
@click.option("--out", type=click.Path(), help="Output folder [default: data].")
@click.option("--smd", multiple=True, metavar="CONID[,CONID…]",
              help="Quotes for these conids (CONID or CONID@EXCH), besides the config's; "
              "repeatable.")
@click.option("--fields", multiple=True, metavar="ID[,ID…]",
              help="Field ids for --smd [default: the 17 the README lists].")
@click.option("--smh", multiple=True, metavar="CONID:PERIOD:BAR[:SOURCE]",
              help="Historical bars, e.g. 265598:1d:1min:trades, besides the config's; "
              "repeatable.")
@click.option("--sbd", multiple=True, metavar="ACCT:CONID[:EXCH]",
              help="Depth of book, besides the config's; repeatable.")
@click.option("--orders", is_flag=True, help="Record order updates (sor).")
@click.option("--trades", is_flag=True, help="Record executions (str).")
@click.option("--pnl", is_flag=True, help="Record P&L (spl).")
@click.option("--duration", metavar="6.5h|90m|30s", help="Stop after this long.")
@click.option("--until", metavar="HH:MM", help="Stop at this time of day in output.timezone.")
@click.option("--cafile", type=click.Path(), metavar="PEM",
              help="Verify the gateway's certificate against this PEM.")
@click.option("--insecure", is_flag=True,
              help="Accept an unverified certificate, or plain http://, from a "
              "non-loopback gateway.")
@click.option("--quiet", is_flag=True, help="No live status line; warnings only.")
def record(
    config_file: Path | None,
    gateway: str | None,
    out: str | None,
    smd: tuple[str, ...],
    fields: tuple[str, ...],
    smh: tuple[str, ...],
    sbd: tuple[str, ...],
    orders: bool,
    trades: bool,
    pnl: bool,
    duration: str | None,
    until: str | None,
    cafile: str | None,
    insecure: bool,
    quiet: bool,
) -> None:
    """Record the gateway's streams to Parquet until --duration, --until or Ctrl-C.

    CONFIG_FILE is a TOML file (the README shows every key); the options override it.
    Without one, the defaults and the options are used. Exit 0 when stopped by time or
    signal; 1 when the output folder cannot be used (or storage failed and the stop left
    frames to `recorder recover`); 2 for a bad config. A second Ctrl-C
    while stopping exits at once; `recorder recover` then publishes what was journaled.
    """
    from recorder.config import CliOverrides, ConfigError, load_config
    from recorder.session import tls_context

    overrides = CliOverrides(
        gateway=gateway, out=out, smd=smd, fields=fields, smh=smh, sbd=sbd, orders=orders,
        trades=trades, pnl=pnl, duration=duration, until=until, cafile=cafile,
        insecure=insecure, quiet=quiet,
    )
    try:
        config = load_config(config_file, overrides)
        tls_context(config.gateway, "--cafile" if cafile is not None else "gateway.cafile")
        _check_out_dir(config.output.dir, "--out" if out is not None else "output.dir")
    except ConfigError as exc:
        click.echo(f"recorder: bad config: {exc}", err=True)
        sys.exit(2)
    _claim_demo_folder(config.output.dir)
    if not _subscribes(config):
        click.echo("recorder: warning: nothing to subscribe to (no smd, smh, sbd, orders, "
                   "trades or pnl in the config or the options); recording only what the "
                   "gateway sends unasked", err=True)

    # the heavy imports, once the config is known to be good
    from recorder.recover import FolderBusy
    from recorder.runner import OutputUnusable
    from recorder.status import StatusReporter

    redactor = Redactor()
    status = None if config.quiet else StatusReporter()
    setup_logging(redactor, config.quiet, status)
    try:
        summary = asyncio.run(_record(config, redactor, status))
    except (FolderBusy, OutputUnusable) as exc:
        click.echo(f"recorder: {exc}", err=True)
        sys.exit(1)
    try:
        click.echo(_summary_text(summary, config.output.dir), err=True)
    except OSError:  # the terminal is gone (SIGHUP); everything is published
        pass
    if summary.config_error is not None:
        click.echo(f"recorder: bad config: {summary.config_error}", err=True)
        sys.exit(2)
    if summary.abandoned:
        kept = ("what was received is in the journal" if not summary.not_journaled else
                f"{_frames(summary.not_journaled)} received could not be journaled and are "
                "lost; the rest is in the journal")
        click.echo(f"recorder: storage failed: {kept}, not the tables; once the disk is fixed, "
                   f"run `recorder recover {config.output.dir}`", err=True)
        sys.exit(1)


def _claim_demo_folder(out: Path) -> None:
    """A real recording into a folder ``recorder demo`` made: its mark goes, so that the next
    demo refuses the folder instead of deleting the recording with it."""
    from recorder.commands.demo import DEMO_MARK

    try:
        (out / DEMO_MARK).unlink(missing_ok=True)
    except OSError:
        pass  # not a folder we can write: recording says so, with the path


def _check_out_dir(path: Path, key: str) -> None:
    """The output folder, or the nearest part of its path that exists, must be a folder."""
    from recorder.config import ConfigError

    for part in (path, *path.parents):
        if part.exists():
            if not part.is_dir():
                raise ConfigError(key, f"{part} is a file, not a folder")
            return


def _subscribes(config: Config) -> bool:
    return bool(config.smd or config.smh or config.sbd or config.orders.enabled
                or config.trades.enabled or config.pnl.enabled)


async def _record(config: Config, redactor: Redactor,
                  status: StatusReporter | None) -> RunSummary:
    from recorder.runner import Recorder

    stop = asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        if not stop.is_set():
            stop.set()
            logging.getLogger(__name__).info(
                "%s: stopping; publishing can take a while on a busy day, a second %s exits "
                "at once and leaves the rest to `recorder recover`", sig.name, sig.name)
            return
        # asked twice: the stop is taking too long for the user (a gateway that does not
        # close, a hung disk); what was journaled stays for recovery, as after a kill -9
        if status is not None:
            status.clear()
        try:
            sys.stderr.write(
                f"recorder: second {sig.name} while stopping: exiting now, without publishing; "
                f"`recorder recover {config.output.dir}` (or the next record) publishes what "
                "the journal holds\n")
            sys.stderr.flush()
        finally:  # a terminal that is gone must not keep the process alive
            os._exit(128 + sig.value)

    loop = asyncio.get_running_loop()
    # SIGHUP too: a recording started over ssh must stop cleanly when the link drops
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)
    recorder = Recorder(config, redactor=redactor, status=status)
    try:
        return await recorder.run(stop)
    finally:
        if status is not None:
            status.finish()


def _summary_text(s: RunSummary, out: Path) -> str:
    topics = ", ".join(f"{k} {v:,}" for k, v in sorted(s.frames_by_topic.items()))
    stats = s.storage
    tables = ", ".join(f"{k} {v:,}" for k, v in sorted(stats.rows.items()) if v)
    lines = [
        f"recorded {s.seconds:.1f} s, stopped by {s.stopped_by or '?'}",
        f"  frames received: {s.frames_in:,}" + (f" ({topics})" if topics else ""),
        f"  rows {'normalized, not all published' if s.abandoned else 'written'}: "
        f"{tables or 'none'}",
        f"  files published: {stats.files_published} in {out}",
        f"  connections: {s.connects}, reconnects: {s.reconnects}",
    ]
    if stats.full_waits:
        lines.append(f"  storage fell behind: {stats.full_waits:,} time(s) a frame waited for"
                     " room in its queue and reading paused"
                     + ("" if s.not_journaled else "; none was lost"))
    if s.not_journaled:
        lines.append(f"  lost: {_frames(s.not_journaled)} received, never journaled: storage "
                     "failed before it could write them")
    return "\n".join(lines)


def _frames(n: int) -> str:
    return f"{n:,} frame" + ("" if n == 1 else "s")
