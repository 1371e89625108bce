"""The model folder vouches for itself: the card's sha256 covers model.onnx, whose manifest
covers every other file; the tokenizer cuts like sentence-transformers; the package pushes
to AWS with its model.tar.gz (moto)."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import pytest

from aibackend.embeddings.artifact import TOKENIZER_FILE, index_file, read_artifact
from aibackend.embeddings.backends import WordPieces, load_backend, onnx_session
from aibackend.embeddings.package import TARBALL, tarball_key, write_tarball
from aibackend.errors import ModelLoadError
from aibackend.models.card import MODEL_FILE, ModelCard
from tests.support import create_registry_table


@pytest.fixture
def folder(tiny_model_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))


def test_the_manifest_lists_every_file_beside_the_registered_three(folder: Path) -> None:
    meta = onnx_session(folder / MODEL_FILE).get_modelmeta().custom_metadata_map
    artifact = read_artifact(folder, meta)
    assert sorted(artifact.files) == [index_file("products"), TOKENIZER_FILE]
    assert artifact.index_names() == ["products"]
    artifact.verify(artifact.files)  # as built: nothing to report


def test_a_changed_file_stops_the_server_from_loading(folder: Path) -> None:
    # GIVEN a tokenizer edited after the build
    tok = folder / TOKENIZER_FILE
    tok.write_text(tok.read_text().replace('"[UNK]"', '"[UNKNOWN]"', 1))
    # WHEN the server loads the folder THEN it refuses, naming the file and the fix
    with pytest.raises(ModelLoadError, match=r"tokenizer.json: sha256 .* does not match"):
        load_backend(folder)


def test_a_graph_without_the_build_metadata_is_refused(folder: Path, tmp_path: Path) -> None:
    import onnx

    from aibackend.models.card import sha256_file

    model = onnx.load(str(folder / MODEL_FILE))
    del model.metadata_props[:]
    onnx.save(model, str(folder / MODEL_FILE))
    card = ModelCard.read(folder)
    card.model_copy(update={"sha256": sha256_file(folder / MODEL_FILE)}).write(folder)
    with pytest.raises(ModelLoadError, match="not written by `aib build embeddings`"):
        load_backend(folder)


def test_word_pieces_cut_long_texts_keeping_the_closing_sep(folder: Path) -> None:
    tokenize = WordPieces(folder / TOKENIZER_FILE, max_tokens=6)
    ids, mask, counts = tokenize(["mug", "mug " * 10])
    sep = tokenize.sep_id
    assert counts == [3, 12]
    assert ids.shape == (2, 6)
    assert mask.tolist() == [[1, 1, 1, 0, 0, 0], [1] * 6]
    assert ids[0, 2] == sep and ids[1, 5] == sep
    assert ids[0, 3] == tokenize.pad_id


def test_the_tarball_holds_the_whole_folder_with_the_given_card(
    folder: Path, tmp_path: Path
) -> None:
    card = ModelCard.read(folder).model_copy(update={"version": 7})
    archive = write_tarball(folder, tmp_path / TARBALL, card=card)
    with tarfile.open(archive) as tar:
        names = sorted(tar.getnames())
        packed = ModelCard.model_validate_json(tar.extractfile("model.json").read())  # type: ignore[union-attr]
    assert names == sorted(
        ["baseline.json", "model.json", "model.onnx", TOKENIZER_FILE, index_file("products")]
    )
    assert packed.version == 7


def test_push_registers_on_aws_and_uploads_the_tarball(
    embeddings_state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3
    from moto import mock_aws

    from aibackend.adapters import model_registry
    from aibackend.embeddings.package import push
    from aibackend.settings import PlatformSettings

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(
            Bucket="models-123", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        create_registry_table(boto3.client("dynamodb"), "aib-model-registry")
        # WHEN the local production version is pushed twice, the second time promoted
        lines: list[str] = []
        local = PlatformSettings(state_dir=embeddings_state)
        push(
            "embeddings",
            local_settings=local,
            bucket="models-123",
            table="aib-model-registry",
            echo=lines.append,
        )
        version = push(
            "embeddings",
            local_settings=local,
            bucket="models-123",
            table="aib-model-registry",
            promote=True,
            echo=lines.append,
        )
        # THEN AWS has v2 as production, and its model.tar.gz carries a card saying v2
        assert version == 2
        remote = model_registry(PlatformSettings(adapters="aws", model_bucket="models-123"))
        prod = remote.production("embeddings")
        assert prod is not None and prod.version == 2
        body = s3.get_object(Bucket="models-123", Key=tarball_key("embeddings", 2))["Body"]
        archive = Path(embeddings_state.parent / "pushed.tar.gz")
        archive.write_bytes(body.read())
        with tarfile.open(archive) as tar:
            card = ModelCard.model_validate_json(tar.extractfile("model.json").read())  # type: ignore[union-attr]
        assert card.version == 2
        assert "as v2" in lines[-2]
