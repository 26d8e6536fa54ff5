"""The README's benchmark section: the figures of one run, between the bench markers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"

ROWS = (
    ("offline_frames_per_s", "≥ 500,000", "{:,.0f}"),
    ("offline_vs_parse", "≤ 2.0", "{:.2f}"),
    ("e2e_vs_bare", "≥ 0.8", "{:.2f}"),
    ("cpu_pct_at_2k", "≤ 5", "{:.1f}"),
    ("rss_mb_1h_equiv", "≤ 200, flat", "{:.0f}"),
    ("bytes_per_frame", "report", "{:.1f}"),
)


def section(result: dict[str, Any], notes: dict[str, str] | None = None) -> str:
    """Markdown for the section: a table of key / target / measured / met, the machine."""
    verdicts = result.get("verdicts", {})
    m = result["machine"]
    lines = [
        f"Measured by `./scripts/bench` on {result['date']}: {m['cores']} cores, {m['cpu']}, "
        f"{m['memory_gb']} GB, Python {m['python']}, pyarrow {m['pyarrow']}.",
        "",
        "| key | target | measured | met? |",
        "|---|---|---|---|",
    ]
    for key, target, fmt in ROWS:
        value = fmt.format(result[key])
        if key == "rss_mb_1h_equiv":
            value += f" (slope {result['rss_mb_per_million_frames']:+.1f} MB per M frames)"
            met = verdicts.get(key, False) and verdicts.get("rss_flat", False)
        else:
            met = verdicts.get(key, True)
        lines.append(f"| `{key}` | {target} | {value} | {'yes' if met else '**no**'} |")
    lines += [
        "",
        f"Around them: a bare `orjson.loads` takes {result['parse_ns_per_frame']:.0f} ns a "
        f"frame, `normalize` {result['normalize_ns_per_frame']:.0f} ns, the whole pipeline "
        f"{result['pipeline_ns_per_frame']:.0f} ns; the recorder received "
        f"{result['e2e_frames_per_s']:,} frames/s from the simulator where a bare websockets "
        f"loop received {result['bare_frames_per_s']:,}, and the recorder with a storage that "
        f"drops every frame (its socket reader alone) {result['reader_only_frames_per_s']:,} "
        f"({result['reader_only_vs_bare']:.2f} of bare); {result['frames_lost']} of "
        f"{result['frames_sent']:,} frames sent were lost and "
        f"{result['frames_out_of_order']} out of order. At a steady 2,000 frames/s the bare "
        f"loop used {result['bare_cpu_pct_at_2k']:.1f}% of a core. Paced as a real gateway sends "
        f"market data, in one batch every {result['gateway_paced_grid_s']:g} s, the recorder used "
        f"{result['cpu_pct_at_2k_gateway_paced']:.1f}% and the bare loop "
        f"{result['bare_cpu_pct_at_2k_gateway_paced']:.1f}%.",
    ]
    if notes:
        lines += [""] + [f"- {text}" for text in notes.values()]
    return "\n".join(lines)


def write_readme(path: Path, result: dict[str, Any], notes: dict[str, str] | None = None) -> None:
    """Replace what is between the markers of ``path``; nothing else in it changes."""
    text = path.read_text()
    head, found, rest = text.partition(BEGIN)
    _, found_end, tail = rest.partition(END)
    if not found or not found_end:
        raise ValueError(f"{path} has no {BEGIN} … {END} section")
    path.write_text(f"{head}{BEGIN}\n{section(result, notes)}\n{END}{tail}")
