"""Shared fixtures for the corrlib test suite (kept deliberately small)."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

DATA_DIR = pathlib.Path(__file__).parent / "data"


@pytest.fixture
def rng() -> np.random.Generator:
    """A fixed-seed generator, fresh for every test."""
    return np.random.default_rng(20260128)


@pytest.fixture
def data_dir() -> pathlib.Path:
    """Folder of the stored reference data (tests/data)."""
    return DATA_DIR
