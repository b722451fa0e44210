"""One place that imports TensorFlow/Keras, quietly and with sane thread settings.

Everything else calls :func:`keras` or :func:`tf` inside functions, never at module level,
so importing the engine (and starting the GUI) does not pay TensorFlow's start-up cost.
"""

from __future__ import annotations

import os
import sys
import threading

_lock = threading.Lock()
_done = False


def _limit_malloc_arenas() -> None:
    """glibc gives every thread that allocates its own malloc arena; TensorFlow's thread
    pools then keep freed buffers in many arenas and the peak RSS grows by ~100 MB at real
    scale. Two arenas are plenty for PruneLab (same effect as MALLOC_ARENA_MAX=2)."""
    if not sys.platform.startswith("linux") or os.environ.get("MALLOC_ARENA_MAX"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-8, 2)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass


def release_free_memory() -> None:
    """Give freed heap pages back to the OS (glibc), e.g. after the activation pass."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _configure_env() -> None:
    _limit_malloc_arenas()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")


def tf():
    """Import and return ``tensorflow`` configured for PruneLab."""
    global _done
    with _lock:
        _configure_env()
        import tensorflow as _tf

        if not _done:
            _done = True
            try:
                import logging

                logging.getLogger("absl").setLevel(logging.ERROR)  # e.g. "HDF5 is legacy" on .h5 saves
                _tf.get_logger().setLevel("ERROR")
                threads = int(os.environ.get("PRUNELAB_THREADS", "0"))
                if threads > 0:
                    _tf.config.threading.set_intra_op_parallelism_threads(threads)
                    _tf.config.threading.set_inter_op_parallelism_threads(1)
            except RuntimeError:
                pass  # TensorFlow was already initialised by the host program
        return _tf


def keras():
    """Import and return ``keras`` (3.x, TensorFlow backend)."""
    tf()
    import keras as _keras

    return _keras


def versions() -> dict[str, str]:
    return {"tensorflow": tf().__version__, "keras": keras().__version__}


_silenced = False


def silence_native_logs() -> None:
    """Send TensorFlow's C++ log lines (written straight to file descriptor 2, whatever
    TF_CPP_MIN_LOG_LEVEL says in TF 2.21) to /dev/null, while Python's ``sys.stderr``
    keeps writing to the real terminal. ``PRUNELAB_DEBUG=1`` keeps everything."""
    global _silenced
    import sys

    if _silenced or os.environ.get("PRUNELAB_DEBUG"):
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        sys.stderr = os.fdopen(saved, "w", buffering=1, encoding=getattr(sys.stderr, "encoding", None) or "utf-8",
                               errors="backslashreplace")
        _silenced = True
    except (OSError, ValueError, AttributeError):
        pass
