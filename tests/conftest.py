"""Shared fixtures for the corrlib test suite (kept deliberately small)."""

from __future__ import annotations

import os
import pathlib

import numpy as np
import pytest
from hypothesis import settings

# Property-based tests are reproducible: the "ci" profile (the default) derandomizes Hypothesis,
# so a run draws the same examples every time; HYPOTHESIS_PROFILE=explore searches afresh.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("explore", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

DATA_DIR = pathlib.Path(__file__).parent / "data"


@pytest.fixture
def rng() -> np.random.Generator:
    """A fixed-seed generator, fresh for every test."""
    return np.random.default_rng(20260128)


@pytest.fixture
def data_dir() -> pathlib.Path:
    """Folder of the stored reference data (tests/data)."""
    return DATA_DIR
