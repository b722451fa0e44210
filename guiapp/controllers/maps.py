"""The maps commands of the window: Grad-CAM / channel maps on a page of thumbnails, B's and
B′'s maps of one image, the mean maps of the validation sets and every channel's mean activation
map. Mixed into :class:`guiapp.controller.Controller`, whose task runner and signals they use."""

from __future__ import annotations

from engine.core.vocabulary import primary_role
from guiapp import tasks
from guiapp.kinds import TaskKind


class MapsMixin:
    def _map_inputs(self, method: str):
        """(model, layer, channels) for maps, or None with a message why not."""
        from engine.analysis.maps import top_difference_channels

        s = self.session
        if s.model is None or s.result is None:
            self.message.emit("Maps need a finished sweep (they are drawn at the pruned layer)")
            return None
        channels = None
        if method == "channels":
            channels = top_difference_channels(s.result.mean_activation)
            if channels is None:
                self.message.emit("Channel maps need poisoned validation data (they show the trigger channels)")
                return None
        return s.model, s.result.layer, channels

    def page_maps(self, method: str, page) -> None:
        got = self._map_inputs(method)
        if got is not None:
            model, layer, ch = got
            makers = self.session.map_makers  # read here, in the window's thread, not in the worker's
            self.run(TaskKind.MAPS, lambda st: tasks.page_maps(makers, model, layer, method, ch, page, st),
                     on_return=self.mapsRead.emit, busy=f"Drawing {method} maps…")

    def image_maps(self, method: str, path: str, index: int, pixels) -> None:
        got = self._map_inputs(method)
        if got is not None:
            model, layer, ch = got
            res, step, makers = self.session.result, self.session.step, self.session.map_makers
            self.run(TaskKind.MAPS, lambda st: tasks.image_maps(makers, model, res, step, method, ch, path, index,
                                                                pixels, st),
                     on_return=self.imageMaps.emit, busy=f"Drawing the {method} maps of B and B′…")

    def mean_maps(self, method: str) -> None:
        got = self._map_inputs(method)
        s = self.session
        if got is None or "clean_valid" not in s.datasets:
            return
        model, layer, ch = got
        pr = primary_role(s.datasets, "poisoned_valid")  # several triggers: the first set's maps
        clean, poisoned = s.datasets["clean_valid"], s.datasets.get(pr) if pr else None
        roles = ("clean_valid", pr) if pr else ("clean_valid",)
        makers = s.map_makers  # read here, in the window's thread, not in the worker's
        self.run(TaskKind.MAPS, lambda st: tasks.mean_maps(makers, model, layer, method, ch, clean, poisoned, st),
                 roles=roles, on_return=self.meanMaps.emit, busy=f"Mean {method} maps over validation data…")

    def channel_maps(self) -> None:
        """Each channel's mean activation map on clean and poisoned validation (once per result)."""
        s = self.session
        if s.channel_maps is not None and s.channel_maps[0] is s.result:
            self.channelMaps.emit(s.channel_maps[1])
            return
        got = self._map_inputs("gradcam")
        if got is None:
            return
        model, layer, _ = got
        sets = {r: s.datasets[primary_role(s.datasets, r)] for r in ("clean_valid", "poisoned_valid")
                if primary_role(s.datasets, r)}
        res = s.result

        def done(maps):
            if s.model is model:  # a model opened meanwhile: these maps describe the old one
                s.channel_maps = (res, maps)
            self.channelMaps.emit(maps)

        self.run(TaskKind.MAPS, lambda st: tasks.channel_maps(model, layer, sets, st), roles=tuple(sets),
                 on_return=done, busy="Mean activation maps of every channel…")
