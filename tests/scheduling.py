"""How `make test` hands the suite to its pytest-xdist workers: one unit of work per folder with
its own conftest.py (else per file), in collection order, and a run that still ends when a
worker dies.

pytest-xdist 3.8.0's `LoadScopeScheduling` (the newest release) can hang a run for good after a
worker crash (a segfault, or pytest-timeout ending a hung test):

- it puts the dead worker's whole workload back in the queue, units it had finished included;
  such a unit goes out later as an empty run request that never completes, and when the tail
  of the queue is only those, every worker waits for work that never comes
  (pytest-xdist#1378, #1363): CI ran out of its time limit at 98% that way;
- it queues the test the worker died on again, so a test that kills its process kills the
  replacement worker too (#1371), although the crash was already reported as its failure;
- a worker given a unit of one test while the queue is empty waits for a second test or a
  shutdown that does not come (#1327).

`FolderScheduling` requeues only what was not run, counts the crashed test as done (reported
failed), gives a worker a second test whenever it holds one, and tells it to finish once the
queue is empty.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from xdist.scheduler import LoadScopeScheduling


class FolderScheduling(LoadScopeScheduling):
    """`--dist loadscope` with `scope_of`'s units and the crash handling above."""

    scope_of: Callable[[str], str]

    def __init__(self, config: Any, log: Any, scope_of: Callable[[str], str]) -> None:
        super().__init__(config, log)
        self.scope_of = scope_of

    def _split_scope(self, nodeid: str) -> str:
        return self.scope_of(nodeid)

    def remove_node(self, node: Any) -> str | None:
        """Forget a worker (finished, or dead); for a dead one, the test it died on.

        Its unfinished units go back to the front of the queue without that test (xdist has
        reported it failed), its finished ones not at all."""
        workload: dict[str, dict[str, bool]] = self.assigned_work.pop(node)
        crashed = next(
            (nodeid for unit in workload.values() for nodeid, done in unit.items() if not done),
            None,
        )
        if crashed is None:
            return None
        workload[self._split_scope(crashed)][crashed] = True
        unfinished = {s: u for s, u in workload.items() if not all(u.values())}
        for scope, unit in reversed(unfinished.items()):
            self.workqueue[scope] = unit
            self.workqueue.move_to_end(scope, last=False)
        for other in self.assigned_work:
            self._reschedule(other)
        return crashed

    def _reschedule(self, node: Any) -> None:
        super()._reschedule(node)  # one more unit when it has two tests or fewer left
        # A worker runs a test once it knows the next one, or that none follows: one holding
        # a single test (a replacement given a one-test unit) would wait for ever.
        while not node.shutting_down and self.workqueue and self._pending(node) < 2:
            self._assign_work_unit(node)
        if not self.workqueue and not node.shutting_down:
            node.shutdown()

    def _pending(self, node: Any) -> int:
        return self._pending_of(self.assigned_work[node])
