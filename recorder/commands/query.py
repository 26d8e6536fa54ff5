"""``recorder query|summary|compact|recover``: work on a recording folder (SPEC §6, §7)."""

from __future__ import annotations

import click


@click.command()
def query() -> None:
    """Run DuckDB SQL over a recording folder (not built yet)."""
    raise click.ClickException("recorder query is not built yet")


@click.command()
def summary() -> None:
    """Summarise a recording folder (not built yet)."""
    raise click.ClickException("recorder summary is not built yet")


@click.command()
def compact() -> None:
    """Merge a day's rotated files per table (not built yet)."""
    raise click.ClickException("recorder compact is not built yet")


@click.command()
def recover() -> None:
    """Publish what a killed run left in its journal (not built yet)."""
    raise click.ClickException("recorder recover is not built yet")
