from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT.parent / "shared" / "ocr-dev"


def _load_generator():  # the fixtures folder is not a package
    spec = importlib.util.spec_from_file_location(
        "ocr_fixture_generate", ROOT / "fixtures" / "ocr" / "generate.py"
    )
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["ocr_fixture_generate"] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def gen():
    return _load_generator()


@pytest.fixture
def rng():
    return random.Random(1234)


@pytest.fixture(scope="session")
def real_dir() -> Path:
    if not (REAL / "manifest.csv").exists():
        pytest.skip("real development photos (../shared/ocr-dev) are not present")
    return REAL
