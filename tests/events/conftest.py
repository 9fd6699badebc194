"""Fixtures of the event-log tests: a feed made of registry events only, and the horizon."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from apps.events import registry
from apps.events.registry import EventSource
from apps.events.selectors import safe_horizon
from apps.registry.models import RegistryEvent, RegistryEventType
from tests.events.factories import as_feed_event

HORIZON_WAIT_SECONDS = 60.0


@pytest.fixture
def registry_feed(monkeypatch: pytest.MonkeyPatch) -> EventSource:
    """The feed reads registry events only (other apps' tables are empty in these tests, but
    their serialisers are theirs to test)."""
    source = EventSource(
        model=RegistryEvent,
        serialize=as_feed_event,
        queryset=lambda: RegistryEvent.objects.select_related("model"),
    )
    monkeypatch.setattr(registry, "_sources", {"registry.RegistryEvent": source})
    return source


@pytest.fixture
def two_source_feed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two registered sources over two disjoint sets of rows, as two apps' tables would be."""
    aliases = EventSource(
        model=RegistryEvent,
        serialize=as_feed_event,
        queryset=lambda: RegistryEvent.objects.select_related("model").filter(
            type=RegistryEventType.ALIAS_MOVED
        ),
    )
    others = EventSource(
        model=RegistryEvent,
        serialize=as_feed_event,
        queryset=lambda: RegistryEvent.objects.select_related("model").exclude(
            type=RegistryEventType.ALIAS_MOVED
        ),
    )
    monkeypatch.setattr(registry, "_sources", {"test.aliases": aliases, "test.others": others})


@pytest.fixture
def wait_for_horizon() -> Callable[[int], None]:
    """Wait until every transaction with an xid up to `xid` has finished.

    The feed's horizon is cluster-wide: a test of another engineer holding a transaction
    open on the same server holds it back for a moment. This waits; it asserts no timing.
    """

    def wait(xid: int) -> None:
        deadline = time.monotonic() + HORIZON_WAIT_SECONDS
        while safe_horizon() <= xid:
            if time.monotonic() > deadline:
                pytest.fail(f"the horizon stayed at or below xid {xid}")
            time.sleep(0.05)

    return wait
