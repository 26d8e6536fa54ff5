"""The ``recorder`` command line: one group, one module per command in ``recorder.commands``.

Heavy libraries (pyarrow, duckdb, aiohttp) are imported inside the commands, so ``--help`` and
a bad option answer at once.
"""

from __future__ import annotations

import click

from recorder import __version__
from recorder.commands.demo import demo
from recorder.commands.query import compact, query, recover, summary
from recorder.commands.record import record
from recorder.commands.sim import sim


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="recorder")
def cli() -> None:
    """Record the IBKR Client Portal websocket to Parquet, and query what was recorded.

    \b
    Typical day:
      recorder record day.toml          # from before the open until the close
      recorder summary data             # what was recorded, gaps, reconnects
      recorder query data "SELECT …"    # DuckDB SQL over the tables
    """


for command in (record, sim, demo, query, summary, compact, recover):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="recorder")
