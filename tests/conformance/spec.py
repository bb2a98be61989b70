"""Test content for the OCI distribution-spec conformance port, and a small request helper.

Owns the fixtures' bytes: per-workflow image configs (unique per session), a gzip layer, image
manifests carrying unknown and ``data`` fields, a blob split into two chunks, and the referrers
graph (two artifacts by config media type, two by ``artifactType``, one index, one artifact whose
subject was never pushed). Mirrors what the official suite's setup builds; the code is our own.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import random
import tarfile
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import Any

from tests.conformance.client import ConformanceHTTP
from tests.realclients.checks import Response

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_JSON_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
ARTIFACT_TYPE_A = "application/vnd.berth.conformance.alpha"
ARTIFACT_TYPE_B = "application/vnd.berth.conformance.beta"
ARTIFACT_TYPE_INDEX = "application/vnd.berth.conformance.index"
ANNOTATION_KEY = "org.opencontainers.conformance.test"
NONEXISTENT_MANIFEST = ".INVALID_MANIFEST_NAME"
DUMMY_DIGEST = "sha256:" + "0" * 63 + "1"
WORKFLOWS = 5

# Error codes a registry may answer with (spec's table).
ERROR_CODES = frozenset(
    {
        "BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID",
        "MANIFEST_BLOB_UNKNOWN", "MANIFEST_INVALID", "MANIFEST_UNKNOWN", "MANIFEST_UNVERIFIED",
        "NAME_INVALID", "NAME_UNKNOWN", "SIZE_INVALID", "TAG_INVALID", "UNAUTHORIZED", "DENIED",
        "UNSUPPORTED", "TOOMANYREQUESTS",
    }
)


def digest_of(data: bytes) -> str:
    """sha256 digest string of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def pretty(value: Any) -> bytes:
    """Indented JSON bytes (the official suite's manifests are indented, not canonical)."""
    return json.dumps(value, indent="\t").encode()


@dataclass(frozen=True)
class Content:
    """Bytes plus their digest and length."""

    data: bytes
    media_type: str = "application/octet-stream"

    @property
    def digest(self) -> str:
        """sha256 of the bytes."""
        return digest_of(self.data)

    @property
    def length(self) -> str:
        """Length as a header value."""
        return str(len(self.data))

    def descriptor(self, media_type: str | None = None, **extra: Any) -> dict[str, Any]:
        """An OCI descriptor of these bytes."""
        return {"mediaType": media_type or self.media_type, "digest": self.digest, "size": len(self.data), **extra}


def _layer() -> Content:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        body = b"you found the conformance layer of Berth's test suite\n"
        info = tarfile.TarInfo("test.txt")
        info.size, info.mtime, info.mode = len(body), 946684800, 0o644
        tar.addfile(info, io.BytesIO(body))
    return Content(gzip.compress(raw.getvalue(), mtime=0), OCI_LAYER_GZIP)


@dataclass
class SpecData:
    """Everything the four workflows push, built once per session."""

    run_id: str
    configs: list[Content] = field(default_factory=list)
    manifests: list[Content] = field(default_factory=list)
    layer: Content = field(default_factory=_layer)
    empty_layer_manifest: Content = Content(b"")
    blob_a: Content = Content(b"")
    blob_b: Content = Content(b"")
    empty_json: Content = Content(b"{}", OCI_EMPTY)
    ref_blob_a: Content = Content(b"Berth conformance: artifact blob alpha")
    ref_blob_b: Content = Content(b"Berth conformance: artifact blob beta")
    refs: dict[str, Content] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)

    def chunks(self, min_length: int = 0) -> tuple[Content, bytes, bytes]:
        """(blob, first chunk, second chunk); the blob grows when the server asks for bigger chunks."""
        blob = self.blob_b
        if min_length > (len(blob.data) + 1) // 2:
            rng = random.Random(f"{self.run_id}-chunked-{min_length}")
            blob = Content(rng.randbytes(2 * min_length))
        half = (len(blob.data) + 1) // 2
        return blob, blob.data[:half], blob.data[half:]


def build_spec_data(run_id: str | None = None) -> SpecData:
    """Build the session's content; ``run_id`` makes configs (and so manifests) unique per run."""
    run_id = run_id or uuid.uuid4().hex[:12]
    rng = random.Random(run_id)
    data = SpecData(run_id)
    for i in range(WORKFLOWS):
        config = {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
            "author": f"berth-conformance-{run_id}-{i}-{rng.getrandbits(64):016x}",
        }
        data.configs.append(Content(pretty(config), OCI_CONFIG))
    for i in range(WORKFLOWS):
        config_blob = data.configs[i]
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config_blob.descriptor(
                data=base64.b64encode(config_blob.data).decode(),
                newUnspecifiedField=base64.b64encode(b"hello world").decode(),
            ),
            "layers": [data.layer.descriptor()],
        }
        data.manifests.append(Content(pretty(manifest), OCI_MANIFEST))
    data.empty_layer_manifest = Content(
        pretty({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": data.configs[1].descriptor(), "layers": []}),
        OCI_MANIFEST,
    )
    data.blob_a = Content(rng.randbytes(42))
    data.blob_b = Content(rng.randbytes(42))
    subject = data.manifests[4].descriptor()
    missing_subject = data.manifests[3].descriptor()

    def artifact(name: str, doc: dict[str, Any], note: str | None) -> None:
        if note is not None:
            doc["annotations"] = {ANNOTATION_KEY: note}
        content = Content(pretty(doc), doc.get("mediaType", OCI_MANIFEST))
        data.refs[name] = content
        if note is not None:
            data.annotations[content.digest] = note

    base = {"schemaVersion": 2, "mediaType": OCI_MANIFEST}
    artifact("a_config", {**base, "config": data.ref_blob_a.descriptor(ARTIFACT_TYPE_A), "subject": subject,
                          "layers": [data.empty_json.descriptor()]}, "artifact a by config")
    artifact("a_layer", {**base, "artifactType": ARTIFACT_TYPE_A, "config": data.empty_json.descriptor(),
                         "subject": subject, "layers": [data.ref_blob_a.descriptor(ARTIFACT_TYPE_A)]}, "artifact a by type")
    artifact("b_config", {**base, "config": data.ref_blob_b.descriptor(ARTIFACT_TYPE_B), "subject": subject,
                          "layers": [data.empty_json.descriptor()]}, "artifact b by config")
    artifact("b_layer", {**base, "artifactType": ARTIFACT_TYPE_B, "config": data.empty_json.descriptor(),
                         "subject": subject, "layers": [data.ref_blob_b.descriptor(ARTIFACT_TYPE_B)]}, "artifact b by type")
    artifact("c_layer", {**base, "artifactType": ARTIFACT_TYPE_B, "config": data.empty_json.descriptor(),
                         "subject": missing_subject, "layers": [data.ref_blob_b.descriptor(ARTIFACT_TYPE_B)]}, None)
    artifact("index", {"schemaVersion": 2, "mediaType": OCI_INDEX, "artifactType": ARTIFACT_TYPE_INDEX,
                       "subject": subject, "manifests": [data.refs["a_config"].descriptor(OCI_MANIFEST),
                                                         data.refs["a_layer"].descriptor(OCI_MANIFEST)]},
             "index artifact")
    assert data.empty_json.digest == EMPTY_JSON_DIGEST
    return data


def location(resp: Response) -> str:
    """The response's Location as a path+query on the same server (absolute URLs are cut down)."""
    value = resp.headers.get("location", "")
    assert value, f"no Location header in a {resp.status} answer: {resp.headers}"
    parts = urllib.parse.urlsplit(value)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def with_query(path: str, **params: str) -> str:
    """``path`` with ``params`` added to its query string."""
    parts = urllib.parse.urlsplit(path)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return parts.path + "?" + urllib.parse.urlencode(query)


def error_codes(resp: Response) -> list[str]:
    """The ``code`` of each entry in an OCI error body."""
    doc = resp.json()
    assert isinstance(doc.get("errors"), list) and doc["errors"], f"not an OCI error body: {resp.body[:300]!r}"
    return [str(err.get("code")) for err in doc["errors"]]


def is_2xx(resp: Response) -> bool:
    """Whether the status is 2xx."""
    return 200 <= resp.status < 300


def upload(http: ConformanceHTTP, repo: str, content: Content) -> Response:
    """POST a session, then PUT the whole blob to it (the suite's "populate" step); assert 2xx."""
    start = http.request("POST", f"/v2/{repo}/blobs/uploads/")
    assert start.status == 202, f"POST upload: {start.status} {start.body[:300]!r}"
    done = http.request(
        "PUT",
        with_query(location(start), digest=content.digest),
        {"Content-Type": "application/octet-stream", "Content-Length": content.length},
        content.data,
    )
    assert is_2xx(done), f"PUT blob {content.digest}: {done.status} {done.body[:300]!r}"
    return done


def put_manifest(http: ConformanceHTTP, repo: str, ref: str, content: Content) -> Response:
    """PUT a manifest under a tag or digest with its own media type; return the response."""
    return http.request("PUT", f"/v2/{repo}/manifests/{ref}", {"Content-Type": content.media_type}, content.data)
