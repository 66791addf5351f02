"""The heap as `python -m bot` leaves it before its first update (bot/app.py: settle_heap)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from bot.app import YOUNG_GENERATION_THRESHOLD, settle_heap


@pytest.fixture
def restored() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored")
def test_the_start_ups_objects_are_frozen_and_young_collections_rarer() -> None:
    gc.set_threshold(700, 10, 10)
    kept = [object() for _ in range(10)]
    settle_heap()
    assert gc.get_freeze_count() >= len(kept)
    assert gc.get_threshold() == (YOUNG_GENERATION_THRESHOLD, 10, 10)
    assert YOUNG_GENERATION_THRESHOLD > 700
