"""What ``tfship k8s render`` is asked for: storage, image reference, names, and their checks.

Every check raises :class:`~tfship.errors.ConfigError` with the problem and the fix, so the CLI
exits 2 before anything is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from tfship.errors import ConfigError

from .probes import ProbeTiming
from .resources import Resources
from .security import IMAGE_UID

__all__ = ["Storage", "RenderOptions", "parse_storage", "check_image_reference", "is_mutable_reference", "dns_label"]

# The container image reference grammar (github.com/distribution/reference): optional registry
# host[:port], path components of lowercase alphanumerics joined by '.', '_', '__' or '-'s,
# then an optional :tag and an optional @algorithm:hex digest.
_HOST = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?)"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REFERENCE = re.compile(
    rf"^(?:{_HOST}/)?{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[\w][\w.-]{0,127})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_URI = re.compile(r"^[a-z][a-z0-9+.-]*://\S+$")


def check_image_reference(image: str) -> str:
    """``image`` if it is a valid reference (``registry/repo:tag`` or ``...@sha256:...``)."""
    if len(image) > 255 or not _REFERENCE.match(image):
        raise ConfigError(
            f"--image {image!r} is not an image reference: use [REGISTRY/]REPOSITORY[:TAG][@DIGEST] "
            "with a lowercase repository, e.g. registry.example.com/acme/models:1 "
            "(the tag you gave `tfship build --tag`)."
        )
    return image


def is_mutable_reference(image: str) -> bool:
    """True for an untagged or ``:latest`` reference without a digest: what a node already has
    under that name may not be what was pushed last (``imagePullPolicy: IfNotPresent``)."""
    if "@" in image:
        return False
    last = image.rsplit("/", 1)[-1]
    return ":" not in last or last.endswith(":latest")


def dns_label(name: str, what: str = "--name", max_length: int = 63) -> str:
    """``name`` if it is a Kubernetes DNS-1035 label (resource names, Service names)."""
    if len(name) > max_length or not _DNS_LABEL.match(name):
        raise ConfigError(
            f"{what} {name!r} is not a valid Kubernetes name: use at most {max_length} lowercase "
            "letters, digits and '-', starting with a letter and ending with a letter or digit."
        )
    return name


def default_name(model_names: list[str]) -> str:
    """The resource name when none is given: the model's name as a DNS label, or ``tfserving``."""
    if len(model_names) == 1:
        name = re.sub(r"[^a-z0-9-]+", "-", model_names[0].lower()).strip("-")
        name = re.sub(r"^[^a-z]+", "", name)[:50].rstrip("-")
        if name:
            return name
    return "tfserving"


@dataclass(frozen=True)
class Storage:
    """Where the pods find the models.

    ``baked``: in the image (``tfship build``), under /models. ``pvc``: a PersistentVolumeClaim
    (ReadOnlyMany, or ReadWriteMany shared with the exporter) mounted read-only at /models and
    holding ``NAME/VERSION/`` dirs. ``uri``: a model store TF Serving reads itself
    (``gs://bucket/models``), holding ``NAME/VERSION/`` dirs.
    """

    kind: str                 # "baked" | "pvc" | "uri"
    claim: str | None = None  # pvc
    uri: str | None = None    # uri

    def __str__(self) -> str:
        return {"baked": "baked", "pvc": f"pvc:{self.claim}", "uri": f"uri:{self.uri}"}[self.kind]


def parse_storage(text: str) -> Storage:
    """``baked`` | ``pvc:CLAIM`` | ``uri:URI`` -> :class:`Storage`."""
    kind, _, rest = text.partition(":")
    if kind == "baked" and not rest:
        return Storage("baked")
    if kind == "pvc" and rest:
        return Storage("pvc", claim=dns_label(rest, "--storage pvc: claim name", 253))
    if kind == "uri" and _URI.match(rest):
        return Storage("uri", uri=rest.rstrip("/"))
    raise ConfigError(
        f"--storage {text!r} is not understood: use 'baked' (models in the image), "
        "'pvc:CLAIM' (a PersistentVolumeClaim holding NAME/VERSION dirs) or "
        "'uri:SCHEME://PATH' (a store TF Serving reads, e.g. uri:gs://bucket/models)."
    )


@dataclass(frozen=True)
class RenderOptions:
    """Everything the rendered resources depend on besides the models themselves."""

    image: str
    name: str | None = None              # default: from the model name (default_name)
    namespace: str | None = None         # None: kubectl's current namespace
    replicas: int = 2
    max_replicas: int | None = None      # default: 3 x replicas
    storage: Storage = field(default_factory=lambda: Storage("baked"))
    batching_file: Path | None = None
    model_config_file: Path | None = None  # a ModelServerConfig with labels/policies to serve as is
    monitoring: bool = False
    resources: Resources = field(default_factory=Resources)
    timing: ProbeTiming = field(default_factory=ProbeTiming)
    uid: int = IMAGE_UID
    grpc_port: int = 8500
    http_port: int = 8501
    cpu_target_percent: int = 70

    def __post_init__(self) -> None:
        check_image_reference(self.image)
        if self.replicas < 1:
            raise ConfigError(f"--replicas {self.replicas}: at least 1 replica is needed.")
        if self.max_replicas is not None and self.max_replicas < self.replicas:
            raise ConfigError(f"--max-replicas {self.max_replicas} is below --replicas {self.replicas}.")
        if self.name is not None:
            # room for the "-headless" suffix of the client-balancing Service
            dns_label(self.name, "--name", 63 - len("-headless"))
        if self.namespace is not None:
            dns_label(self.namespace, "--namespace")
        if self.uid < 1:
            raise ConfigError(f"--uid {self.uid}: the server must run as a non-root uid (>= 1).")
        if not 1 <= self.cpu_target_percent <= 100:
            raise ConfigError(f"--cpu-target {self.cpu_target_percent}: use a percentage 1-100.")
        if self.timing.startup_seconds < 1 or self.timing.pre_stop_seconds < 0:
            raise ConfigError("--startup-seconds must be >= 1 and --pre-stop-seconds >= 0.")
