"""Fixtures for the conformance port: registries, the session's content, namespaces, known failures.

The reference registry (Distribution 2.8) predates parts of distribution-spec v1.1; the checks
it is known to fail are listed in :data:`REFERENCE_KNOWN_FAILURES` and marked as strict xfails
for it alone, so a fix there (or a regression in Berth) shows up as a test result.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conformance.spec import SpecData, build_spec_data
from tests.realclients.checks import RegistryHTTP, http_for
from tests.servers import Server, server_matrix, start_registry, storage_config

REFERENCE_KNOWN_FAILURES: dict[str, str] = {
    "out_of_order_chunk": "Distribution 2.8 ignores Content-Range and accepts an out-of-order chunk (202, not 416)",
    "chunk_retry": "Distribution 2.8 answers a chunk re-sent to a stale session URL with 404 BLOB_UPLOAD_INVALID, not 416",
    "stale_upload_status": "Distribution 2.8 answers GET on a stale session URL with 404 BLOB_UPLOAD_INVALID, not 204",
    "tag_pagination": "Distribution 2.8 ignores n and last on tags/list (every tag, unsorted, in one answer)",
    "referrers": "Distribution 2.8 has no referrers API (404) and sets no OCI-Subject",
    "tag_delete": "Distribution 2.8 answers DELETE /manifests/<tag> with 400 DIGEST_INVALID (not 202, nor 400 UNSUPPORTED)",
    "malformed_reference_400": "Distribution 2.8 takes sha256:totallywrong for a tag and fails with 500 on the path",
}

# Only on S3: SeaweedFS keeps a "directory" after its last object goes, and Distribution 2.8
# lists tags by listing directories.
REFERENCE_S3_KNOWN_FAILURES: dict[str, str] = {
    "s3_tag_listing_after_delete": "Distribution 2.8 on SeaweedFS still lists the tags of a deleted manifest",
}

# Checks Berth fails today, each reported to the server's owner; strict, so a fix shows up as XPASS.
BERTH_KNOWN_FAILURES: dict[str, str] = {}



def _params() -> list[object]:
    params: list[object] = []
    for kind, backend in server_matrix():
        marks = [pytest.mark.interop] if kind == "reference" else []
        if backend == "s3":
            marks.append(pytest.mark.s3)
        params.append(pytest.param((kind, backend), id=f"{kind}-{backend}", marks=marks))
    return params


@pytest.fixture(scope="session", params=_params())
def registry(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A running registry of the parametrized kind and backend for the conformance workflows."""
    kind, backend = request.param
    workdir = tmp_path_factory.mktemp(f"conformance-{kind}-{backend}")
    s3 = request.getfixturevalue("s3_server") if backend == "s3" else None
    server = start_registry(kind, storage_config(backend, workdir, s3=s3), workdir / "server")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def spec() -> SpecData:
    """The session's conformance content (unique configs, shared layer, referrers graph)."""
    return build_spec_data()


@pytest.fixture
def http(registry: Server) -> RegistryHTTP:
    """A synchronous HTTP client for ``registry``."""
    return http_for(registry)


@pytest.fixture(scope="module")
def namespace(request: pytest.FixtureRequest) -> str:
    """A repository unique to this workflow module (like OCI_NAMESPACE)."""
    workflow = Path(str(request.module.__file__)).stem.removeprefix("test_")
    return f"conformance/{workflow}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def known_failure(request: pytest.FixtureRequest, registry: Server) -> Callable[[str], None]:
    """Call with a key of a known-failure table to mark this test a strict xfail on that server kind."""

    tables = {
        "reference-filesystem": [REFERENCE_KNOWN_FAILURES],
        "reference-s3": [REFERENCE_KNOWN_FAILURES, REFERENCE_S3_KNOWN_FAILURES],
        "berth-filesystem": [BERTH_KNOWN_FAILURES],
        "berth-s3": [BERTH_KNOWN_FAILURES],
    }
    every = {**REFERENCE_KNOWN_FAILURES, **REFERENCE_S3_KNOWN_FAILURES, **BERTH_KNOWN_FAILURES}

    def mark(key: str) -> None:
        if key not in every:
            raise KeyError(f"no known failure named {key!r}")
        for table in tables.get(registry.label, []):
            if key in table:
                request.node.add_marker(pytest.mark.xfail(reason=table[key], strict=True))
                return

    return mark
