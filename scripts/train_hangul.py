"""Train the small Hangul syllable classifier used on licence plates (ocr/models/hangul.onnx).

Classes: every syllable a Korean plate can carry (prorate.identifiers.PLATE_SYLLABLES), every
syllable of the region names (서울 … 제주), and "#" for anything else (a digit, a bolt, a border,
background), so that a badly located slot is rejected instead of forced into a syllable.
Synthetic renders only (fonts-nanum, fonts-noto-cjk), on plate colours, with neighbouring digits cut
in at the sides, perspective, blur, low resolution, noise and JPEG artefacts.

    .venv/bin/pip install torch==2.13.0    # training only
    .venv/bin/python scripts/train_hangul.py --out ocr/models/hangul.onnx
"""

from __future__ import annotations

import argparse
import io
import math
import os
import random
import sys
import time

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from ocr.hangul import CLASSES, S, preprocess

FONTS = [
    f
    for f in [
        "/usr/share/fonts/truetype/nanum/NanumGothicBold.ttf",
        "/usr/share/fonts/truetype/nanum/NanumGothic.ttf",
        "/usr/share/fonts/truetype/nanum/NanumSquareB.ttf",
        "/usr/share/fonts/truetype/nanum/NanumSquareR.ttf",
        "/usr/share/fonts/truetype/nanum/NanumBarunGothicBold.ttf",
        "/usr/share/fonts/truetype/nanum/NanumBarunGothic.ttf",
        "/usr/share/fonts/truetype/nanum/NanumSquareRoundB.ttf",
        "/usr/share/fonts/truetype/nanum/NanumGothicCodingBold.ttf",
        "/usr/share/fonts/truetype/nanum/NanumSquareRoundR.ttf",
        "/usr/share/fonts/truetype/nanum/NanumGothicCoding.ttf",
        "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
        "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    ]
    if os.path.exists(f)
]
DIGIT_FONTS = [
    f
    for f in [
        "/usr/share/fonts/truetype/dejavu/DejaVuSansCondensed-Bold.ttf",
        "/usr/share/fonts/truetype/nanum/NanumGothicBold.ttf",
        "/usr/share/fonts/truetype/nanum/NanumSquareB.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSansNarrow-Bold.ttf",
    ]
    if os.path.exists(f)
]

# (background, text) plate colour schemes
SCHEMES = [
    ((245, 245, 245), (15, 15, 15)),  # white
    ((235, 235, 225), (30, 30, 30)),
    ((40, 120, 70), (245, 245, 245)),  # old green
    ((240, 190, 30), (20, 20, 20)),  # yellow commercial
    ((120, 170, 220), (20, 30, 40)),  # EV blue
    ((230, 110, 30), (245, 245, 245)),  # orange construction
]


def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    idx = 1 if path.endswith(".ttc") else 0  # Noto CJK: index 1 is KR in the Debian .ttc
    try:
        return ImageFont.truetype(path, size, index=idx)
    except Exception:
        return ImageFont.truetype(path, size)


def render(rng: random.Random) -> tuple[np.ndarray, int]:
    import cv2

    label = rng.randrange(len(CLASSES))
    ch = CLASSES[label]
    bgc, fgc = rng.choice(SCHEMES)
    jit = lambda c: tuple(int(np.clip(v + rng.randint(-35, 35), 0, 255)) for v in c)  # noqa: E731
    bgc, fgc = jit(bgc), jit(fgc)
    size = rng.randint(28, 56)
    cw, chh = int(size * rng.uniform(1.9, 3.2)), int(size * rng.uniform(1.15, 1.9))
    im = Image.new("RGB", (cw, chh), bgc)
    d = ImageDraw.Draw(im)
    font = _font(rng.choice(FONTS), size)
    cx = cw // 2
    if ch == "#":
        kind = rng.random()
        if kind < 0.6:
            t = rng.choice("0123456789")
            f2 = _font(rng.choice(DIGIT_FONTS), int(size * rng.uniform(1.0, 1.5)))
            bb = d.textbbox((0, 0), t, font=f2)
            d.text(
                (cx - (bb[2] + bb[0]) // 2 + rng.randint(-size // 3, size // 3), (chh - bb[3] - bb[1]) // 2),
                t,
                font=f2,
                fill=fgc,
            )
        elif kind < 0.8:
            r = rng.randint(3, size // 4)
            d.ellipse([cx - r, chh // 2 - r, cx + r, chh // 2 + r], outline=fgc, width=2)
        # else: empty background
    else:
        sw = rng.choice([0, 0, 0, 1, 1, 2]) * max(1, size // 40)  # bolder strokes (plate font)
        bb = d.textbbox((0, 0), ch, font=font, stroke_width=sw)
        sx = rng.uniform(0.75, 1.35)  # plate glyphs are often condensed / widened
        sy = rng.uniform(0.85, 1.1)
        tmp = Image.new("L", (bb[2] + 4, bb[3] + 4), 0)
        ImageDraw.Draw(tmp).text((2, 2), ch, font=font, fill=255, stroke_width=sw, stroke_fill=255)
        tmp = tmp.crop((bb[0], bb[1], bb[2] + 4, bb[3] + 4))
        tmp = tmp.resize((max(4, int(tmp.width * sx)), max(4, int(tmp.height * sy))))
        ox = cx - tmp.width // 2 + rng.randint(-size // 8, size // 8)
        oy = (chh - tmp.height) // 2 + rng.randint(-size // 8, size // 8)
        im.paste(Image.new("RGB", tmp.size, fgc), (ox, oy), tmp)
    # neighbouring digits cut in at the sides
    for side in (-1, 1):
        if rng.random() < 0.6:
            t = rng.choice("0123456789")
            f2 = _font(rng.choice(DIGIT_FONTS), int(size * rng.uniform(1.1, 1.5)))
            bb = d.textbbox((0, 0), t, font=f2)
            x = cx + side * int(size * rng.uniform(0.75, 1.2)) - (bb[2] - bb[0]) // 2
            d.text((x, (chh - bb[3] - bb[1]) // 2), t, font=f2, fill=fgc)
    arr = np.asarray(im)
    hh, ww = arr.shape[:2]
    m = rng.uniform(0, 0.08)
    src = np.float32([[0, 0], [ww, 0], [ww, hh], [0, hh]])
    dst = src + np.float32([[rng.uniform(-m, m) * ww, rng.uniform(-m, m) * hh] for _ in range(4)])
    arr = cv2.warpPerspective(
        arr, cv2.getPerspectiveTransform(src, dst), (ww, hh), borderMode=cv2.BORDER_REPLICATE
    )
    # the slot crop: centre +- a random half width (the reader cuts between the digits)
    half = size * rng.uniform(0.45, 0.85)
    x0 = int(max(0, cx - half + rng.uniform(-0.15, 0.15) * size))
    x1 = int(min(ww, cx + half + rng.uniform(-0.15, 0.15) * size))
    arr = arr[:, x0 : max(x1, x0 + 4)]
    f = arr.astype(np.float32)
    if rng.random() < 0.3:
        f = f * np.linspace(rng.uniform(0.5, 1.1), rng.uniform(0.5, 1.1), f.shape[1])[None, :, None]
    f += np.random.default_rng(rng.randint(0, 1 << 30)).standard_normal(f.shape) * rng.uniform(0, 14)
    pim = Image.fromarray(np.clip(f, 0, 255).astype(np.uint8))
    if rng.random() < 0.8:
        s = rng.uniform(14, 40) / pim.size[1]  # real slots are 14-40 px tall
        w2, h2 = pim.size
        pim = pim.resize((max(4, int(w2 * s)), max(4, int(h2 * s))), Image.BILINEAR).resize(
            (w2, h2), Image.BILINEAR
        )
    if rng.random() < 0.4:
        pim = pim.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.5)))
    if rng.random() < 0.5:
        buf = io.BytesIO()
        pim.save(buf, "JPEG", quality=rng.randint(30, 90))
        pim = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return np.asarray(pim)[:, :, ::-1].copy(), label


def _gen(args: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    seed, n = args
    rng = random.Random(seed)
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


def make_model():  # type: ignore[no-untyped-def]
    import torch.nn as nn

    def block(i: int, o: int) -> list[nn.Module]:
        return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]

    return nn.Sequential(
        *block(1, 24),
        nn.MaxPool2d(2),  # 16
        *block(24, 48),
        nn.MaxPool2d(2),  # 8
        *block(48, 64),
        nn.MaxPool2d(2),  # 4
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(64 * 16, 192),
        nn.ReLU(inplace=True),
        nn.Linear(192, len(CLASSES)),
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="ocr/models/hangul.onnx")
    ap.add_argument("--n", type=int, default=50000)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    import torch

    torch.manual_seed(a.seed)
    torch.set_num_threads(max(1, a.procs))
    t0 = time.time()
    xs, ys = build(a.n, a.seed, a.procs)
    vx, vy = build(3000, a.seed + 99, a.procs)
    print(f"data {len(xs)} in {time.time() - t0:.0f}s", flush=True)
    model = make_model()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    steps = a.epochs * math.ceil(len(xs) / 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.15)
    lossf = torch.nn.CrossEntropyLoss(label_smoothing=0.02)
    for ep in range(a.epochs):
        model.train()
        perm = np.random.permutation(len(xs))
        tot = 0.0
        for b in range(0, len(perm), 128):
            ib = perm[b : b + 128]
            x = torch.from_numpy(xs[ib].astype(np.float32) / 255.0)[:, None]
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
        print(
            f"epoch {ep} loss {tot / len(xs):.3f} val_acc {(pr == vy).mean():.3f} t={time.time() - t0:.0f}s",
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
    print("wrote", a.out, os.path.getsize(a.out), "bytes")


if __name__ == "__main__":
    main()
