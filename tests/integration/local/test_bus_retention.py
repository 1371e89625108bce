"""`aib dev`'s bus keeps archived events and delivered rows as long as the settings say."""

from __future__ import annotations

import os
import time
from pathlib import Path

from aibackend.catalog import load_catalog
from aibackend.local.runtime import LocalRuntime
from aibackend.ports import PutEvent
from aibackend.settings import PlatformSettings
from tests.support import wait_for, write_functions

LISTENER = (
    """
    [[events]]
    pattern = { source = ["test.app"], detail-type = ["Ping"] }
    """,
    """
    def handler(event, context):
        return None
    """,
)


def test_the_runtimes_bus_applies_the_retention_settings(tmp_path: Path) -> None:
    # GIVEN `aib dev` settings from the environment: a 12-hour archive, delivered rows 1 hour
    env = {
        "AIB_STATE_DIR": str(tmp_path / "state"),
        "AIB_BUS_ARCHIVE_DAYS": "0.5",
        "AIB_BUS_DELIVERED_HOURS": "1",
    }
    settings = PlatformSettings.from_env(env)
    catalog = load_catalog(write_functions(tmp_path / "functions", {"listener": LISTENER}))
    saved = dict(os.environ)
    os.environ.update(env)
    rt = LocalRuntime(catalog, settings)
    try:
        rt.start()
        # WHEN an event is delivered
        rt.bus.put_events([PutEvent(source="test.app", detail_type="Ping", detail={})])
        wait_for(lambda: rt.bus.stats().delivered == 1)
        now = time.time()
        # THEN its delivered row goes after an hour, the event itself after 12 hours
        assert rt.bus.sweep(now=now + 3_000) == (0, 0)
        assert rt.bus.sweep(now=now + 3_700) == (0, 1)
        assert rt.bus.sweep(now=now + 43_000) == (0, 0)
        assert rt.bus.sweep(now=now + 43_300) == (1, 0)
    finally:
        rt.stop()
        os.environ.clear()
        os.environ.update(saved)
