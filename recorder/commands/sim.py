"""``recorder sim``: run the simulated gateway in the foreground (SPEC §8)."""

from __future__ import annotations

import click


@click.command()
def sim() -> None:
    """Run the simulated Client Portal gateway (not built yet)."""
    raise click.ClickException("recorder sim is not built yet")
