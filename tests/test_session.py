"""The session's rules, bare: no window, no TensorFlow, no files."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from guiapp.session import Session, SlotBusy


class FakeData:
    def __init__(self, path, n=10, hwc=(55, 47, 3)):
        self.path, self.n, self.hwc, self.closed = path, n, hwc, 0

    def close(self):
        self.closed += 1

    def expect(self, hwc):
        from engine.core.errors import PruneLabError

        if tuple(hwc) != self.hwc:
            raise PruneLabError(self.path, f"images are {self.hwc}, the model expects {hwc}")


def test_one_task_slot():
    s = Session()
    t = s.begin("sweep")
    assert s.busy
    with pytest.raises(SlotBusy, match="Busy with sweep"):
        s.begin("saving")
    s.end(t)
    s.end(t)  # a second end of the same task changes nothing
    assert not s.busy
    s.end(s.begin("saving"))


def test_a_running_task_owns_its_slots_and_frees_them_when_it_ends():
    s = Session()
    old = FakeData("cv.h5")
    s.put_dataset("clean_valid", old)
    s.put_dataset("clean_test", FakeData("ct.h5"))
    task = s.begin("sweep", roles=("clean_valid",))
    with pytest.raises(SlotBusy, match="sweep is reading the clean validation data"):
        s.put_dataset("clean_valid", FakeData("other.h5"))
    with pytest.raises(SlotBusy):
        s.clear_dataset("clean_valid")
    assert s.datasets["clean_valid"] is old and old.closed == 0
    s.clear_dataset("clean_test")  # not read by the task: free to change
    assert "clean_test" not in s.datasets
    s.end(task)
    new = FakeData("new.h5")
    s.put_dataset("clean_valid", new)
    assert old.closed == 1 and s.datasets["clean_valid"] is new


def test_a_replaced_dataset_is_closed_only_after_its_last_reader():
    s = Session()
    ds = FakeData("cv.h5")
    s.put_dataset("clean_valid", ds)
    s.hold(ds)  # e.g. a page of thumbnails being read
    s.clear_dataset("clean_valid")
    assert ds.closed == 0
    s.release(ds)
    assert ds.closed == 1


def test_the_result_covers_only_the_datasets_it_was_computed_on():
    s = Session()
    s.put_dataset("clean_valid", FakeData("cv.h5", n=3))
    s.set_result(SimpleNamespace(predictions={"clean_valid": np.zeros((2, 3))}, dataset_paths={"clean_valid": "cv.h5"},
                                 labels={"clean_valid": np.zeros(3)}))
    assert s.result_covers("clean_valid") and not s.result_covers("clean_test")
    s.put_dataset("clean_valid", FakeData("other.h5", n=3))
    assert not s.result_covers("clean_valid")


def test_a_new_model_drops_datasets_of_another_size_and_says_why():
    s = Session()
    s.put_dataset("clean_valid", FakeData("cv.h5"))
    small = FakeData("small.h5", hwc=(32, 32, 3))
    s.put_dataset("clean_test", small)
    model = SimpleNamespace(input_hwc=(55, 47, 3), input_files=lambda: ["m.h5"])
    dropped = s.set_model(model, "conv_3")
    assert [r for r, _ in dropped] == ["clean_test"] and "small.h5" in dropped[0][1]
    assert small.closed == 1 and set(s.datasets) == {"clean_valid"}
    assert [str(p) for p in s.inputs()] == ["m.h5", "cv.h5"]


def test_files_go_to_their_guessed_slot_else_the_first_empty_one():
    s = Session()
    assert s.role_for("poisoned_test") == "poisoned_test"
    assert s.role_for(None) == "clean_valid"
    for r in ("clean_valid", "poisoned_valid", "clean_test", "poisoned_test"):
        s.put_dataset(r, FakeData(f"{r}.h5"))
    assert s.role_for(None) is None


def test_dropped_files_are_routed_by_content_without_tensorflow(tmp_path):
    """What a drop opens is decided by the files' content (a lab dataset named .png is data, an
    image is a photo), off the GUI thread, and without importing TensorFlow."""
    import subprocess
    import sys

    from PIL import Image

    from tests.helpers import random_images, write_dataset

    rng = np.random.default_rng(0)
    data = write_dataset(tmp_path / "valid.h5", random_images(rng, 4), [0, 1, 2, 3])
    odd = write_dataset(tmp_path / "named_like_a_photo.png", random_images(rng, 2), [0, 1])
    Image.fromarray(random_images(rng, 1)[0]).save(tmp_path / "face.png")
    (tmp_path / "notes.h5").write_text("not HDF5")
    folder = tmp_path / "photos"
    folder.mkdir()
    code = ("import sys; from guiapp.tasks import route_files; from engine.core.state import JobState; "
            f"r = route_files({[str(p) for p in (data, odd, tmp_path / 'face.png', tmp_path / 'notes.h5', folder, tmp_path / 'gone.h5')]!r}, JobState()); "
            "print([p.name for p in r.data], [p.name for p in r.photos], [(p.name, w) for p, w in r.bad]); "
            "print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=str(Path(__file__).resolve().parents[1])).stdout.splitlines()
    assert out[0] == " ".join(map(str, (["valid.h5", "named_like_a_photo.png"], ["face.png", "photos"],
                                        [("notes.h5", "is neither a lab dataset nor a Keras model (.h5/.keras)"),
                                         ("gone.h5", "no such file")])))
    assert out[1] == "False"


def test_a_page_of_images_is_read_in_the_order_asked(tmp_path):
    from engine.io.datasets import LabDataset
    from engine.core.state import JobState
    from guiapp.tasks import read_page
    from tests.helpers import random_images, write_dataset

    imgs = random_images(np.random.default_rng(1), 6)
    with LabDataset(write_dataset(tmp_path / "d.h5", imgs, range(6))) as ds:
        page = read_page(ds, [4, 1, 5], JobState())
    assert page.indices == (4, 1, 5) and np.array_equal(page.images, imgs[[4, 1, 5]])
