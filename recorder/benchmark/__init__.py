"""``scripts/bench``: what recording costs, against what receiving and parsing alone cost.

Prints one JSON object with the keys of SPEC §9 (and the figures that explain them):

- ``offline_frames_per_s``, ``offline_vs_parse``: the storage pipeline on the simulator's mix
  against ``orjson.loads`` of the same frames, side by side (:mod:`.offline`);
- ``e2e_vs_bare``: the recorder receiving from the simulator (own process, full speed, TLS on
  loopback) against a bare ``websockets`` loop on the same stream (:mod:`.e2e`);
- ``cpu_pct_at_2k``: the recorder process's CPU at a steady 2,000 frames/s;
- ``rss_mb_1h_equiv``: peak RSS, extrapolated to an hour at 2,000 frames/s (7.2M frames) from
  the slope of RSS against frames over the full-speed run (see ``rss_method``);
- ``bytes_per_frame``: every published Parquet file (all tables and raw) per frame.

``--quick`` is the 30-second smoke run ``scripts/test`` uses; its figures are rough.

This package imports nothing itself: the recorder's child process
(``python -m recorder.benchmark.children record``) must load what ``recorder record`` loads
and no more (the simulator and the report, imported here, added ~18 MB to its RSS). The entry
points are :func:`recorder.benchmark.report.run` and ``python -m recorder.benchmark``.
"""
