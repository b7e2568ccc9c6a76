"""Train the small Hangul syllable classifier used on licence plates (ocr/models/hangul.onnx).

Classes (`ocr.hangul.domain_classes`, written beside the model as hangul.classes.json): every
syllable a Korean plate can carry and every syllable of the region names (서울 … 제주), both from
prorate.identifiers, and "#" for anything else (a digit, a bolt, a border,
background), so that a badly located slot is rejected instead of forced into a syllable.

Synthetic renders only.  Each sample is a whole plate row (front digits, syllable, serial) drawn
in a sans typeface, cut the way the reader cuts it (between the neighbouring digits' centres, with
the detector's vertical padding and jitter), so the model sees what ocr/plate.py gives it: a small,
condensed, bold glyph with bits of the digits at its sides.  The real plate typeface is a geometric
sans that no free font reproduces, so the renders are weighted toward the geometric / square
gothics (NanumSquare, Noto Sans CJK KR in several weights) and the glyphs are condensed, widened,
emboldened and thinned at random.  Degradations: perspective, rotation, low resolution (real slots
are 12-40 px tall), blur, noise, JPEG, uneven light, glare, low contrast, night exposure, every
plate colour (white, EV blue, yellow, old green, orange).

Fonts (training only, not needed at run time): Debian fonts-nanum fonts-nanum-extra
fonts-noto-cjk fonts-noto-cjk-extra fonts-unfonts-core fonts-baekmuk; missing ones are skipped.

    .venv/bin/pip install -e '.[train]'    # torch, onnx: training only
    nice -n 10 .venv/bin/python scripts/train_hangul.py --out ocr/models/hangul.onnx
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import random
import sys
import time

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from ocr.hangul import PLATE_SYLLABLES, S, domain_classes, preprocess

#: A new model's classes come from the domain's alphabet (prorate.identifiers); their order is
#: written beside the model (hangul.classes.json), which is what the reader loads.
CLASSES = domain_classes()
NOTE = "the class order of hangul.onnx (scripts/train_hangul.py writes it with the model)"

_NANUM = "/usr/share/fonts/truetype/nanum/"
_NOTO = "/usr/share/fonts/opentype/noto/"
# (path, weight): geometric / square gothics first and heavier, the plate typeface's family
_FONT_WEIGHTS = [
    (_NANUM + "NanumSquareB.ttf", 4),
    (_NANUM + "NanumSquareEB.ttf", 4),
    (_NANUM + "NanumSquareR.ttf", 3),
    (_NANUM + "NanumSquare_acB.ttf", 3),
    (_NANUM + "NanumSquare_acEB.ttf", 3),
    (_NANUM + "NanumSquare_acR.ttf", 2),
    (_NANUM + "NanumSquareRoundB.ttf", 2),
    (_NANUM + "NanumSquareRoundEB.ttf", 2),
    (_NANUM + "NanumSquareRoundR.ttf", 1),
    (_NANUM + "NanumGothicBold.ttf", 3),
    (_NANUM + "NanumGothicExtraBold.ttf", 3),
    (_NANUM + "NanumGothic.ttf", 2),
    (_NANUM + "NanumBarunGothicBold.ttf", 3),
    (_NANUM + "NanumBarunGothic.ttf", 2),
    (_NANUM + "NanumGothicCodingBold.ttf", 1),
    (_NOTO + "NotoSansCJK-Bold.ttc", 4),
    (_NOTO + "NotoSansCJK-Black.ttc", 3),
    (_NOTO + "NotoSansCJK-Medium.ttc", 3),
    (_NOTO + "NotoSansCJK-Regular.ttc", 2),
    (_NOTO + "NotoSansCJK-DemiLight.ttc", 1),
    ("/usr/share/fonts/truetype/unfonts-core/UnDotumBold.ttf", 2),
    ("/usr/share/fonts/truetype/unfonts-core/UnDotum.ttf", 1),
    ("/usr/share/fonts/truetype/unfonts-core/UnGraphicBold.ttf", 2),
    ("/usr/share/fonts/truetype/unfonts-core/UnDinaruBold.ttf", 1),
    ("/usr/share/fonts/truetype/baekmuk/dotum.ttf", 1),
    ("/usr/share/fonts/truetype/baekmuk/gulim.ttf", 1),
    ("/usr/share/fonts/truetype/baekmuk/hline.ttf", 1),
]
FONTS = [(f, w) for f, w in _FONT_WEIGHTS if os.path.exists(f)]
DIGIT_FONTS = [
    f
    for f in [
        "/usr/share/fonts/truetype/dejavu/DejaVuSansCondensed-Bold.ttf",
        "/usr/share/fonts/truetype/dejavu/DejaVuSansCondensed.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSansNarrow-Bold.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSansNarrow-Regular.ttf",
        _NANUM + "NanumSquareB.ttf",
        _NANUM + "NanumGothicBold.ttf",
        _NOTO + "NotoSansCJK-Medium.ttc",
    ]
    if os.path.exists(f)
]

# (background, text) plate colour schemes, with how often they occur
SCHEMES = [
    (((245, 245, 245), (15, 15, 15)), 4),  # white
    (((225, 228, 220), (35, 35, 35)), 2),
    (((120, 180, 230), (15, 25, 40)), 3),  # EV blue
    (((240, 190, 30), (20, 20, 20)), 2),  # yellow commercial
    (((40, 120, 70), (245, 245, 245)), 2),  # old green
    (((230, 110, 30), (245, 245, 245)), 1),  # orange construction
]

_FONT_CACHE: dict[tuple[str, int], ImageFont.FreeTypeFont] = {}


def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    key = (path, size)
    f = _FONT_CACHE.get(key)
    if f is None:
        idx = 1 if path.endswith(".ttc") else 0  # Noto CJK .ttc: index 1 is KR
        try:
            f = ImageFont.truetype(path, size, index=idx)
        except Exception:
            f = ImageFont.truetype(path, size)
        if len(_FONT_CACHE) > 2000:
            _FONT_CACHE.clear()
        _FONT_CACHE[key] = f
    return f


def _glyph(ch: str, font: ImageFont.FreeTypeFont, rng: random.Random, h_target: int, sx: float) -> np.ndarray:
    """Binary-ish mask of one glyph, scaled to h_target px tall and condensed/widened by sx,
    emboldened or thinned at random."""
    import cv2

    sw = rng.choice([0, 0, 0, 1, 2])
    bb = font.getbbox(ch, stroke_width=sw)
    tmp = Image.new("L", (int(bb[2] - bb[0]) + 8, int(bb[3] - bb[1]) + 8), 0)
    ImageDraw.Draw(tmp).text(
        (4 - bb[0], 4 - bb[1]), ch, font=font, fill=255, stroke_width=sw, stroke_fill=255
    )
    a = np.asarray(tmp)
    ys, xs = np.nonzero(a > 40)
    if len(ys) == 0:
        return np.zeros((h_target, max(2, int(h_target * sx * 0.8))), np.uint8)
    a = a[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    h, w = a.shape
    nw = max(2, round(w * h_target / h * sx))
    a = cv2.resize(a, (nw, h_target), interpolation=cv2.INTER_AREA)
    r = rng.random()
    k = max(1, h_target // 22)
    if r < 0.2:
        a = cv2.dilate(a, np.ones((k, k), np.uint8))
    elif r < 0.3:
        a = cv2.erode(a, np.ones((2, 2), np.uint8)) if h_target > 30 else a
    return a


def _paste(canvas: np.ndarray, mask: np.ndarray, x: int, y: int, colour: tuple[int, ...]) -> None:
    h, w = mask.shape
    H, W = canvas.shape[:2]
    x0, y0, x1, y1 = max(0, x), max(0, y), min(W, x + w), min(H, y + h)
    if x1 <= x0 or y1 <= y0:
        return
    m = mask[y0 - y : y1 - y, x0 - x : x1 - x].astype(np.float32)[..., None] / 255.0
    region = canvas[y0:y1, x0:x1].astype(np.float32)
    canvas[y0:y1, x0:x1] = (region * (1 - m) + np.array(colour, dtype=np.float32) * m).astype(np.uint8)


def render(rng: random.Random) -> tuple[np.ndarray, int]:
    """One training sample: (BGR slot crop as the reader would cut it, class index)."""
    import cv2

    label = rng.randrange(len(CLASSES))
    ch = CLASSES[label]
    if ch == "#" and rng.random() < 0.5:
        target = None  # the slot lands on a digit, an emblem, a bolt or nothing
    else:
        target = ch if ch != "#" else None
    bgc: tuple[int, ...]
    fgc: tuple[int, ...]
    (bgc, fgc) = rng.choices([s for s, _ in SCHEMES], weights=[w for _, w in SCHEMES])[0]
    jit = lambda c: tuple(int(np.clip(v + rng.randint(-30, 30), 0, 255)) for v in c)  # noqa: E731
    bgc, fgc = jit(bgc), jit(fgc)
    dh = rng.randint(30, 64)  # digit height in the render
    digit_font = _font(rng.choice(DIGIT_FONTS), int(dh * 1.35))
    dsx = rng.uniform(0.75, 1.1)
    fpath = rng.choices([f for f, _ in FONTS], weights=[w for _, w in FONTS])[0]
    syl_h = int(dh * rng.uniform(0.72, 1.05))
    syl_font = _font(fpath, int(syl_h * 1.4))
    syl_sx = rng.uniform(0.6, 1.15)
    gap = dh * rng.uniform(0.08, 0.3)
    n_front = rng.choice([2, 3])
    seq: list[tuple[str, np.ndarray, int]] = []  # (kind, mask, y offset)
    for _ in range(n_front):
        seq.append(("d", _glyph(rng.choice("0123456789"), digit_font, rng, dh, dsx), 0))
    if ch == "#" and target is None and rng.random() < 0.5:
        mid = _glyph(rng.choice("0123456789"), digit_font, rng, dh, dsx)  # slot on a digit
        seq.append(("s", mid, 0))
    elif target is None:
        seq.append(("s", np.zeros((dh, int(dh * rng.uniform(0.2, 0.7))), np.uint8), 0))  # empty gap
    else:
        m = _glyph(target, syl_font, rng, syl_h, syl_sx)
        seq.append(("s", m, (dh - syl_h) // 2 + rng.randint(-dh // 12, dh // 12)))
    for _ in range(4):
        seq.append(("d", _glyph(rng.choice("0123456789"), digit_font, rng, dh, dsx), 0))
    margin = int(dh * 0.6)
    W = margin * 2 + int(sum(m.shape[1] for _, m, _ in seq) + gap * (len(seq) + 1))
    H = int(dh * 2.2)
    canvas: np.ndarray = np.zeros((H, W, 3), np.uint8)
    canvas[:] = bgc
    y_text = (H - dh) // 2
    x = margin
    centres: list[float] = []
    syl_span = (0.0, 0.0)
    for kind, m, dy in seq:
        if kind == "s":
            x += int(gap * rng.uniform(0.6, 1.8))
            syl_span = (float(x), float(x + m.shape[1]))
        _paste(canvas, m, x, y_text + dy, fgc)
        centres.append(x + m.shape[1] / 2)
        x += m.shape[1] + int(gap)
        if kind == "s":
            x += int(gap * rng.uniform(0.0, 0.8))
    if ch == "#" and rng.random() < 0.25:  # a bolt or an emblem in the slot
        bx, by = int(sum(syl_span) / 2), y_text + rng.randint(0, dh)
        radius = rng.randint(3, max(4, dh // 4))
        cv2.circle(
            canvas,
            (bx, by),
            radius,
            fgc if rng.random() < 0.5 else (128, 128, 128),
            -1 if rng.random() < 0.5 else 2,
        )
    # perspective / rotation of the whole row
    m_ = rng.uniform(0, 0.06)
    src = np.array([[0, 0], [W, 0], [W, H], [0, H]], dtype=np.float32)
    dst = src + np.array(
        [[rng.uniform(-m_, m_) * H * 2, rng.uniform(-m_, m_) * H] for _ in range(4)], dtype=np.float32
    )
    M = cv2.getPerspectiveTransform(src, dst)
    canvas = cv2.warpPerspective(canvas, M, (W, H), borderMode=cv2.BORDER_REPLICATE)
    # the reader's cut: the line box is the text height with the detector's padding; the slot runs
    # from half a pitch after the last front digit's centre to half a pitch before the serial's
    pitch = float(np.median(np.diff(centres[n_front + 1 :])))
    jx = lambda: rng.uniform(-0.18, 0.18) * pitch  # noqa: E731 - CTC frame positions are coarse
    x0 = centres[n_front - 1] + 0.5 * pitch + jx()
    x1 = centres[n_front + 1] - 0.5 * pitch + jx()
    if x1 - x0 < 0.5 * pitch:
        x1 = x0 + 0.5 * pitch
    pad = dh * rng.uniform(0.1, 0.45)
    y0 = y_text - pad + rng.uniform(-0.1, 0.1) * dh
    y1 = y_text + dh + pad + rng.uniform(-0.1, 0.1) * dh
    crop = canvas[max(0, int(y0)) : min(H, math.ceil(y1)), max(0, int(x0)) : min(W, math.ceil(x1))]
    if crop.shape[0] < 4 or crop.shape[1] < 3:
        crop = canvas[y_text : y_text + dh, int(syl_span[0]) : int(syl_span[1]) + 2]
    f: np.ndarray = crop.astype(np.float32)
    # light: gradients, low contrast, night exposure, glare
    r = rng.random()
    if r < 0.3:
        f = f * np.linspace(rng.uniform(0.4, 1.1), rng.uniform(0.4, 1.1), f.shape[1])[None, :, None]
    elif r < 0.45:
        f = f * np.linspace(rng.uniform(0.5, 1.1), rng.uniform(0.5, 1.1), f.shape[0])[:, None, None]
    if rng.random() < 0.25:  # low contrast / dark scene
        lo = rng.uniform(0, 60)
        f = lo + f * rng.uniform(0.15, 0.6)
    if rng.random() < 0.1:  # glare blob
        gy, gx = np.mgrid[0 : f.shape[0], 0 : f.shape[1]]
        cy, cx = rng.uniform(0, f.shape[0]), rng.uniform(0, f.shape[1])
        rr = rng.uniform(0.2, 0.6) * f.shape[0]
        f = f + 200 * np.exp(-((gy - cy) ** 2 + (gx - cx) ** 2) / (2 * rr * rr))[..., None]
    f += np.random.default_rng(rng.randint(0, 1 << 30)).standard_normal(f.shape) * rng.uniform(0, 12)
    pim = Image.fromarray(np.clip(f, 0, 255).astype(np.uint8))
    # resolution: real slots are 12-45 px tall
    s = rng.uniform(12, 45) / pim.size[1]
    w2, h2 = pim.size
    small = pim.resize((max(3, int(w2 * s)), max(4, int(h2 * s))), Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        pim = small
    else:
        pim = small.resize((w2, h2), Image.Resampling.BICUBIC)
    if rng.random() < 0.4:
        pim = pim.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
    if rng.random() < 0.2:
        pim = pim.filter(ImageFilter.UnsharpMask(radius=2, percent=rng.randint(50, 200)))
    if rng.random() < 0.5:
        buf = io.BytesIO()
        pim.save(buf, "JPEG", quality=rng.randint(25, 90))
        pim = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return np.asarray(pim)[:, :, ::-1].copy(), label


def _gen(args: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    seed, n = args
    rng = random.Random(seed)
    np.random.seed(seed % (1 << 31))
    xs = np.zeros((n, S, S), np.uint8)
    ys = np.zeros(n, np.int64)
    for i in range(n):
        img, y = render(rng)
        xs[i] = (preprocess(img) * 255).astype(np.uint8)
        ys[i] = y
    return xs, ys


def build(n: int, seed: int, procs: int) -> tuple[np.ndarray, np.ndarray]:
    from multiprocessing import Pool

    chunk = 2000
    jobs = [(seed * 7919 + i, min(chunk, n - i * chunk)) for i in range(math.ceil(n / chunk))]
    with Pool(procs) as p:
        parts = p.map(_gen, jobs)
    return np.concatenate([a for a, _ in parts]), np.concatenate([b for _, b in parts])


def make_model():
    import torch.nn as nn

    def block(i: int, o: int) -> list[nn.Module]:
        return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]

    return nn.Sequential(
        *block(1, 32),
        nn.MaxPool2d(2),  # 16
        *block(32, 64),
        nn.MaxPool2d(2),  # 8
        *block(64, 96),
        nn.MaxPool2d(2),  # 4
        nn.Flatten(),
        nn.Dropout(0.3),
        nn.Linear(96 * 16, 192),
        nn.ReLU(inplace=True),
        nn.Dropout(0.2),
        nn.Linear(192, len(CLASSES)),
    )


def _augment_batch(x):
    """Cheap on-the-fly variety on top of the rendered set: random shifts by up to 2 px."""
    import torch

    dx, dy = np.random.randint(-2, 3), np.random.randint(-2, 3)
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="ocr/models/hangul.onnx")
    ap.add_argument("--n", type=int, default=80000)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--samples", help="write a PNG grid of renders here and stop")
    a = ap.parse_args()
    if a.samples:
        import cv2

        rng = random.Random(a.seed)
        tiles = []
        for _ in range(64):
            img, y = render(rng)
            t = cv2.resize(img, (max(8, int(img.shape[1] * 48 / img.shape[0])), 48))[:, :64]
            t = cv2.copyMakeBorder(t, 0, 0, 0, 64 - t.shape[1], cv2.BORDER_CONSTANT)
            tiles.append(t)
        rows = [np.hstack(tiles[i : i + 16]) for i in range(0, 64, 16)]
        cv2.imwrite(a.samples, np.vstack(rows))
        return
    import torch

    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    torch.set_num_threads(max(1, a.procs))
    t0 = time.time()
    xs, ys = build(a.n, a.seed, a.procs)
    vx, vy = build(4000, a.seed + 99, a.procs)
    print(f"data {len(xs)} in {time.time() - t0:.0f}s; fonts {len(FONTS)}", flush=True)
    model = make_model()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=3e-4)
    steps = a.epochs * math.ceil(len(xs) / 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.15)
    lossf = torch.nn.CrossEntropyLoss(label_smoothing=0.05)
    plate_cls = np.array([c in PLATE_SYLLABLES for c in CLASSES])
    for ep in range(a.epochs):
        model.train()
        perm = np.random.permutation(len(xs))
        tot = 0.0
        for b in range(0, len(perm), 128):
            ib = perm[b : b + 128]
            x = torch.from_numpy(xs[ib].astype(np.float32) / 255.0)[:, None]
            x = _augment_batch(x)
            y = torch.from_numpy(ys[ib])
            loss = lossf(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(ib)
        model.eval()
        with torch.no_grad():
            pr = model(torch.from_numpy(vx.astype(np.float32) / 255.0)[:, None]).argmax(1).numpy()
        on_plate = plate_cls[vy]
        print(
            f"epoch {ep} loss {tot / len(xs):.3f} val_acc {(pr == vy).mean():.3f} "
            f"plate_syllables {(pr == vy)[on_plate].mean():.3f} t={time.time() - t0:.0f}s",
            flush=True,
        )
    model.eval()
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    # keep the weights even if the ONNX export fails (needs the `onnx` package)
    torch.save(
        model.state_dict(), os.path.join(os.environ.get("TMPDIR", "/tmp"), os.path.basename(a.out) + ".pt")
    )
    torch.onnx.export(
        model,
        torch.zeros(1, 1, S, S),
        a.out,
        input_names=["x"],
        output_names=["logits"],
        dynamic_axes={"x": {0: "b"}, "logits": {0: "b"}},
        opset_version=17,
        dynamo=False,
    )
    classes = os.path.join(os.path.dirname(a.out) or ".", "hangul.classes.json")
    with open(classes, "w", encoding="utf-8") as f:
        json.dump({"classes": CLASSES, "note": NOTE}, f, ensure_ascii=False, indent=2)
        f.write("\n")
    print("wrote", a.out, os.path.getsize(a.out), "bytes, and", classes)


if __name__ == "__main__":
    main()
