"""The README tells the truth: its table reference is the schemas', its cookbook runs."""

from __future__ import annotations

import re
from pathlib import Path

from recorder.schema import markdown_reference

README = Path(__file__).resolve().parent.parent / "README.md"


def section(name: str) -> str:
    match = re.search(rf"<!-- {name}:begin -->\n(.*?)<!-- {name}:end -->", README.read_text(), re.S)
    assert match, f"README.md lost its {name} markers"
    return match.group(1)


def cookbook_queries() -> list[str]:
    text = README.read_text().split("### Cookbook", 1)[1].split("###", 1)[0]
    block = re.search(r"```sql\n(.*?)```", text, re.S)
    assert block
    return [q.strip() for q in block.group(1).split(";") if q.strip()]


def test_table_reference_is_generated_from_schemas() -> None:
    assert section("tables").strip() == markdown_reference().strip(), (
        "run: .venv/bin/python scripts/readme.py")


def test_quickstart_has_exactly_the_two_commands() -> None:
    quick = README.read_text().split("## Quickstart", 1)[1].split("##", 1)[0]
    commands = re.search(r"```\n(.*?)```", quick, re.S)
    assert commands
    assert [line.split()[0] for line in commands.group(1).splitlines()] == [
        "./scripts/demo", "./scripts/test"]


def test_cookbook_has_queries() -> None:
    assert len(cookbook_queries()) >= 5


def test_cookbook_queries_run_on_a_recording(tmp_path: Path) -> None:
    from storage_frames import real_frames

    import recorder
    from recorder.storage import Pipeline

    pipe = Pipeline(tmp_path, timezone="America/New_York")
    pipe.write(real_frames(500))
    pipe.close()
    con = recorder.open(tmp_path)
    for query in cookbook_queries():
        con.sql(query).fetchall()  # raises on any error in the README's SQL
    [(quotes,)] = con.sql("SELECT count(*) FROM quotes").fetchall()
    assert quotes > 0
