"""The image browser's commands: open extra images (files or folders) with B's, B′'s and G's
verdicts on them, and read a page of thumbnails of any set. Mixed into
:class:`guiapp.controller.Controller`, whose task runner, session and signals they use."""

from __future__ import annotations

from guiapp import tasks
from guiapp.kinds import TaskKind


class PhotosMixin:
    def open_photos(self, paths) -> None:
        """Images (files or folders) as the browser's extra set, with B's, B′'s and G's verdicts."""
        m = self.session.model
        hwc, resize = (m.input_hwc if m is not None else None), self.session.resize

        def opened(ds):
            self.session.set_photos(ds)
            self.message.emit(f"Images: {ds.n:,} from {ds.path}")
            self.photosOpened.emit(ds)
            self.photo_verdicts(self.session.step)
            self._arrived()

        self.run(TaskKind.OPENING_IMAGES, lambda st: tasks.open_photos(list(paths), hwc, resize, st), light=True,
                 on_return=opened, on_error=lambda e: self._arrived())

    def photo_verdicts(self, step: int) -> None:
        """B's answers for the photos, and B′'s and G's at ``step`` once a sweep has finished."""
        s = self.session
        ds, model, res = s.photos, s.model, s.result
        if ds is None or model is None:
            return
        want = (str(ds.path), step if res is not None else None)
        v = s.photo_verdicts
        if (v is not None and (v.dataset_path, v.step) == want) or self._judging == want:
            return

        def arrived(verdicts):
            if s.photos is ds:
                s.photo_verdicts = verdicts
                self.photoVerdicts.emit(verdicts)

        # in the task slot: a naive sweep zeroes the model's weights in place while it runs
        w = self.run(TaskKind.JUDGING_IMAGES, lambda st: tasks.photo_verdicts(model, res, step, ds, st),
                     on_return=arrived, busy="B, B′ and G judge the images…")
        if w is not None:
            self._judging = want
            s.hold(ds)
            w.finished.connect(lambda: (s.release(ds), setattr(self, "_judging", None)))

    def read_page(self, role: str, indices) -> None:
        ds = self.session.photos if role == "photos" else self.session.datasets.get(role)
        if ds is None:
            return
        self.session.hold(ds)
        w = self.run(TaskKind.READING_IMAGES, lambda st: tasks.read_page(ds, indices, st), light=True,
                     on_return=self.pageRead.emit)
        w.finished.connect(lambda: self.session.release(ds))
