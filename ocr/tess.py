"""Tesseract in-process, through its C API (libtesseract from Debian's tesseract-ocr), with the
model loaded once per process.

pytesseract starts a tesseract process and loads the Korean model for every call (about 80 ms of
CPU each); a plate asks tesseract for one to four small crops, so that start-up was a third of a
plate's cost.  Here one TessBaseAPI is kept per process and language (the page-segmentation mode
and the character whitelist are set per call).  When the library cannot be loaded, `recognize` falls back to pytesseract, and returns
None when neither works.

Tesseract runs its LSTM under OpenMP. With OpenMP's default (a thread per core, spinning while
they wait), one syllable cost 90-120 ms of CPU instead of 10 ms on this 2-core machine, and a
reader is meant to use one core of the service's process pool anyway: so OMP_THREAD_LIMIT=1
(unless the operator set it) before libgomp is loaded with libtesseract, and for the pytesseract
child process too.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from functools import lru_cache

import numpy as np

_LOCK = threading.Lock()


def _one_thread() -> None:
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")


@lru_cache(maxsize=1)
def _lib() -> ctypes.CDLL | None:
    _one_thread()
    for name in ("libtesseract.so.5", ctypes.util.find_library("tesseract") or ""):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        lib.TessBaseAPICreate.restype = ctypes.c_void_p
        lib.TessBaseAPIInit3.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
        lib.TessBaseAPIInit3.restype = ctypes.c_int
        lib.TessBaseAPISetVariable.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
        lib.TessBaseAPISetVariable.restype = ctypes.c_int
        lib.TessBaseAPISetPageSegMode.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.TessBaseAPISetImage.argtypes = [
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int,
        ]
        lib.TessBaseAPISetSourceResolution.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.TessBaseAPIGetUTF8Text.argtypes = [ctypes.c_void_p]
        lib.TessBaseAPIGetUTF8Text.restype = ctypes.c_void_p
        lib.TessBaseAPIMeanTextConf.argtypes = [ctypes.c_void_p]
        lib.TessBaseAPIMeanTextConf.restype = ctypes.c_int
        lib.TessDeleteText.argtypes = [ctypes.c_void_p]
        lib.TessBaseAPIClear.argtypes = [ctypes.c_void_p]
        return lib
    return None


@lru_cache(maxsize=4)
def _api(lang: str) -> int | None:
    """One TessBaseAPI per language and process (each holds its own copy of the model)."""
    lib = _lib()
    if lib is None:
        return None
    h = lib.TessBaseAPICreate()
    if not h or lib.TessBaseAPIInit3(h, None, lang.encode()) != 0:
        return None
    lib.TessBaseAPISetVariable(h, b"debug_file", b"/dev/null")
    return int(h)


def available(lang: str) -> bool:
    """Whether tesseract with this language model can be used (in-process or via pytesseract)."""
    if _api(lang) is not None:
        return True
    try:
        import pytesseract

        return lang in pytesseract.get_languages(config="")
    except Exception:
        return False


def recognize(gray_or_bgr: np.ndarray, lang: str, psm: int, whitelist: str = "") -> tuple[str, int] | None:
    """(text, mean confidence 0-100) of an 8-bit image; None when tesseract is unavailable."""
    img = np.ascontiguousarray(gray_or_bgr, dtype=np.uint8)
    if img.ndim == 3:
        img = np.ascontiguousarray(img[:, :, ::-1])  # BGR -> RGB
    h = _api(lang)
    lib = _lib()
    if h is None or lib is None:
        return _fallback(img, lang, psm, whitelist)
    bpp = 1 if img.ndim == 2 else img.shape[2]
    with _LOCK:
        lib.TessBaseAPISetPageSegMode(h, psm)
        lib.TessBaseAPISetVariable(h, b"tessedit_char_whitelist", whitelist.encode())
        lib.TessBaseAPISetImage(h, img.ctypes.data, img.shape[1], img.shape[0], bpp, img.strides[0])
        lib.TessBaseAPISetSourceResolution(h, 300)
        p = lib.TessBaseAPIGetUTF8Text(h)
        text = ctypes.string_at(p).decode("utf-8", "replace") if p else ""
        if p:
            lib.TessDeleteText(p)
        conf = int(lib.TessBaseAPIMeanTextConf(h))
        lib.TessBaseAPIClear(h)
    return text, conf


def _fallback(img: np.ndarray, lang: str, psm: int, whitelist: str) -> tuple[str, int] | None:
    try:
        import pytesseract
        from PIL import Image

        cfg = f"--psm {psm}" + (f" -c tessedit_char_whitelist={whitelist}" if whitelist else "")
        txt = pytesseract.image_to_string(Image.fromarray(img), lang=lang, config=cfg, timeout=5)
        return txt, -1
    except Exception:
        return None
