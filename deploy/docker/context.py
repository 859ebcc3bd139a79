"""Build contexts for ``Dockerfile.serving``: models, generated configs, labels, server flags.

A context is a plain directory any builder can use (``docker build``, kaniko, buildx)::

    Dockerfile                 Dockerfile.serving verbatim + a generated tail (labels, CMD)
    models/NAME/VERSION/...    the numeric version dirs of each model (temp dirs are skipped)
    config/models.config       ModelServerConfig written by tfship.serving.config
    config/batching.config     when batching was asked for (validated, copied verbatim)
    config/monitoring.config   when monitoring was asked for

>>> ctx = write_build_context("models", "build/ctx")          # doctest: +SKIP
>>> ctx.labels["io.tfship.models"]                           # doctest: +SKIP
'mnist'
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from tfship.serving.config import (
    ModelEntry,
    MonitoringConfig,
    format_model_config,
    format_monitoring_config,
    read_batching_parameters_file,
)

from tfship import __version__
from tfship.errors import ConfigError

__all__ = [
    "CONFIG_DIR",
    "DEFAULT_BASE_IMAGE",
    "MODELS_ROOT",
    "BuildContext",
    "ModelSource",
    "dockerfile_template",
    "discover_models",
    "server_args",
    "write_build_context",
]

#: tensorflow/serving release matching the tensorflow-serving-api tfship is built against.
DEFAULT_BASE_IMAGE = "tensorflow/serving:2.21.0"
#: where models live inside the image (the official image's MODEL_BASE_PATH)
MODELS_ROOT = "/models"
#: where generated config files live inside the image
CONFIG_DIR = "/etc/tfship"
MANIFEST = Path("assets.extra") / "tfship_manifest.json"
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class ModelSource:
    """One model found on disk: its base path and the numeric version dirs under it."""

    name: str
    base_path: Path
    versions: tuple[str, ...]  # dir names as on disk (leading zeros kept), ascending by number
    manifest_sha256: dict[str, str] = field(default_factory=dict)  # version dir -> sha256


@dataclass(frozen=True)
class BuildContext:
    """A written build context (see module docstring) and what it will produce."""

    path: Path
    dockerfile: str
    model_config: str
    models: tuple[ModelSource, ...]
    labels: dict[str, str]
    command: tuple[str, ...]


def dockerfile_template() -> str:
    """The text of ``Dockerfile.serving`` as shipped in the package (== the repo-root file)."""
    return resources.files("tfship.deploy.docker").joinpath("Dockerfile.serving").read_text()


def _is_version_dir(path: Path) -> bool:
    return path.is_dir() and path.name.isdigit() and int(path.name) > 0


def _model_source(name: str, base: Path) -> ModelSource:
    if not _NAME.match(name):
        raise ConfigError(
            f"Model directory {str(base)!r} has an invalid model name {name!r}: use letters, "
            "digits, '_', '.' and '-' only (rename the directory)."
        )
    versions = sorted(
        (v.name for v in base.iterdir() if _is_version_dir(v)), key=int
    )
    checksums = {}
    for version in versions:
        manifest = base / version / MANIFEST
        if manifest.is_file():
            checksums[version] = hashlib.sha256(manifest.read_bytes()).hexdigest()
    return ModelSource(name, base.resolve(), tuple(versions), checksums)


def discover_models(models_dir: str | os.PathLike[str]) -> list[ModelSource]:
    """The models under ``models_dir``: ``models_dir/NAME/VERSION/`` (SavedModels).

    ``models_dir`` may also be one model's base path (``NAME/VERSION/...``); the model is then
    named after the directory. Names starting with ``.`` (tfship's temp dirs) are ignored.
    """
    root = Path(models_dir)
    if not root.is_dir():
        raise ConfigError(f"Models directory {str(root)!r} does not exist or is not a directory.")
    children = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    # Like TF Serving, a version is any positive-integer dir; the server reports broken ones.
    if any(_is_version_dir(c) for c in children):
        models = [_model_source(root.resolve().name, root)]
    else:
        models = [_model_source(c.name, c) for c in children if not _is_version_dir(c)]
        models = [m for m in models if m.versions]
    if not models:
        raise ConfigError(
            f"No models found in {str(root)!r}: expected {root}/NAME/VERSION/saved_model.pb "
            "(export one with `tfship export MODEL --base DIR --name NAME`)."
        )
    return models


def server_args(*, batching: bool = False, monitoring: bool = False) -> tuple[str, ...]:
    """Flags appended to the base image's entrypoint for the files under ``CONFIG_DIR``."""
    args = [f"--model_config_file={CONFIG_DIR}/models.config"]
    if batching:
        args += ["--enable_batching", f"--batching_parameters_file={CONFIG_DIR}/batching.config"]
    if monitoring:
        args.append(f"--monitoring_config_file={CONFIG_DIR}/monitoring.config")
    return tuple(args)


def model_config_for(models: list[ModelSource], root: str = MODELS_ROOT) -> str:
    """ModelServerConfig serving each model from ``root/NAME`` inside the container."""
    return format_model_config([ModelEntry(m.name, f"{root}/{m.name}") for m in models])


def _labels(models: list[ModelSource], base_image: str | None) -> dict[str, str]:
    labels = {
        "org.opencontainers.image.description": "TensorFlow Serving with models: "
        + ",".join(m.name for m in models),
        "io.tfship.version": __version__,
        "io.tfship.models": ",".join(m.name for m in models),
        "io.tfship.model-versions": ";".join(
            f"{m.name}:{','.join(str(int(v)) for v in m.versions)}" for m in models
        ),
        "io.tfship.manifest-sha256": ",".join(
            f"{m.name}/{int(v)}={sha}" for m in models for v, sha in m.manifest_sha256.items()
        ),
    }
    if base_image:
        labels["org.opencontainers.image.base.name"] = base_image
    return labels


def _copy_readable(src: Path, dst: Path) -> None:
    # World-readable, root-owned in the image: the non-root server reads but cannot modify.
    shutil.copytree(src, dst, symlinks=False)
    for dirpath, _dirnames, filenames in os.walk(dst):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o644)


def write_build_context(
    models_dir: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    base_image: str | None = None,
    batching_file: str | os.PathLike[str] | None = None,
    monitoring: bool | MonitoringConfig = False,
) -> BuildContext:
    """Write a self-contained build context for ``Dockerfile.serving`` into ``dest``.

    ``dest`` must be empty or absent. ``batching_file`` is validated with the BatchingParameters
    parser and copied verbatim; ``monitoring=True`` enables Prometheus metrics at the default
    path (or pass a :class:`MonitoringConfig`). ``base_image`` is recorded in the labels only;
    pass it to the builder as the ``BASE_IMAGE`` build argument.
    """
    models = discover_models(models_dir)
    out = Path(dest)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"Context directory {str(out)!r} is not empty; pass a new or empty one.")
    if batching_file is not None:
        read_batching_parameters_file(batching_file)  # fail before copying gigabytes
    (out / "models").mkdir(parents=True, exist_ok=True)
    (out / "config").mkdir()
    for model in models:
        for version in model.versions:
            _copy_readable(model.base_path / version, out / "models" / model.name / version)
    os.chmod(out / "models", 0o755)
    for path in (out / "models").iterdir():
        os.chmod(path, 0o755)

    model_config = model_config_for(models)
    (out / "config" / "models.config").write_text(model_config)
    if batching_file is not None:
        shutil.copyfile(batching_file, out / "config" / "batching.config")
    if monitoring:
        config = monitoring if isinstance(monitoring, MonitoringConfig) else MonitoringConfig(True)
        (out / "config" / "monitoring.config").write_text(format_monitoring_config(config))
    for path in (out / "config").iterdir():
        os.chmod(path, 0o644)
    os.chmod(out / "config", 0o755)

    labels = _labels(models, base_image)
    command = server_args(batching=batching_file is not None, monitoring=bool(monitoring))
    dockerfile = dockerfile_template() + _generated_tail(labels, models[0].name, command)
    (out / "Dockerfile").write_text(dockerfile)
    (out / ".dockerignore").write_text("# everything in this context is meant for the image\n")
    return BuildContext(out, dockerfile, model_config, tuple(models), labels, command)


def _generated_tail(labels: dict[str, str], first_model: str, command: tuple[str, ...]) -> str:
    lines = [
        "",
        f"# ---- generated by tfship build {__version__}: this context's labels and flags ----",
        "LABEL " + " \\\n      ".join(f"{k}={json.dumps(v)}" for k, v in labels.items()),
        f"ENV MODEL_NAME={first_model}",
        f"CMD {json.dumps(list(command))}",
        "",
    ]
    return "\n".join(lines)
