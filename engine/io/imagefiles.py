"""One image file: is it a PNG/JPEG (by suffix and by its first bytes), its label in its name, its
header checked without reading pixels (size, mode, bombs, truncation), and its pixels decoded
as RGB float32 0–255 (resized on request). Folders and sets of files: :mod:`engine.io.images`."""

from __future__ import annotations

import os
import re
import stat
import warnings
from pathlib import Path

import numpy as np

from engine.core.errors import PruneLabError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
PIL_FORMATS = ("PNG", "JPEG")  # Pillow never tries its other plugins (EPS would run Ghostscript)
CLASSES_FILE = "classes.txt"
# modes converted to RGB without loss of meaning; anything else is refused
GRAY_MODES = {"1", "L", "LA", "La"}
ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
OK_MODES = {"RGB", "RGBA", "RGBa", "RGBX", "P", "PA"} | GRAY_MODES
MAX_LABEL = 10_000_000
_LABEL_RE = re.compile(r"label=(\d+)", re.IGNORECASE)
_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_JPEG_SIG = b"\xff\xd8"  # start of image (the next marker may be damaged)


def is_image_path(path: str | os.PathLike) -> bool:
    """True for a name ending in .png/.jpg/.jpeg (any case)."""
    return str(path).lower().endswith(IMAGE_SUFFIXES)


def sniff_image(path: str | os.PathLike) -> bool:
    """True when a file starts like a PNG or a JPEG, whatever its name."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return False
    return head.startswith(_PNG_SIG) or head.startswith(_JPEG_SIG)


def label_in_name(path: str | os.PathLike) -> int | None:
    """The N of ``label=N`` in a file name (the last one), else None."""
    found = _LABEL_RE.findall(Path(path).stem)
    return int(found[-1]) if found else None


def _natural_key(text: str):
    """``img_2`` before ``img_10``, as a file browser sorts."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)], text


# ----------------------------------------------------------------------------- one file
def _pil():
    from PIL import Image

    return Image


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:160] or type(e).__name__


def inspect_header(path: Path) -> tuple[int, int, str]:
    """``(height, width, mode)`` of one PNG/JPEG from its header, or a one-line error for
    anything the decoder should never see: not an image, a damaged header, a truncated or
    corrupt PNG (chunk checksums), a JPEG without its end marker, a decompression bomb,
    16-bit or CMYK pixels."""
    Image = _pil()
    try:
        st = os.stat(path)
    except OSError as e:
        raise PruneLabError(path, f"cannot be read ({e.strerror or _short(e)})") from None
    if stat.S_ISDIR(st.st_mode):
        raise PruneLabError(path, "is a directory, not an image file")
    if not stat.S_ISREG(st.st_mode):
        raise PruneLabError(path, "is not a regular file")  # a FIFO would block the reader
    if st.st_size == 0:
        raise PruneLabError(path, "is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=PIL_FORMATS) as im:
                size, mode, fmt = im.size, im.mode, im.format
                rawmodes = " ".join(str(t[-1]) for t in (im.tile or []))  # PNG: "RGB;16B" for 16 bits
                _check_pixels(path, size, mode, fmt, rawmodes)
                if fmt == "PNG":
                    im.verify()  # every chunk's checksum and the IEND marker: no pixels decoded
                else:
                    _check_jpeg_end(path, st.st_size)
    except PruneLabError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise PruneLabError(path, _bomb_text(None)) from None
    except Image.UnidentifiedImageError:
        if sniff_image(path):
            raise PruneLabError(path, "is a damaged PNG/JPEG: its header cannot be read") from None
        raise PruneLabError(path, "is not a PNG or JPEG image") from None
    except MemoryError:
        raise
    except Exception as e:  # Pillow's decoders raise OSError, SyntaxError, ValueError, struct.error …
        raise PruneLabError(path, f"is truncated or corrupt ({_short(e)})") from None
    return size[1], size[0], mode


def _bomb_text(size) -> str:
    limit = _pil().MAX_IMAGE_PIXELS
    dims = f"declares {size[0]:,}×{size[1]:,} pixels, " if size else "declares "
    return (f"{dims}more than Pillow's decompression-bomb limit of {limit:,} pixels; "
            "refusing to decode it")


def _check_pixels(path: Path, size, mode: str, fmt: str, rawmodes: str) -> None:
    Image = _pil()
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and size[0] * size[1] > limit:
        raise PruneLabError(path, _bomb_text(size))
    if fmt not in ("PNG", "JPEG", "MPO"):
        raise PruneLabError(path, f"is a {fmt} image; PruneLab reads PNG and JPEG")
    if mode.startswith(("I", "F")) or ";16" in rawmodes:
        raise PruneLabError(path, f"is a 16-bit image (Pillow mode {mode}); PruneLab reads 8 bits per "
                            "channel like the lab's data: save it as an 8-bit PNG")
    if mode == "CMYK":
        raise PruneLabError(path, "is a CMYK JPEG (print colours); PruneLab reads RGB or grayscale: "
                            "save it as an RGB JPEG or PNG")
    if mode not in OK_MODES:
        raise PruneLabError(path, f"holds pixels in mode {mode}; PruneLab reads RGB or grayscale images")


def _check_jpeg_end(path: Path, size: int) -> None:
    """A JPEG cut short (a partial download) lacks its end marker FF D9; phones may append
    a trailer after it, hence the search over the last 64 KiB rather than the last 2 bytes."""
    with open(path, "rb") as fh:
        fh.seek(max(0, size - 65536))
        tail = fh.read()
    if b"\xff\xd9" not in tail:
        raise PruneLabError(path, "is truncated: the JPEG end marker is missing")


def decode(path: Path, hw: tuple[int, int], channels: int = 3, resize: bool = False) -> np.ndarray:
    """One image as uint8 H×W×C: palette/alpha/grayscale converted, resized (bilinear) only
    when asked. ``G_<t>_eval.py`` repeats these exact steps without PruneLab."""
    Image = _pil()
    h, w = hw
    try:
        with Image.open(path, formats=PIL_FORMATS) as im:
            if im.size[0] * im.size[1] > (Image.MAX_IMAGE_PIXELS or float("inf")):
                raise PruneLabError(path, _bomb_text(im.size))  # the file changed since it was opened
            if im.mode in ("P", "PA"):
                im = im.convert("RGBA")  # the palette's transparency, then dropped like any alpha
            im = im.convert("RGB" if channels == 3 else "L")
            if im.size != (w, h):
                if not resize:
                    raise PruneLabError(path, f"is {im.size[1]}×{im.size[0]} pixels (H×W), "
                                        f"the model expects {h}×{w}")
                im = im.resize((w, h), Image.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    except PruneLabError:
        raise
    except MemoryError:
        raise
    except Exception as e:
        raise PruneLabError(path, f"cannot be decoded: truncated or corrupt ({_short(e)})") from None
    return arr.reshape(h, w, channels)
