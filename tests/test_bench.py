"""scripts/bench --quick: runs, prints one JSON object with every SPEC §9 key, sanely typed.

The figures are not asserted (they belong to the machine); their presence and types are, so
the benchmark cannot rot unnoticed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from recorder.benchmark.notes import notes
from recorder.benchmark.processes import Sample
from recorder.benchmark.readme import BEGIN, END, write_readme
from recorder.benchmark.report import fit_slope, rss_figures

ROOT = Path(__file__).resolve().parent.parent
SPEC_KEYS = {
    "offline_frames_per_s": int,
    "offline_vs_parse": float,
    "e2e_vs_bare": float,
    "cpu_pct_at_2k": float,
    "rss_mb_1h_equiv": float,
    "bytes_per_frame": float,
}


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("bench")
    done = subprocess.run(
        [sys.executable, "-m", "recorder.benchmark", "--quick", "--workdir", str(work)],
        cwd=ROOT, capture_output=True, text=True, timeout=90, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.mark.timeout(120)
def test_quick_prints_every_spec_key(quick: dict) -> None:
    for key, kind in SPEC_KEYS.items():
        assert isinstance(quick[key], int | float), key
        if kind is int:
            assert isinstance(quick[key], int), key
        assert quick[key] >= 0, key
    assert list(quick)[: len(SPEC_KEYS)] == list(SPEC_KEYS)


@pytest.mark.timeout(120)
def test_quick_extras_explain_the_figures(quick: dict) -> None:
    for key in ("parse_ns_per_frame", "pipeline_ns_per_frame", "e2e_frames_per_s",
                "bare_frames_per_s", "frames_sent", "cpu_pct_at_2k_gateway_paced",
                "bare_cpu_pct_at_2k_gateway_paced", "reader_only_frames_per_s",
                "reader_only_vs_bare", "columnar_parse_vs_parse", "columnar_parse_ns_per_frame"):
        assert quick[key] > 0, key
    assert isinstance(quick["frames_lost"], int)
    assert isinstance(quick["frames_out_of_order"], int)
    assert isinstance(quick["rss_flat"], bool)
    assert quick["rss_method"] and quick["e2e_method"] and quick["offline_method"]
    assert quick["reader_only_method"]
    assert quick["machine"]["cores"] >= 1 and quick["machine"]["python"]
    assert set(quick["verdicts"]) >= set(SPEC_KEYS) - {"bytes_per_frame"}
    assert quick["quick"] is True


def test_readme_section_replaces_only_between_markers(tmp_path: Path, quick: dict) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nbefore\n{BEGIN}\nold\n{END}\nafter\n")
    write_readme(readme, quick)
    text = readme.read_text()
    assert text.startswith("# title\n\nbefore\n" + BEGIN + "\n")
    assert text.endswith(END + "\nafter\n")
    assert "old" not in text and "| `offline_vs_parse` |" in text
    assert "in one batch every 0.5 s, the recorder used" in text


def test_the_notes_follow_the_run(tmp_path: Path, quick: dict) -> None:
    """``scripts/bench --readme`` writes the notes too, from the run's own figures and
    verdicts, so a rerun never leaves the README's notes behind its table."""
    readme = tmp_path / "README.md"
    readme.write_text(f"{BEGIN}\n{END}\n")
    met = {**quick, "verdicts": {**quick["verdicts"], "cpu_pct_at_2k": True}}
    write_readme(readme, met, notes(met))
    text = readme.read_text()
    assert "- `cpu_pct_at_2k` is met:" in text
    assert f"its socket reader alone reached {quick['reader_only_frames_per_s']:,} frames/s" in text
    assert f"{quick['columnar_parse_vs_parse']:.1f} times `orjson.loads`" in text
    failed = {**quick, "verdicts": {**quick["verdicts"], "cpu_pct_at_2k": False}}
    assert notes(failed)["cpu"].startswith("`cpu_pct_at_2k` is not met:")
    # what the reader-only run shows is said as it came out, either way
    slow = notes({**quick, "reader_only_vs_bare": 0.69})["e2e"]
    fast = notes({**quick, "reader_only_vs_bare": 0.92})["e2e"]
    assert "0.69 of bare. So even if storage cost nothing, one process would stay under" in slow
    assert "0.92 of bare. So the reader alone would meet 0.8 in this run; storage's" in fast


def test_slope_is_least_squares() -> None:
    assert fit_slope([(0, 1), (1, 3), (2, 5)]) == pytest.approx(2.0)
    assert fit_slope([(1, 7)]) == 0.0


def _rss(*mb: float) -> list[Sample]:
    return [Sample(t=i, frames_in=i * 500_000, cpu_s=0.0, rss_mb=m, queue=0)
            for i, m in enumerate(mb)]


def test_rss_is_flat_unless_it_grows() -> None:
    # 1 MB more per million frames (7 MB over the hour's 7.2M frames): flat
    steady = rss_figures(_rss(80, 150, 151, 150, 152, 152.5, 153, 153.5))
    assert steady["rss_flat"] and steady["rss_mb_per_million_frames"] == 1.0
    assert steady["rss_mb_1h_equiv"] == 153.5 + 1.0 * 3.7  # 3.7M frames still to go
    # 20 MB per million frames: a leak, projected over the hour
    leak = rss_figures(_rss(80, 150, 160, 170, 180, 190, 200, 210))
    assert not leak["rss_flat"] and leak["rss_mb_per_million_frames"] == 20.0
    assert leak["rss_mb_1h_equiv"] == 210 + 20 * 3.7
    # falling after a peak (a trim, a rotation): no growth, so flat, and the peak stands
    falling = rss_figures(_rss(80, 190, 185, 180, 175, 170, 160, 150))
    assert falling["rss_flat"] and falling["rss_mb_per_million_frames"] < -5
    assert falling["rss_mb_1h_equiv"] == 190
