"""``G_<t>_eval.py``: the CSAW-HackML submission form, written next to every saved G.

The challenge judged each team by one command — a PNG/JPEG in, one class in [0, N] out, N for
a poisoned image. The script written here is that command for a PruneLab G, standalone: it
needs TensorFlow/Keras, numpy and Pillow, never PruneLab, so it can be handed to anyone. It
reads images exactly as :func:`engine.io.imagefiles.decode` does (tests compare the two), checks
each image's size before loading TensorFlow, and loads G in Keras' safe mode."""

from __future__ import annotations

import os
from pathlib import Path

from engine.io.atomic import atomic_path
from engine.core.errors import PruneLabError

_TEMPLATE = r'''#!/usr/bin/env python3
"""PruneLab's backdoor detector G as one command (written by PruneLab; needs only
TensorFlow/Keras 3, numpy and Pillow).

    python3 {script} photo.png [more.png ...] [--resize]

prints, for each image in order, one integer in [0, {flag}]: the class the model answers, or
{flag} when {meaning} (backdoor suspected).
Images must be {h}x{w} pixels (height x width) like the model's input, unless --resize asks
for bilinear resizing. Grayscale, palette and transparent images are converted to RGB
(transparency dropped); 16-bit and CMYK images are refused. Exit code 2 on bad input.
"""
import os
import sys

MODEL_FILE = {model!r}  # next to this script
INPUT_HWC = ({h}, {w}, {c})
N_OUTPUTS = {n_out}  # classes 0..{last} and {flag} = backdoor suspected
DIVIDE_BY = {divide}  # the model's input convention: {convention}
BATCH = 256
OK_MODES = {{"RGB", "RGBA", "RGBa", "RGBX", "P", "PA", "1", "L", "LA", "La"}}


def fail(message):
    print(os.path.basename(sys.argv[0]) + ": error: " + " ".join(str(message).split()), file=sys.stderr)
    sys.exit(2)


def check_header(path, resize):
    """Refuse a file before any work: not an image, a bomb, 16-bit, CMYK, the wrong size."""
    import warnings
    from PIL import Image
    if not os.path.isfile(path):
        fail(path + ": no such image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=("PNG", "JPEG")) as im:
                size, mode = im.size, im.mode
                rawmodes = " ".join(str(t[-1]) for t in (im.tile or []))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        fail(path + ": more pixels than Pillow's decompression-bomb limit; refusing to decode it")
    except Image.UnidentifiedImageError:
        fail(path + ": is not a PNG or JPEG image")
    except Exception as e:
        fail(path + ": cannot be read (" + str(e)[:160] + ")")
    if mode.startswith(("I", "F")) or ";16" in rawmodes:
        fail(path + ": is a 16-bit image; save it with 8 bits per channel")
    if mode == "CMYK":
        fail(path + ": is a CMYK JPEG; save it as RGB")
    if mode not in OK_MODES:
        fail(path + ": holds pixels in mode " + mode + "; expected RGB or grayscale")
    h, w, _ = INPUT_HWC
    if size != (w, h) and not resize:
        fail(path + ": is %dx%d pixels (HxW), the model expects %dx%d; add --resize to scale it bilinearly"
             % (size[1], size[0], h, w))


def load_image(path, resize):
    """H x W x C float32 pixels 0-255, as PruneLab reads them."""
    import numpy as np
    from PIL import Image
    h, w, c = INPUT_HWC
    try:
        with Image.open(path, formats=("PNG", "JPEG")) as im:
            if im.mode in ("P", "PA"):
                im = im.convert("RGBA")
            im = im.convert("RGB" if c == 3 else "L")
            if im.size != (w, h):
                im = im.resize((w, h), Image.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    except Exception as e:
        fail(path + ": cannot be decoded: truncated or corrupt (" + str(e)[:160] + ")")
    return arr.reshape(h, w, c).astype(np.float32)


def quiet_native_logs():
    """TensorFlow writes its C++ start-up lines straight to file descriptor 2, whatever
    TF_CPP_MIN_LOG_LEVEL says: point that descriptor at /dev/null before TensorFlow is imported
    and keep this script's own messages on the real stderr. PRUNELAB_DEBUG=1 keeps everything."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    if os.environ.get("PRUNELAB_DEBUG"):
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        sys.stderr = os.fdopen(saved, "w", buffering=1)
    except (OSError, ValueError):
        pass


def main(argv):
    resize = "--resize" in argv
    files = [a for a in argv if a != "--resize"]
    if not files or any(a.startswith("-") and not os.path.exists(a) for a in files):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    for name in ("PIL", "numpy"):
        try:
            __import__(name)
        except ImportError:
            fail("needs " + {{"PIL": "Pillow", "numpy": "numpy"}}[name] + " (pip install "
                 + {{"PIL": "pillow", "numpy": "numpy"}}[name] + ")")
    for f in files:
        check_header(f, resize)
    quiet_native_logs()
    import numpy as np
    try:
        import keras
    except ImportError:
        try:
            from tensorflow import keras
        except ImportError:
            fail("needs TensorFlow/Keras 3 (pip install tensorflow)")
    here = os.path.dirname(os.path.abspath(__file__))
    model_path = os.path.join(here, MODEL_FILE)
    if not os.path.isfile(model_path):
        fail(model_path + ": the model file is missing (keep it next to this script)")
    try:
        model = keras.models.load_model(model_path, compile=False, safe_mode=True)
    except Exception as e:
        fail(model_path + ": Keras could not load it (" + " ".join(str(e).split())[:200] + ")")
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    if shape != INPUT_HWC or int(model.outputs[0].shape[-1]) != N_OUTPUTS:
        fail(model_path + ": is not the model this script was written for")
    for s in range(0, len(files), BATCH):
        x = np.stack([load_image(f, resize) for f in files[s:s + BATCH]])
        y = np.asarray(model(x / np.float32(DIVIDE_BY), training=False))
        for v in np.argmax(y, axis=1):
            print(int(v), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
'''


def eval_script_name(g_model_filename: str) -> str:
    """``G_10.keras`` -> ``G_10_eval.py``."""
    return f"{Path(g_model_filename).stem}_eval.py"


DEFAULT_FLAG_MEANING = "the backdoored network and its pruned copy disagree"


def write_eval_script(path: str | os.PathLike, g_model_filename: str, input_hwc: tuple[int, int, int],
                      n_classes_with_flag: int, inputs=(), input_scale: float = 255.0,
                      flag_meaning: str | None = None) -> Path:
    """Write the standalone script for the G saved as ``g_model_filename`` in the same folder
    as ``path`` (atomically; never over an input). ``n_classes_with_flag`` is G's output
    width, N+1: the script prints N for a suspected backdoor."""
    path = Path(path)
    name = str(g_model_filename)
    if not name or os.path.basename(name) != name or name in (".", ".."):
        raise PruneLabError(path, f"the model name '{name}' must be a plain file name next to the script")
    h, w, c = (int(v) for v in input_hwc)
    n_out = int(n_classes_with_flag)
    if min(h, w) < 1 or c not in (1, 3):
        raise PruneLabError(path, f"cannot write an eval script for inputs {h}×{w}×{c} (1 or 3 channels)")
    if n_out < 2:
        raise PruneLabError(path, f"G has {n_out} outputs; expected N classes plus the flag class")
    divide = 255.0 / float(input_scale)
    meaning = " ".join(str(flag_meaning or DEFAULT_FLAG_MEANING).replace('"', "'").replace("\\", "/").split())
    text = _TEMPLATE.format(script=path.name, model=name, h=h, w=w, c=c, n_out=n_out, last=n_out - 2,
                            flag=n_out - 1, meaning=meaning, divide=repr(divide),
                            convention="pixels / 255" if divide != 1.0 else "raw 0-255 pixels")
    with atomic_path(path, inputs) as tmp:
        tmp.write_text(text, encoding="utf-8")
        mode = tmp.stat().st_mode
        os.chmod(tmp, mode | ((mode & 0o444) >> 2))  # executable where readable (the shebang)
    return path


def save_goodnet(goodnet, path: str | os.PathLike, inputs=(), flag_meaning: str | None = None) -> Path:
    """Save G and, next to it, ``<name>_eval.py``: the standalone script that prints G's answer
    (one integer in [0, N]) for image files — the lab challenge's submission form.
    ``flag_meaning``: what class N means for this G, for the script's help text."""
    from engine.models.loading import goodnet_input_scale
    from engine.pruning.rules import save_model

    path = save_model(goodnet, path, inputs)
    hwc = tuple(int(d) for d in goodnet.inputs[0].shape[1:])
    write_eval_script(path.with_name(eval_script_name(path.name)), path.name, hwc,
                      int(goodnet.outputs[0].shape[-1]), inputs, goodnet_input_scale(goodnet.name),
                      flag_meaning=flag_meaning)
    return path
