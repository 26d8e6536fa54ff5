"""``python -m recorder.benchmark [--quick] [--workdir DIR] [--readme FILE]``."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import orjson

from recorder.benchmark.notes import notes
from recorder.benchmark.readme import write_readme
from recorder.benchmark.report import DEFAULT, QUICK, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a 30-second smoke run")
    parser.add_argument("--workdir", type=Path, help="where recordings go (default: a temp dir)")
    parser.add_argument("--readme", type=Path,
                        help="also write the figures between the bench markers of this file")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else DEFAULT
    with tempfile.TemporaryDirectory(prefix="recorder-bench-") as tmp:
        result = run(plan, args.workdir or Path(tmp))
    sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    if args.readme:
        write_readme(args.readme, result, notes(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
