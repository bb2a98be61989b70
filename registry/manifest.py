"""Manifest and index parsing and validation (pure; shared with the client).

:func:`parse_manifest` takes the exact bytes a client sent (and its
``Content-Type``) and returns what the registry must check and index: the
descriptors it references (config and layers, or the children of an index),
its ``subject`` and ``artifactType``. It raises :class:`ManifestError` with a
human message for anything malformed; the server maps that to
``MANIFEST_INVALID``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from registry import mediatypes as mt
from registry.digest import Digest, InvalidDigest


class ManifestError(ValueError):
    """The manifest is malformed or of an unsupported kind."""


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor."""

    media_type: str
    digest: Digest
    size: int
    artifact_type: str | None = None
    platform: dict[str, Any] | None = None
    annotations: dict[str, str] | None = None
    urls: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": str(self.digest), "size": self.size}
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.platform:
            out["platform"] = self.platform
        if self.annotations:
            out["annotations"] = self.annotations
        if self.urls:
            out["urls"] = list(self.urls)
        return out


@dataclass(frozen=True)
class Manifest:
    """A parsed manifest or index."""

    media_type: str
    raw: dict[str, Any]
    config: Descriptor | None = None
    layers: tuple[Descriptor, ...] = ()
    manifests: tuple[Descriptor, ...] = ()
    subject: Descriptor | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def is_index(self) -> bool:
        return self.media_type in mt.INDEXES

    @property
    def blobs(self) -> tuple[Descriptor, ...]:
        """Blobs this manifest needs in the repository (config and layers, not foreign ones)."""
        out = [self.config] if self.config else []
        out += [layer for layer in self.layers if not layer.urls]
        return tuple(out)

    @property
    def effective_artifact_type(self) -> str | None:
        """The artifact type the referrers API reports (artifactType, else config media type)."""
        if self.artifact_type:
            return self.artifact_type
        if self.config is not None and not self.is_index:
            return self.config.media_type
        return None


def _descriptor(value: Any, where: str) -> Descriptor:
    if not isinstance(value, dict):
        raise ManifestError(f"{where} must be an object")
    media_type = value.get("mediaType")
    digest = value.get("digest")
    size = value.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise ManifestError(f"{where}.mediaType is missing")
    if not isinstance(digest, str):
        raise ManifestError(f"{where}.digest is missing")
    try:
        parsed = Digest.parse(digest)
    except InvalidDigest as exc:
        raise ManifestError(f"{where}.digest: {exc}") from None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ManifestError(f"{where}.size must be a non-negative integer")
    artifact_type = value.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise ManifestError(f"{where}.artifactType must be a string")
    platform = value.get("platform")
    if platform is not None and not isinstance(platform, dict):
        raise ManifestError(f"{where}.platform must be an object")
    annotations = value.get("annotations")
    if annotations is not None and not isinstance(annotations, dict):
        raise ManifestError(f"{where}.annotations must be an object")
    urls = value.get("urls") or ()
    if not isinstance(urls, (list, tuple)) or not all(isinstance(u, str) for u in urls):
        raise ManifestError(f"{where}.urls must be a list of strings")
    return Descriptor(media_type, parsed, size, artifact_type, platform, annotations, tuple(urls))


def detect_media_type(doc: dict[str, Any], content_type: str | None) -> str:
    """The manifest's media type from its body and the request's Content-Type; checks they agree."""
    declared = doc.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise ManifestError("mediaType must be a string")
    ctype = (content_type or "").split(";")[0].strip().lower() or None
    if doc.get("schemaVersion") == 1 or declared in mt.SCHEMA1 or ctype in (mt.DOCKER_MANIFEST_V1, mt.DOCKER_MANIFEST_V1_SIGNED):
        raise ManifestError("Docker schema1 manifests are not supported; push a schema2 or OCI manifest")
    if declared and ctype and ctype != "application/json" and declared != ctype:
        raise ManifestError(f"mediaType {declared!r} does not match Content-Type {ctype!r}")
    media_type = declared or ctype
    if not media_type or media_type == "application/json":
        # OCI allows mediaType to be omitted; infer from the shape.
        media_type = mt.OCI_INDEX if "manifests" in doc else mt.OCI_MANIFEST
    if media_type not in mt.MANIFESTS:
        raise ManifestError(f"unsupported manifest media type {media_type!r}")
    return media_type


def parse_manifest(data: bytes, content_type: str | None = None) -> Manifest:
    """Parse and validate a manifest or index document."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestError(f"manifest is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ManifestError("manifest must be a JSON object")
    media_type = detect_media_type(doc, content_type)
    if doc.get("schemaVersion") != 2:
        raise ManifestError("schemaVersion must be 2")
    subject = _descriptor(doc["subject"], "subject") if doc.get("subject") is not None else None
    artifact_type = doc.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise ManifestError("artifactType must be a string")
    annotations = doc.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise ManifestError("annotations must be an object")
    if media_type in mt.INDEXES:
        children = doc.get("manifests")
        if not isinstance(children, list):
            raise ManifestError("manifests must be a list")
        manifests = tuple(_descriptor(c, f"manifests[{i}]") for i, c in enumerate(children))
        return Manifest(media_type, doc, manifests=manifests, subject=subject,
                        artifact_type=artifact_type, annotations=annotations)
    if "config" not in doc:
        raise ManifestError("config is missing")
    config = _descriptor(doc["config"], "config")
    layers_raw = doc.get("layers")
    if layers_raw is None:
        layers_raw = []
    if not isinstance(layers_raw, list):
        raise ManifestError("layers must be a list")
    if media_type == mt.DOCKER_MANIFEST_V2 and not layers_raw and config.media_type == mt.DOCKER_CONFIG:
        pass  # an empty image is legal
    layers = tuple(_descriptor(layer, f"layers[{i}]") for i, layer in enumerate(layers_raw))
    return Manifest(media_type, doc, config=config, layers=layers, subject=subject,
                    artifact_type=artifact_type, annotations=annotations)
