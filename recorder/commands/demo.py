"""``recorder demo``: the simulator, a short recording, a summary and two queries."""

from __future__ import annotations

import click


@click.command()
def demo() -> None:
    """Start the simulator, record every topic, print a summary (not built yet)."""
    raise click.ClickException("recorder demo is not built yet")
