"""CTC helpers shared by the engines: restricted greedy decoding with character positions and
confidences, and the forward (log-)likelihood of a given label, used to score claims."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Decoded:
    text: str
    confs: list[float]  # per-character max posterior
    frames: list[int]  # frame index of each character's peak
    alts: list[list[tuple[str, float]]]  # per character, the top-3 (char, prob) at its peak frame


def restrict(probs: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Keep the given vocabulary columns (col 0 must be blank) and renormalise per frame."""
    p = probs[:, cols].astype(np.float64)
    s = p.sum(axis=1, keepdims=True)
    return p / np.maximum(s, 1e-12)


def greedy(p: np.ndarray, alphabet: str) -> Decoded:
    """p: T x (1+len(alphabet)) probabilities, column 0 blank."""
    idx = p.argmax(axis=1)
    text, confs, frames, alts = [], [], [], []
    prev = 0
    t = 0
    T = len(idx)
    while t < T:
        i = int(idx[t])
        if i == 0:
            prev = 0
            t += 1
            continue
        # a run of the same symbol
        t1 = t
        while t1 + 1 < T and int(idx[t1 + 1]) == i:
            t1 += 1
        if i != prev or True:
            seg = p[t : t1 + 1]
            k = t + int(seg[:, i].argmax())
            text.append(alphabet[i - 1])
            confs.append(float(p[t : t1 + 1, i].max()))
            frames.append(k)
            order = np.argsort(-p[k, 1:])[:3]
            alts.append([(alphabet[j], float(p[k, j + 1])) for j in order])
        prev = i
        t = t1 + 1
    return Decoded("".join(text), confs, frames, alts)


def log_likelihood(p: np.ndarray, label: list[int]) -> float:
    """log P(label | frames) under CTC; p: T x K probabilities (col 0 blank), label: class indices."""
    T = p.shape[0]
    lp = np.log(np.maximum(p, 1e-30))
    ext = [0]
    for c in label:
        ext += [c, 0]
    S = len(ext)
    if S > 2 * T + 1:
        return -1e9
    a = np.full(S, -np.inf)
    a[0] = lp[0, 0]
    if S > 1:
        a[1] = lp[0, ext[1]]
    for t in range(1, T):
        prev = a
        a = np.full(S, -np.inf)
        for s in range(S):
            v = prev[s]
            if s >= 1:
                v = np.logaddexp(v, prev[s - 1])
            if s >= 2 and ext[s] != 0 and ext[s] != ext[s - 2]:
                v = np.logaddexp(v, prev[s - 2])
            a[s] = v + lp[t, ext[s]]
    res = a[S - 1]
    if S > 1:
        res = np.logaddexp(res, a[S - 2])
    return float(res)


def best_path_log_prob(p: np.ndarray) -> float:
    return float(np.log(np.maximum(p.max(axis=1), 1e-30)).sum())
