"""Opening models safely: ``loading.load_model`` (Keras 2 legacy ``.h5``, weights + the lab's
DeepID, ``.keras``) returning a ``LoadedModel``; its input convention (``scale``); the one rule for
its logits (``logits``); plain runs of a model on numpy batches (``runner``); the config checks
that keep untrusted files from running code (``safety``), the lab's DeepID (``deepid``) and the
Keras-2 file writer the demo and tests use (``legacy_h5``)."""
