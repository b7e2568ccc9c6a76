"""Reuse lookup through the perceptual hash's bands: every photo within the distance is found,
nothing further is, without reading every hash."""

from __future__ import annotations

import random

import asyncpg
from aiohttp.test_utils import TestClient
from hypothesis import given
from hypothesis import strategies as st

from storage.photos import band_neighbours, phash_bits, reuse_matches
from tests.conftest import TokenFactory
from tests.photos.conftest import enrol


@given(
    st.integers(0, 2**64 - 1),
    st.integers(0, 15),
    st.lists(st.integers(0, 63), max_size=15, unique=True),
)
def test_every_hash_within_the_distance_shares_a_band_value(a: int, distance: int, flips: list[int]) -> None:
    b = a
    for bit in flips[:distance]:
        b ^= 1 << bit
    signed = a - (1 << 64) if a >= 1 << 63 else a
    bands = band_neighbours(signed, distance)
    assert bands is not None
    assert any((b >> shift) & 0xFFFF in set(values) for shift, values in zip((48, 32, 16, 0), bands, strict=True))


def test_a_wide_distance_reads_every_hash() -> None:
    assert band_neighbours(0, 16) is None
    assert [len(v) for v in band_neighbours(0, 8) or []] == [137] * 4  # 1 + 16 + 120 per band


def _spread(bits: int, n: int, rng: random.Random) -> int:
    """`bits` with n bits flipped, spread evenly over the four bands (the hardest case)."""
    for i in range(n):
        band = i % 4
        bits ^= 1 << (band * 16 + rng.randrange(16) if i < 4 else band * 16 + 8 + i // 4)
    return bits


async def test_photos_within_the_distance_are_found_and_no_others(
    photo_client: TestClient, make_token: TokenFactory, pool: asyncpg.Pool
) -> None:
    c = await enrol(photo_client, make_token)
    rng = random.Random(3)
    ours = rng.getrandbits(64)
    hashes = {
        "exact-bytes": ours ^ 0xFFFF,  # same bytes: found at distance 0 whatever its hash
        "d8": _spread(ours, 8, rng),
        "d9": _spread(ours, 9, rng),
        "far": ours ^ (2**64 - 1),
    }
    sha = {name: f"{rng.getrandbits(256):064x}" for name in ["ours", *hashes]}
    sha["exact-bytes"] = sha["ours"]
    assert bin(ours ^ hashes["d8"]).count("1") == 8 and bin(ours ^ hashes["d9"]).count("1") == 9
    submission: dict[str, int] = {}
    async with pool.acquire() as conn:
        for name, bits in [("ours", ours), *((n, b) for n, b in hashes.items() if n != "exact-bytes")]:
            await conn.execute(
                "insert into photos (sha256, phash, phash_bits, content_type, size_bytes) values ($1, $2, $3, 'image/jpeg', 1)",
                sha[name],
                f"{bits:016x}",
                phash_bits(f"{bits:016x}"),
            )
        for name in ["ours", "exact-bytes", "d8", "d9", "far"]:
            submission[name] = await conn.fetchval(
                """insert into photo_submissions (participation_id, stage, claimed_km, dashboard_sha256, plate_sha256)
                   values ($1, $2, $3, $4, $4) returning id""",
                c.participation_id,
                "mid" if name == "exact-bytes" else "start",  # the same photos again: another stage
                len(submission),
                sha[name],
            )
        # the photos table holds more than these: the band lookup must not depend on its size
        noise = [(f"{rng.getrandbits(256):064x}", rng.getrandbits(63)) for _ in range(2000)]
        await conn.executemany(
            "insert into photos (sha256, phash_bits, content_type, size_bytes) values ($1, $2, 'image/jpeg', 1)", noise
        )
        found = await reuse_matches(conn, submission["ours"], {"dashboard": (sha["ours"], f"{ours:016x}")}, 8)
        by_submission = {m["other_submission_id"]: (m["kind"], m["distance"]) for m in found}
        assert by_submission == {submission["exact-bytes"]: ("exact", 0), submission["d8"]: ("similar", 8)}
        # a distance too wide for the bands reads every hash, and finds the same way
        found = await reuse_matches(conn, submission["ours"], {"dashboard": (sha["ours"], f"{ours:016x}")}, 16)
        assert {m["other_submission_id"] for m in found} >= {submission["d8"], submission["d9"]}
