"""Logic shared by the registry adapters: artifact checks and uploads, independent of storage."""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import UTC, datetime
from pathlib import Path

from aibackend.errors import ModelNotFoundError
from aibackend.models.card import ARTIFACT_FILES, check_artifact
from aibackend.ports import ModelVersion, ObjectStore


class RegistryBase(ABC):
    """Registers artifact folders into an object store; subclasses keep the records."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    @abstractmethod
    def _next_version(self, name: str) -> int: ...

    @abstractmethod
    def _put_record(self, mv: ModelVersion) -> None: ...

    @abstractmethod
    def _get_record(self, name: str, version: int) -> ModelVersion | None: ...

    @abstractmethod
    def list_models(self) -> list[str]: ...

    @abstractmethod
    def list_versions(self, name: str) -> list[ModelVersion]: ...

    @abstractmethod
    def _set_pointer(self, name: str, version: int) -> None: ...

    @abstractmethod
    def _get_pointer(self, name: str) -> int | None: ...

    def register(self, source_dir: Path) -> ModelVersion:
        card = check_artifact(source_dir)
        version = self._next_version(card.name)
        card = card.model_copy(update={"version": version})
        prefix = f"{card.name}/{version}/"
        for fname in ARTIFACT_FILES:
            data = (
                card.model_dump_json(indent=2).encode() + b"\n"
                if fname == "model.json"
                else (source_dir / fname).read_bytes()
            )
            ctype = "application/json" if fname.endswith(".json") else "application/octet-stream"
            self.store.put(
                prefix + fname, data, content_type=ctype, metadata={"sha256": card.sha256}
            )
        mv = ModelVersion(
            name=card.name,
            version=version,
            sha256=card.sha256,
            prefix=prefix,
            registered_at=datetime.now(UTC),
            card=card,
        )
        self._put_record(mv)
        return mv

    def get(self, name: str, version: int) -> ModelVersion:
        mv = self._get_record(name, version)
        if mv is None:
            known = [v.version for v in self.list_versions(name)]
            raise ModelNotFoundError(
                f"model {name!r} has no version {version} (known: {known or 'none'})"
            )
        return mv

    def set_production(self, name: str, version: int) -> None:
        self.get(name, version)  # refuses unknown versions
        self._set_pointer(name, version)

    def production(self, name: str) -> ModelVersion | None:
        v = self._get_pointer(name)
        return None if v is None else self.get(name, v)

    def download(self, name: str, version: int, dest: Path) -> Path:
        mv = self.get(name, version)
        dest.mkdir(parents=True, exist_ok=True)
        for fname in ARTIFACT_FILES:
            target = dest / fname
            if not target.exists():
                self.store.download_file(mv.prefix + fname, target)
        return dest
