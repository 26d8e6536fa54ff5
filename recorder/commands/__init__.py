"""One module per CLI command; ``recorder.cli`` assembles them into the ``recorder`` group."""
