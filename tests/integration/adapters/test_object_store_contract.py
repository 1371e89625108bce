"""One contract, two adapters: the local folder store behaves like S3."""

from __future__ import annotations

from pathlib import Path

import pytest

from aibackend.errors import InvalidKeyError, ObjectNotFoundError
from aibackend.ports import ObjectStore


def test_put_then_get_returns_the_same_bytes_and_metadata(store: ObjectStore) -> None:
    # GIVEN an empty bucket
    # WHEN an object is written with a content type and metadata
    info = store.put(
        "a/b/c.json", b'{"x": 1}', content_type="application/json", metadata={"k": "v"}
    )
    # THEN it reads back byte for byte, and head reports size, etag and metadata
    assert store.get("a/b/c.json") == b'{"x": 1}'
    head = store.head("a/b/c.json")
    assert head.size == 8 == info.size
    assert head.etag == info.etag
    assert head.content_type == "application/json"
    assert head.metadata == {"k": "v"}


def test_etag_is_the_md5_of_the_content_like_s3(store: ObjectStore) -> None:
    import hashlib

    info = store.put("k", b"hello")
    assert info.etag == hashlib.md5(b"hello", usedforsecurity=False).hexdigest()


def test_overwrite_replaces_content(store: ObjectStore) -> None:
    store.put("k", b"one")
    store.put("k", b"two")
    assert store.get("k") == b"two"


def test_missing_object_raises_not_found(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFoundError, match="does not exist"):
        store.get("nope")
    with pytest.raises(ObjectNotFoundError):
        store.head("nope")


def test_list_filters_by_prefix_in_key_order(store: ObjectStore) -> None:
    for key in ("raw/2.csv", "raw/1.csv", "curated/1.parquet", "rawx"):
        store.put(key, b"x")
    assert [o.key for o in store.list("raw/")] == ["raw/1.csv", "raw/2.csv"]
    assert [o.key for o in store.list()] == ["curated/1.parquet", "raw/1.csv", "raw/2.csv", "rawx"]


def test_delete_removes_and_is_idempotent(store: ObjectStore) -> None:
    store.put("k", b"x")
    store.delete("k")
    store.delete("k")
    with pytest.raises(ObjectNotFoundError):
        store.get("k")


def test_download_file_writes_the_object(store: ObjectStore, tmp_path: Path) -> None:
    store.put("m/model.onnx", b"\x00\x01binary")
    dest = store.download_file("m/model.onnx", tmp_path / "out" / "model.onnx")
    assert dest.read_bytes() == b"\x00\x01binary"


@pytest.mark.parametrize("key", ["../escape", "/abs", "a/../../b", "a/./b", "a//b", "", "dir/"])
def test_keys_that_could_escape_the_bucket_are_refused(store: ObjectStore, key: str) -> None:
    with pytest.raises(InvalidKeyError):
        store.put(key, b"x")
