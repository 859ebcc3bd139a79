"""``--export DIR``: batch jobs scored in-process on an export, for users without a server.

:class:`ExportTarget` is what the Ray engine's actors call to get their scorer: each actor loads
the SavedModel once (with the model server's own loader, so inputs are checked and errors coded
exactly as the server would) and answers the two client calls a batch job makes,
``metadata`` and ``predict_detailed``. It lives in deploy/ because it joins the client's job
runner to the server's runtime, which the client layer must not import.

>>> run_ray_job(ExportTarget("models/digits"), "digits", "rows/", "scores/")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tfship.client.grpc_transport import signature_info
from tfship.client.types import ModelMetadata, Prediction
from tfship.export.versions import list_versions, parse_version

from tfship.errors import ConfigError, NotFoundError
from tfship.wire.protos import serving_wire_pb2 as pb

__all__ = ["ExportTarget", "ExportScorer"]


@dataclass(frozen=True)
class ExportTarget:
    """An export to score on: ``models/NAME`` (its newest version) or ``models/NAME/VERSION``."""

    path: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", str(Path(self.path).resolve()))

    def version_dir(self) -> tuple[int, Path]:
        path = Path(self.path)
        version = parse_version(path.name)
        if version is not None and (path / "saved_model.pb").exists():
            return version, path
        versions = list_versions(path)
        if not versions:
            raise ConfigError(f"{path} holds no exported version (expected {path}/<number>/saved_model.pb).")
        version = max(versions)
        return version, versions[version]

    def __call__(self) -> ExportScorer:
        return ExportScorer(self)

    def describe(self) -> str:
        return f"export:{self.path}"


class ExportScorer:
    """One loaded version answering ``metadata`` and ``predict_detailed`` like a client would."""

    def __init__(self, target: ExportTarget) -> None:
        from tfship.serving.runtime.servable import LoadOptions, Servable

        self.version, path = target.version_dir()
        self.servable = Servable.load(path.parent.name, self.version, path, LoadOptions(enable_warmup=False))

    def _check_version(self, version: int | None) -> None:
        if version is not None and version != self.version:
            raise NotFoundError(f"The export holds version {self.version}, not {version}.")

    def metadata(self, model: str, *, version: int | None = None, label: str | None = None) -> ModelMetadata:
        if label is not None:
            raise ConfigError("--label needs a server (labels live in its model config); an export has versions only.")
        self._check_version(version)
        signatures = {}
        for key, sig in self.servable.signature_defs.items():
            signatures[key] = signature_info(pb.SignatureDef.FromString(sig.SerializeToString()))
        return ModelMetadata(model, self.version, signatures)

    def predict_detailed(self, model: str, inputs: Mapping[str, np.ndarray], *, version: int | None = None,
                         signature: str | None = None, **_: Any) -> Prediction:
        self._check_version(version)
        return Prediction(self.servable.predict(signature or "", inputs), self.version)

    def close(self) -> None:
        self.servable.close()
