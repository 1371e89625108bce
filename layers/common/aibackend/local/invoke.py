"""One function's handler in this process, as Lambda invokes it: `aib invoke`, and the tests
`aib functions new` writes.

The environment is the one `aib dev` gives its functions (the variables CDK sets on AWS, with
local values: adapters, state folder, Powertools' namespace, the production version of each
model the function lists); it is put back as it was on leaving. The queues the function owns
(its input queues with their DLQs, its failure queue) exist in the state folder, as `aib dev`
creates them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from aibackend.adapters.local_queue import SqliteQueueService
from aibackend.catalog import Catalog
from aibackend.local.host import FunctionHost
from aibackend.local.triggers import queue_configs
from aibackend.settings import PlatformSettings, platform_settings


@contextmanager
def local_function(
    catalog: Catalog, name: str, settings: PlatformSettings
) -> Iterator[FunctionHost]:
    """Function `name` of `catalog`, loaded (INIT run) with `settings`' state folder.

    Raises `ModelLoadError` when a model it lists has no production version."""
    from aibackend.local.runtime import LocalRuntime

    saved = dict(os.environ)
    try:
        spec = catalog.get(name)
        runtime = LocalRuntime(catalog, settings)  # exports the environment; starts nothing
        for model in spec.models:
            runtime.pin(model)
        with SqliteQueueService(settings.state_dir / "queues.db") as queues:
            for config in queue_configs(spec):  # its queues and DLQs, as `aib dev` makes them
                queues.ensure(config)
        host = FunctionHost(spec)
        host.load()
        yield host
    finally:
        os.environ.clear()
        os.environ.update(saved)
        platform_settings.cache_clear()  # functions read them once per process
