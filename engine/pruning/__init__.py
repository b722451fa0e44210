"""Pruning: the network cut at a layer (``graph``), the fast in-graph head (``runtime``), the rules
written once — zeroing, B′, G, labels (``rules``) — thresholds (``thresholds``), the pruning
criteria (``criteria``), the exact sweep (``sweep``) and fine-pruning (``finetune``)."""
