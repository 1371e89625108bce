"""The label ledger on DynamoDB: the `LabelStore` protocol on a platform data table (string
partition key `id`, TTL attribute `expiration`, no sort key), shared by every model.

Items, all keyed by `id`:
- `<model>#P#<inference id>`: a captured prediction (`ts`, `score`, `predicted`, `groups`);
- `<model>#L#<inference id>`: its label (`label`, `received_at`);
- `<model>#H#<YYYY-MM-DDTHH>#<shard>`: the inference ids captured in that hour, as a string
  set spread over `shards` items (an item holds at most 400 KB: 16 shards keep an hour of a
  few hundred thousand predictions), so a window is found without a scan or an index.

Idempotent like the SQLite ledger: the hour index is a set (adding twice changes nothing)
and is written before the prediction, whose put is conditional on its absence; a label put is
conditional on there being none, or an older different one (a correction).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from aibackend.monitoring.labels import CapturedPrediction, JoinedWindow, Label, LabelsWritten

SHARDS = 16
#: Ledger items expire (DynamoDB TTL) this long after their prediction or label.
RETENTION = timedelta(days=400)
_BATCH_GET = 100


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


class DynamoLabelStore:
    """One model's ledger in a shared DynamoDB table."""

    def __init__(self, table: str, model: str, client: Any = None, shards: int = SHARDS) -> None:
        if client is None:
            import boto3

            client = boto3.client("dynamodb")
        self._ddb = client
        self._table = table
        self._model = model
        self._shards = shards

    # --- keys --------------------------------------------------------------------------

    def _pred(self, iid: str) -> str:
        return f"{self._model}#P#{iid}"

    def _label(self, iid: str) -> str:
        return f"{self._model}#L#{iid}"

    def _hour(self, t: datetime, shard: int) -> str:
        return f"{self._model}#H#{_aware(t).astimezone(UTC):%Y-%m-%dT%H}#{shard}"

    def _shard(self, iid: str) -> int:
        return int.from_bytes(hashlib.blake2b(iid.encode(), digest_size=2).digest()) % self._shards

    # --- writes ------------------------------------------------------------------------

    def put_predictions(self, records: Sequence[CapturedPrediction]) -> int:
        by_hour: dict[str, set[str]] = {}
        for r in records:
            by_hour.setdefault(self._hour(r.time, self._shard(r.inference_id)), set()).add(
                r.inference_id
            )
        for key, ids in by_hour.items():  # first: a retry after a crash re-adds, harmlessly
            self._ddb.update_item(
                TableName=self._table,
                Key={"id": {"S": key}},
                UpdateExpression="ADD ids :ids",
                ExpressionAttributeValues={":ids": {"SS": sorted(ids)}},
            )
        new = 0
        for r in records:
            item = {
                "id": {"S": self._pred(r.inference_id)},
                "ts": {"N": repr(_aware(r.time).timestamp())},
                "score": {"N": repr(r.score)},
                "predicted": {"N": str(r.predicted)},
                "groups": {"S": json.dumps(r.groups, sort_keys=True)},
                "expiration": {"N": str(int((_aware(r.time) + RETENTION).timestamp()))},
            }
            new += self._put_if(item, "attribute_not_exists(id)", {})
        return new

    def put_labels(self, labels: Sequence[Label]) -> LabelsWritten:
        latest: dict[str, Label] = {}
        for lab in labels:
            old = latest.get(lab.inference_id)
            if old is None or lab.received_at > old.received_at:
                latest[lab.inference_id] = lab
        ids = sorted(latest)
        known = self._get_many([self._label(i) for i in ids])
        preds = self._get_many([self._pred(i) for i in ids])
        new = corrected = 0
        times: list[datetime] = []
        for iid in ids:
            lab, had = latest[iid], known.get(self._label(iid))
            received = _aware(lab.received_at).timestamp()
            if had is None:
                kind = "new"
            elif int(had["label"]["N"]) != lab.label and received > float(had["received_at"]["N"]):
                kind = "corrected"
            else:
                continue
            item = {
                "id": {"S": self._label(iid)},
                "label": {"N": str(lab.label)},
                "received_at": {"N": repr(received)},
                "expiration": {"N": str(int(received + RETENTION.total_seconds()))},
            }
            ok = self._put_if(
                item,
                "attribute_not_exists(id) OR received_at < :r",
                {":r": {"N": repr(received)}},
            )
            if not ok:  # a concurrent writer got there first: nothing changed here
                continue
            new, corrected = (new + 1, corrected) if kind == "new" else (new, corrected + 1)
            pred = preds.get(self._pred(iid))
            if pred is not None:
                times.append(datetime.fromtimestamp(float(pred["ts"]["N"]), UTC))
        return LabelsWritten(
            new=new,
            corrected=corrected,
            duplicates=len(labels) - new - corrected,
            unmatched=sum(self._pred(i) not in preds for i in ids),
            prediction_times=sorted(set(times)),
        )

    def _put_if(self, item: dict[str, Any], condition: str, values: dict[str, Any]) -> bool:
        args: dict[str, Any] = {"ConditionExpression": condition}
        if values:
            args["ExpressionAttributeValues"] = values
        try:
            self._ddb.put_item(TableName=self._table, Item=item, **args)
        except self._ddb.exceptions.ConditionalCheckFailedException:
            return False
        return True

    # --- reads -------------------------------------------------------------------------

    def window(self, start: datetime, end: datetime) -> JoinedWindow:
        lo, hi = _aware(start), _aware(end)
        shards = self._get_many(
            [self._hour(h, s) for h in _hours(lo, hi) for s in range(self._shards)]
        )
        ids = sorted({i for item in shards.values() for i in item.get("ids", {}).get("SS", [])})
        preds = self._get_many([self._pred(i) for i in ids])
        inside = [
            i
            for i in ids
            if (p := preds.get(self._pred(i))) is not None
            and lo.timestamp() <= float(p["ts"]["N"]) < hi.timestamp()
        ]
        labels = self._get_many([self._label(i) for i in inside])
        joined = [i for i in inside if self._label(i) in labels]
        rows = [(preds[self._pred(i)], labels[self._label(i)]) for i in joined]
        groups = [json.loads(p["groups"]["S"]) for p, _ in rows]
        names = sorted({k for g in groups for k in g})
        return JoinedWindow(
            start=lo,
            end=hi,
            predictions=len(inside),
            scores=np.array([float(p["score"]["N"]) for p, _ in rows], dtype=np.float64),
            predicted=np.array([int(p["predicted"]["N"]) for p, _ in rows], dtype=np.int8),
            labels=np.array([int(lab["label"]["N"]) for _, lab in rows], dtype=np.int8),
            groups={k: np.array([g.get(k) for g in groups], dtype=object) for k in names},
        )

    def _get_many(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Items by id (absent ones left out), BatchGetItem 100 at a time, unprocessed retried."""
        out: dict[str, dict[str, Any]] = {}
        wanted = list(dict.fromkeys(keys))
        for start in range(0, len(wanted), _BATCH_GET):
            request: dict[str, Any] = {
                self._table: {
                    "Keys": [{"id": {"S": k}} for k in wanted[start : start + _BATCH_GET]]
                }
            }
            while request:
                got = self._ddb.batch_get_item(RequestItems=request)
                for item in got["Responses"].get(self._table, []):
                    out[item["id"]["S"]] = item
                request = got.get("UnprocessedKeys") or {}
        return out


def _hours(lo: datetime, hi: datetime) -> Iterator[datetime]:
    t = lo.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    while t < hi:
        yield t
        t += timedelta(hours=1)
