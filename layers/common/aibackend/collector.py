"""The garbage collector's settings for functions that work on batches of rows.

CPython's cyclic collector runs a young-generation pass every 700 net container allocations,
and a full pass over every tracked object every 100 of those (`gc.get_threshold()`: 700, 10,
10). A full pass walks INIT's objects too: the imported libraries, pydantic's schemas, the
model, 100,000+ objects in a pipeline stage, every one still alive. A chunk of thousands of
rows allocates tens of thousands of short-lived containers (a dict per row, a list per column
value), so each chunk paid for several full passes over objects that can never be garbage.

`tune_for_batches()` makes the young generation 10,000 allocations: passes are 14 times rarer,
a chunk's temporaries are mostly freed by reference counting before one runs, and cyclic
garbage still goes within ~10,000 allocations. Measured on 1,000,000 rows through `aib dev
--isolate` (CPU seconds of the four stage functions, docs/pipeline.md): 68.2 s at the default,
62.1 s with it; `gc.freeze()` after INIT gave about the same (62.7 s with both) but keeps
the objects of a module that `aib dev` reloads forever, so it is not used.

The setting is per process: on AWS each function's own; in `aib dev` without `--isolate`,
the whole runtime's (harmless: it only collects less often).

`freeze_after_startup()` is for processes whose startup objects live as long as they do and
are never reloaded: an `aib dev --isolate` worker after its INIT (a new version gets a new
worker) and the `--isolate` runtime's own process once started (its functions run in the
workers). A full pass there walked every import and, in `aib dev`, the demo models' training:
measured in the runtime's process under the mixed stream at 1,000 events/s, 67-86 ms each,
every 5-10 s, all the bus's dispatchers stalled meanwhile; 30 ms at most once frozen. A
worker's full pass after INIT took 34-36 ms (fraud_events, pricing), ~0 once frozen.
"""

from __future__ import annotations

import gc

#: Young-generation allocations between passes, then CPython's own ratios for the older two.
BATCH_THRESHOLDS = (10_000, 10, 10)


def tune_for_batches() -> None:
    """Call once at INIT, in a function that processes batches of rows."""
    gc.set_threshold(*BATCH_THRESHOLDS)


def freeze_after_startup() -> None:
    """Move every object alive now to the collector's permanent generation, which later passes
    skip (startup's own garbage is collected first, so it is not kept)."""
    gc.collect()
    gc.freeze()
