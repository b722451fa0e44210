"""The window's commands, one module per feature, around the one task runner (``Controller.run``):
the maps (a mixin of the main controller), the Scan and Repair tabs (QObjects with typed signals
that take the main controller for its task slot, its job bar and its error dialogs)."""
