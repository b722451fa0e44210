"""Everything written to disk for a user: tables and figures (``figures``, ``maps``, ``compare``),
the output folders of a sweep or fine-tuning run (``outputs``), of a scan (``scan``) and of the
repairs (``repair``), and the standalone G eval scripts (``evalscript``, which also saves G)."""
