"""Controllers of the Scan and Repair tabs (and the maps' part of the main controller): QObjects
with typed signals that start their tasks through the main :class:`guiapp.controller.Controller`
(its one task slot, its job bar and its error dialogs). No widgets, no math."""
