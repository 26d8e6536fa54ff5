"""``recorder record``: record a trading day (SPEC §3, §4, §5)."""

from __future__ import annotations

import click


@click.command()
def record() -> None:
    """Record the gateway's streams to Parquet (not built yet)."""
    raise click.ClickException("recorder record is not built yet")
