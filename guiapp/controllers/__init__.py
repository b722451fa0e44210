"""The window's commands, one module per feature, around the one task runner (``Controller.run``)."""
