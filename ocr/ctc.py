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


def log_likelihood_batch(p: np.ndarray, labels: list[list[int]]) -> np.ndarray:
    """log P(label | frames) for many labels at once (one forward pass over the frames, vectorised
    over labels and states); p: T x K probabilities, column 0 blank.  Used to score a claimed value
    against all its one-edit neighbours, which the per-label loop above would make too slow."""
    n = len(labels)
    if n == 0:
        return np.zeros(0)
    T = p.shape[0]
    lp = np.log(np.maximum(p, 1e-30))
    lens = np.array([len(lab) for lab in labels])
    S = 2 * int(lens.max()) + 1
    ext = np.zeros((n, S), dtype=np.int64)
    for i, lab in enumerate(labels):
        if lab:
            ext[i, 1 : 2 * len(lab) : 2] = lab
    skip = np.zeros((n, S), dtype=bool)
    skip[:, 2:] = (ext[:, 2:] != 0) & (ext[:, 2:] != ext[:, :-2])
    neg = -np.inf
    a = np.full((n, S), neg)
    a[:, 0] = lp[0, 0]
    if S > 1:
        a[:, 1] = np.where(lens > 0, lp[0, ext[:, 1]], neg)
    with np.errstate(invalid="ignore"):
        for t in range(1, T):
            s1 = np.full((n, S), neg)
            s1[:, 1:] = a[:, :-1]
            s2 = np.full((n, S), neg)
            s2[:, 2:] = np.where(skip[:, 2:], a[:, :-2], neg)
            a = np.logaddexp(np.logaddexp(a, s1), s2) + lp[t][ext]
    rows = np.arange(n)
    last = a[rows, 2 * lens]
    prev = np.where(lens > 0, a[rows, np.maximum(2 * lens - 1, 0)], neg)
    return np.logaddexp(last, prev)


def one_edit_neighbours(label: str, alphabet: str) -> list[str]:
    """Every string one substitution, insertion or deletion away from `label` (over `alphabet`):
    the values a citizen would type by mistyping or misreading one digit."""
    out: set[str] = set()
    for i, c in enumerate(label):
        out.add(label[:i] + label[i + 1 :])
        for a in alphabet:
            if a != c:
                out.add(label[:i] + a + label[i + 1 :])
    for i in range(len(label) + 1):
        for a in alphabet:
            out.add(label[:i] + a + label[i:])
    out.discard(label)
    out.discard("")
    return sorted(out)
