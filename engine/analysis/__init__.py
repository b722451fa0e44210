"""What a model does, computed — no files, figures or argparse here: backdoor maps (``maps``),
triggers and the one stamping rule (``trigger``)."""
