"""The session's rules, bare: no window, no TensorFlow, no files."""

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
        from engine.errors import PruneLabError

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
    assert s.role_for("x.h5", "poisoned_test") == "poisoned_test"
    assert s.role_for("x.h5", None) == "clean_valid"
    for r in ("clean_valid", "poisoned_valid", "clean_test", "poisoned_test"):
        s.put_dataset(r, FakeData(f"{r}.h5"))
    assert s.role_for("x.h5", None) is None
