"""`aib simulate`: realistic event streams paced onto the platform bus, with end-to-end latency.

- `pacer`: a token bucket that holds the put rate to `--rate` without drift;
- `scenarios`: the streams (`payments`, `iot`, `shop`, `mixed`) as `SimEvent`s;
- `run`: puts them on a local bus, waits for the consumers, reads the outcome from the bus's
  archive and delivery records, and reports latency percentiles and lost events.
"""
