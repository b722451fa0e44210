"""Pruning: the network cut at a layer (``graph``), the fast in-graph head (``runtime``), the rules
written once — zeroing, B′, G, labels in range (``rules``) — thresholds (``thresholds``), the
criteria (``criteria``, one module each and a registry), the exact sweep (``sweep``: its
``activations`` store, ``schedule`` and ``records``), every criterion's sweep (``rankings``) and
fine-pruning (``finetune``)."""
