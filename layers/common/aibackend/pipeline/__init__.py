"""The transaction pipeline: ingest -> validate -> store, each stage its own function and queue.

`messages` is the contract between stages, `runs` the run table (counts per run, chunk and
stage), `ingest`, `validate` and `store` the stages' logic, free of Lambda and queues.
"""
