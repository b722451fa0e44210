"""The window's commands, one module per feature, around the one task runner (``Controller.run``):
the sweep, the image browser's photos and pages, the maps, fine-tuning and saving (mixins of the
main controller, whose signals and session they use), the Scan and Repair tabs (QObjects with
typed signals that take the main controller for its task slot, its job bar and its error dialogs)."""
