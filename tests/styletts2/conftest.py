"""Pytest fixtures for the StyleTTS 2 parity tests (helpers live in ``reference.py``)."""

import pytest
import torch

from tests.styletts2.reference import FIXTURE_SETS, FIXTURES, FixtureSet


@pytest.fixture(params=FIXTURE_SETS or [pytest.param(None, marks=pytest.mark.skip(reason=f"no fixtures at {FIXTURES}"))])
def fixture_set(request) -> FixtureSet:
    """Parametrised over every fixture set found (tiny_istftnet, tiny_hifigan, …)."""
    torch.set_num_threads(1)  # the fixtures were produced single-threaded
    return FixtureSet(request.param)
