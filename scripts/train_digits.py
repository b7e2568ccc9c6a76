"""Train the small digit-line recogniser used as a second odometer engine (ocr/models/digits.onnx).

Synthetic renders only: seven-segment digits (Debian fonts-dseg) and ordinary sans fonts (TFT /
mechanical drum), coloured as dashboards are (red / orange / amber / white / green on dark, dark on
amber LCD), with unlit "ghost" segments, partial neighbouring labels (ODO, km, TRIP), decimal points
(trip meters), perspective, blur, noise, glare, JPEG artefacts and loose / tight crops.

    .venv/bin/pip install torch==2.13.0    # training only; torch is not a run-time dependency
    .venv/bin/python scripts/train_digits.py --out ocr/models/digits.onnx

CTC over the alphabet "0123456789." (index 0 = blank).  Input: 1x32x128 grayscale, min-max
normalised, either polarity.  Output: 32 frames x 12 classes (log-probabilities).
"""

from __future__ import annotations

import argparse
import glob
import io
import math
import os
import random
import sys
import time

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from ocr.digits import ALPHABET, H, W, preprocess

SEG_FONTS = sorted(
    f for f in glob.glob("/usr/share/fonts/truetype/dseg/DSEG7*.ttf") if "Light" not in f and "SEGG" not in f
)
SANS_FONTS = [
    f
    for f in [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf",
        "/usr/share/fonts/truetype/dejavu/DejaVuSansCondensed-Bold.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationMono-Bold.ttf",
        "/usr/share/fonts/truetype/nanum/NanumGothicBold.ttf",
        "/usr/share/fonts/truetype/nanum/NanumSquareB.ttf",
        "/usr/share/fonts/truetype/nanum/NanumBarunGothicBold.ttf",
        "/usr/share/fonts/truetype/nanum/NanumGothicCodingBold.ttf",
    ]
    if os.path.exists(f)
]
LABEL_FONT = SANS_FONTS[0] if SANS_FONTS else None

PALETTES = [  # (fg, bg) RGB
    ((255, 40, 30), (20, 5, 5)),
    ((255, 90, 40), (30, 10, 5)),
    ((255, 150, 40), (25, 12, 5)),
    ((255, 200, 80), (20, 15, 10)),
    ((240, 240, 240), (15, 15, 20)),
    ((120, 255, 160), (5, 20, 10)),
    ((150, 200, 255), (5, 10, 25)),
    ((30, 20, 10), (230, 150, 60)),  # dark digits on amber LCD
    ((20, 25, 20), (170, 190, 150)),  # reflective LCD
    ((250, 250, 250), (30, 30, 30)),
]


def rand_text(rng: random.Random) -> str:
    n = rng.choices([3, 4, 5, 6, 7], weights=[1, 3, 6, 10, 2])[0]
    s = "".join(rng.choice("0123456789") for _ in range(n))
    if rng.random() < 0.5:
        s = s.lstrip("0") or "0"
    if rng.random() < 0.18 and len(s) >= 2:  # trip meter: one decimal
        s = s[:-1] + "." + s[-1]
    return s


def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


def render(rng: random.Random) -> tuple[np.ndarray, str]:
    text = rand_text(rng)
    seg = rng.random() < 0.6 or not SANS_FONTS
    fpath = rng.choice(SEG_FONTS) if seg else rng.choice(SANS_FONTS)
    size = rng.randint(40, 64)
    font = _font(fpath, size)
    fg: tuple[int, ...]
    bg: tuple[int, ...]
    fg, bg = rng.choice(PALETTES)
    jit = lambda c: tuple(int(np.clip(v + rng.randint(-25, 25), 0, 255)) for v in c)  # noqa: E731
    fg, bg = jit(fg), jit(bg)
    spacing = rng.randint(-2, 10) if seg else rng.randint(0, 14)
    drum = (not seg) and rng.random() < 0.3
    # layout: optional left label, text, optional right label
    pad_l, pad_r = rng.randint(4, 40), rng.randint(4, 40)
    glyph_w = [int(font.getbbox(c)[2] - font.getbbox(c)[0]) if c != "." else size // 4 for c in text]
    tw = sum(glyph_w) + spacing * (len(text) - 1)
    left_label = rng.random() < 0.25
    right_label = rng.random() < 0.3
    lab_font = _font(LABEL_FONT, max(10, int(size * rng.uniform(0.3, 0.5)))) if LABEL_FONT else None
    lw = 70 if left_label else 0
    rw = 50 if right_label else 0
    cw, ch = pad_l + lw + tw + pad_r + rw, int(size * rng.uniform(1.25, 1.8))
    im = Image.new("RGB", (cw, ch), bg)
    d = ImageDraw.Draw(im)
    y0 = (ch - size) // 2 + rng.randint(-4, 4)
    x = pad_l + lw
    if seg and rng.random() < 0.7:  # unlit ghost segments
        ghost = tuple(int(b + (f - b) * rng.uniform(0.04, 0.2)) for f, b in zip(fg, bg, strict=True))
        gx = x
        for c, gw in zip(text, glyph_w, strict=True):
            if c != ".":
                d.text((gx, y0), "8", font=font, fill=ghost)
            gx += gw + spacing
    for c, gw in zip(text, glyph_w, strict=True):
        if drum:
            box_bg = tuple(int(v) for v in np.clip(np.array(bg) + rng.randint(-10, 30), 0, 255))
            d.rectangle([x - 2, 0, x + gw + 2, ch], fill=box_bg)
        if c == ".":
            r = max(2, size // 14)
            d.ellipse(
                [x + gw // 2 - r, y0 + size - 2 * r - size // 10, x + gw // 2 + r, y0 + size - size // 10],
                fill=fg,
            )
        else:
            d.text((x, y0), c, font=font, fill=fg)
        x += gw + spacing
    if lab_font is not None and left_label:
        d.text((pad_l, y0 + size // 3), rng.choice(["ODO", "TRIP", "ODO", "TOTAL"]), font=lab_font, fill=fg)
    if lab_font is not None and right_label:
        d.text((x + 4, y0 + size // 2), rng.choice(["km", "km", "mi", "KM"]), font=lab_font, fill=fg)
    if drum and rng.random() < 0.3:  # half-rolled last digit: label keeps the lower digit
        pass
    # crop tighter/looser
    arr = np.asarray(im)
    # perspective / rotation
    import cv2

    hh, ww = arr.shape[:2]
    m = rng.uniform(0.0, 0.08)
    src = np.array([[0, 0], [ww, 0], [ww, hh], [0, hh]], dtype=np.float32)
    dst = src + np.array(
        [[rng.uniform(-m, m) * ww, rng.uniform(-m, m) * hh] for _ in range(4)], dtype=np.float32
    )
    M = cv2.getPerspectiveTransform(src, dst)
    ang = rng.uniform(-4, 4)
    R = cv2.getRotationMatrix2D((ww / 2, hh / 2), ang, 1.0)
    R3 = np.vstack([R, [0, 0, 1]])
    M = R3 @ M
    arr = cv2.warpPerspective(arr, M, (ww, hh), borderMode=cv2.BORDER_REPLICATE)
    if rng.random() < 0.2:  # italic shear
        sh = rng.uniform(-0.25, 0.1)
        S = np.array([[1, sh, -sh * hh / 2], [0, 1, 0]], dtype=np.float32)
        arr = cv2.warpAffine(arr, S, (ww, hh), borderMode=cv2.BORDER_REPLICATE)
    # crop jitter
    cx0 = rng.randint(0, max(1, pad_l // 2))
    cx1 = ww - rng.randint(0, max(1, pad_r // 2))
    cy0 = rng.randint(0, max(1, (ch - size) // 3))
    cy1 = hh - rng.randint(0, max(1, (ch - size) // 3))
    arr = arr[cy0:cy1, cx0:cx1]
    # glare / gradient
    hh, ww = arr.shape[:2]
    f: np.ndarray = arr.astype(np.float32)
    if rng.random() < 0.4:
        grad = np.linspace(rng.uniform(0.5, 1.2), rng.uniform(0.5, 1.2), ww)[None, :, None]
        f = f * grad
    if rng.random() < 0.25:
        cxg, cyg = rng.uniform(0, ww), rng.uniform(0, hh)
        rr = rng.uniform(0.2, 0.8) * ww
        yy, xx = np.mgrid[0:hh, 0:ww]
        g = np.exp(-((xx - cxg) ** 2 + (yy - cyg) ** 2) / (2 * rr**2))[..., None]
        f = f + g * rng.uniform(40, 160)
    f = f + rng.gauss(0, 1) * rng.uniform(0, 12) * np.random.default_rng(
        rng.randint(0, 1 << 30)
    ).standard_normal(f.shape)
    arr = np.clip(f, 0, 255).astype(np.uint8)
    pim = Image.fromarray(arr)
    # low resolution then upsample (small digits in a phone photo)
    if rng.random() < 0.5:
        s = rng.uniform(0.25, 0.8)
        pim = pim.resize((max(8, int(ww * s)), max(6, int(hh * s))), Image.Resampling.BILINEAR).resize(
            (ww, hh), Image.Resampling.BILINEAR
        )
    if rng.random() < 0.4:
        pim = pim.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 2.0)))
    if rng.random() < 0.5:
        buf = io.BytesIO()
        pim.save(buf, "JPEG", quality=rng.randint(25, 90))
        pim = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return np.asarray(pim), text


def _gen(args: tuple[int, int]) -> tuple[np.ndarray, list[str]]:
    seed, n = args
    rng = random.Random(seed)
    xs = np.zeros((n, H, W), np.uint8)
    ys = []
    for i in range(n):
        img, t = render(rng)
        xs[i] = (preprocess(img) * 255).astype(np.uint8)
        ys.append(t)
    return xs, ys


def build_dataset(n: int, seed: int, procs: int) -> tuple[np.ndarray, list[str]]:
    from multiprocessing import Pool

    chunk = 2000
    jobs = [(seed * 100003 + i, min(chunk, n - i * chunk)) for i in range(math.ceil(n / chunk))]
    with Pool(procs) as p:
        parts = p.map(_gen, jobs)
    return np.concatenate([x for x, _ in parts]), [t for _, ys in parts for t in ys]


def make_model():
    import torch.nn as nn

    def block(i: int, o: int) -> list[nn.Module]:
        return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.f = nn.Sequential(
                *block(1, 16),
                nn.MaxPool2d(2),  # 16x64
                *block(16, 32),
                nn.MaxPool2d(2),  # 8x32
                *block(32, 64),
                nn.MaxPool2d((2, 1)),  # 4x32
                *block(64, 64),
                nn.MaxPool2d((4, 1)),  # 1x32
            )
            self.seq = nn.Sequential(
                nn.Conv1d(64, 96, 5, padding=2),
                nn.ReLU(inplace=True),
                nn.Dropout(0.1),
                nn.Conv1d(96, 96, 5, padding=2),
                nn.ReLU(inplace=True),
                nn.Conv1d(96, len(ALPHABET) + 1, 1),
            )

        def forward(self, x):
            y = self.f(x).squeeze(2)  # B x C x T
            y = self.seq(y)  # B x K x T
            return y.permute(0, 2, 1).log_softmax(-1)  # B x T x K

    return Net()


def greedy(lp: np.ndarray) -> str:
    idx = lp.argmax(-1)
    out, prev = [], 0
    for i in idx:
        if i != 0 and i != prev:
            out.append(ALPHABET[i - 1])
        prev = i
    return "".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="ocr/models/digits.onnx")
    ap.add_argument("--n", type=int, default=40000)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    import torch

    torch.manual_seed(a.seed)
    torch.set_num_threads(max(1, a.procs))
    t0 = time.time()
    xs, ys = build_dataset(a.n, a.seed, a.procs)
    vx, vy = build_dataset(2000, a.seed + 999, a.procs)
    print(f"data {len(xs)} in {time.time() - t0:.0f}s", flush=True)
    model = make_model()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    steps = a.epochs * math.ceil(len(xs) / 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.15)
    ctc = torch.nn.CTCLoss(blank=0, zero_infinity=True)
    enc = [[ALPHABET.index(c) + 1 for c in t] for t in ys]
    for ep in range(a.epochs):
        model.train()
        perm = np.random.permutation(len(xs))
        tot = 0.0
        for b in range(0, len(perm), 128):
            ib = perm[b : b + 128]
            x = torch.from_numpy(xs[ib].astype(np.float32) / 255.0)[:, None]
            # cheap online augmentation: brightness/contrast jitter
            x = (
                x * torch.empty(len(ib), 1, 1, 1).uniform_(0.6, 1.2)
                + torch.empty(len(ib), 1, 1, 1).uniform_(-0.1, 0.15)
            ).clamp(0, 1)
            tg = [enc[i] for i in ib]
            tl = torch.tensor([len(t) for t in tg])
            flat = torch.tensor([c for t in tg for c in t])
            lp = model(x)  # B T K
            loss = ctc(lp.permute(1, 0, 2), flat, torch.full((len(ib),), lp.shape[1], dtype=torch.long), tl)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(ib)
        model.eval()
        with torch.no_grad():
            lp = model(torch.from_numpy(vx.astype(np.float32) / 255.0)[:, None]).numpy()
        acc = np.mean([greedy(p) == t for p, t in zip(lp, vy, strict=True)])
        print(
            f"epoch {ep} loss {tot / len(xs):.3f} val_exact {acc:.3f} t={time.time() - t0:.0f}s", flush=True
        )
    model.eval()
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    # keep the weights even if the ONNX export fails (needs the `onnx` package)
    torch.save(
        model.state_dict(), os.path.join(os.environ.get("TMPDIR", "/tmp"), os.path.basename(a.out) + ".pt")
    )
    dummy = torch.zeros(1, 1, H, W)
    torch.onnx.export(
        model,
        dummy,
        a.out,
        input_names=["x"],
        output_names=["logp"],
        dynamic_axes={"x": {0: "b"}, "logp": {0: "b"}},
        opset_version=17,
        dynamo=False,
    )
    print("wrote", a.out, os.path.getsize(a.out), "bytes")


if __name__ == "__main__":
    main()
