"""The normalizer's parts: :mod:`.rows` (shared row building), :mod:`.market_data` (smd) and
:mod:`.topics` (every data topic's handler). The public face is :mod:`recorder.normalizer`."""
