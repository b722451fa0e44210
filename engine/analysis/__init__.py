"""What a model does, computed — no files, figures or argparse here: backdoor maps (``maps``,
sampled and cached means in ``meanmaps``), triggers and the one stamping rule (``trigger``), the
blind scan (``scan``, its results and statistics in ``scanresult``), unlearning (``unlearn``),
the detectors — trigger filter, STRIP (``detectors``) — and the repair job (``repair``; its records in
``repairresult``, its comparison rows in ``repairrows``)."""
