"""The one worker class, with plain tasks (no TensorFlow): values, errors, pause, cancel."""

import threading

import pytest

from engine.core.errors import PruneLabError, warn
from guiapp.worker import Worker


def run(qtbot, task):
    w = Worker(task, "test")
    got = {"yielded": [], "returned": [], "errored": [], "aborted": 0, "warned": []}
    w.yielded.connect(got["yielded"].append)
    w.returned.connect(got["returned"].append)
    w.errored.connect(got["errored"].append)
    w.warned.connect(lambda m: got["warned"].append(str(m)))
    w.aborted.connect(lambda: got.__setitem__("aborted", got["aborted"] + 1))
    return w, got


def test_values_stream_in_order_and_the_return_value_arrives(qtbot):
    def task(state):
        for i in range(5):
            yield i
        return "done"

    w, got = run(qtbot, task)
    with qtbot.waitSignal(w.finished, timeout=5000):
        w.start()
    assert got["yielded"] == [0, 1, 2, 3, 4] and got["returned"] == ["done"] and not got["errored"]


def test_errors_arrive_as_exception_objects(qtbot):
    def task(state):
        yield 1
        raise PruneLabError("bad.h5", "is broken")

    w, got = run(qtbot, task)
    with qtbot.waitSignal(w.finished, timeout=5000):
        w.start()
    (e,) = got["errored"]
    assert isinstance(e, PruneLabError) and e.path == "bad.h5" and not got["returned"]


def test_warnings_reach_the_window(qtbot):
    def task(state):
        warn("odd.h5", "labels look odd")
        return 3

    w, got = run(qtbot, task)
    with qtbot.waitSignal(w.finished, timeout=5000):
        w.start()
    assert got["warned"] == ["odd.h5: labels look odd"] and got["returned"] == [3]


def test_cancel_aborts_between_values(qtbot):
    release = threading.Event()

    def task(state):
        yield "first"
        release.wait(5)
        yield "second"
        yield "never"

    w, got = run(qtbot, task)
    w.yielded.connect(lambda v: (w.cancel(), release.set()) if v == "first" else None)
    with qtbot.waitSignal(w.finished, timeout=5000):
        w.start()
    assert got["aborted"] == 1 and not got["returned"] and "never" not in got["yielded"]


def test_paused_is_said_only_once_the_job_has_stopped(qtbot):
    inside, reached = threading.Event(), threading.Event()
    progress = []

    def task(state):
        for i in range(3):
            progress.append(i)
            if i == 1:
                inside.set()
                reached.wait(5)  # the job is busy when the user presses Pause
            yield i
        return "end"

    w, got = run(qtbot, task)
    paused = []
    w.paused.connect(lambda: paused.append(list(progress)))
    w.start()
    qtbot.waitUntil(inside.is_set, timeout=5000)
    w.pause()
    qtbot.wait(200)
    assert w.pause_requested and not paused and not w.is_paused  # asked, but still working
    reached.set()
    qtbot.waitUntil(lambda: w.is_paused, timeout=5000)
    assert paused == [[0, 1]]  # stopped after value 1, before value 2 was computed
    with qtbot.waitSignal(w.finished, timeout=5000):
        with qtbot.waitSignal(w.resumed, timeout=5000):
            w.resume()
    assert got["yielded"] == [0, 1, 2] and got["returned"] == ["end"]


def test_a_plain_function_task_returns_its_value(qtbot):
    w, got = run(qtbot, lambda state: 42)
    with qtbot.waitSignal(w.finished, timeout=5000):
        w.start()
    assert got["returned"] == [42] and got["yielded"] == []


@pytest.mark.parametrize("exc, text", [(MemoryError(), "out of memory"),
                                       (RuntimeError("a\nbug"), "internal error (RuntimeError: a bug)"),
                                       (PruneLabError("x.h5", "is broken"), "x.h5: is broken")])
def test_the_controller_words_any_failure_in_one_line(exc, text):
    from guiapp.controller import describe_error

    assert describe_error(exc) == text


def test_a_cancelled_job_lets_the_gui_thread_wait_for_its_thread(qtbot):
    """wait() from a GUI thread that processes no events must return (closing the window)."""
    started = threading.Event()

    def task(state):
        started.set()
        while True:
            state.cancel_point()
            yield None

    w = Worker(task, "endless")
    w.start()
    assert started.wait(5)
    w.cancel()
    assert w.wait(3000)  # no processEvents() in between


def test_warnings_of_two_threads_reach_their_own_worker(qtbot):
    gate = threading.Barrier(2, timeout=5)

    def task(name):
        def run(state):
            gate.wait()
            warn(f"{name}.h5", "odd")
            gate.wait()
            return name
        return run

    got = {"a": [], "b": []}
    workers = []
    for name in ("a", "b"):
        w = Worker(task(name), name)
        w.warned.connect(lambda m, name=name: got[name].append(str(m)))
        workers.append(w)
    with qtbot.waitSignals([w.finished for w in workers], timeout=10000):
        for w in workers:
            w.start()
    assert got == {"a": ["a.h5: odd"], "b": ["b.h5: odd"]}
