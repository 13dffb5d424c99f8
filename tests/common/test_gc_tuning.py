"""Objects made while a process starts are frozen out of the garbage collector's full
passes (a ~35 ms pause in the gateway, the tail of its latency); what is made afterwards
is still collected."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from gateway.app import create_app
from gateway.settings import GatewaySettings
from services.common.gc_tuning import freeze_startup_objects


@pytest.fixture(autouse=True)
def unfrozen():
    gc.unfreeze()
    yield
    gc.unfreeze()  # the rest of the test session collects as usual


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


def test_startup_objects_are_frozen_and_later_garbage_is_still_collected():
    assert gc.get_freeze_count() == 0
    started = Node()
    freeze_startup_objects()
    assert gc.get_freeze_count() > 0
    assert any(obj is started for obj in gc.get_objects()) is False  # out of every pass
    later = Node()
    alive = weakref.ref(later)
    del later
    gc.collect()
    assert alive() is None


def test_the_gateway_freezes_once_its_app_is_built():
    app = create_app(GatewaySettings(_env_file=None))

    async def serve_briefly() -> int:
        async with app.router.lifespan_context(app):
            return gc.get_freeze_count()

    assert gc.get_freeze_count() == 0
    assert asyncio.run(serve_briefly()) > 0
