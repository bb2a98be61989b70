"""Fixtures for the conformance port: registries, the session's content, namespaces, known failures.

Every (kind, backend) pair runs without auth; Berth on filesystem runs again with Berth's own token
service (``berth-filesystem-token``) and with Basic auth (``berth-filesystem-htpasswd``), the client
authenticating as the official suite does (:mod:`tests.conformance.client`). Every workflow check
runs unchanged in those runs; ``auth_only`` tests (``test_auth.py``) show the requests really were
authenticated, and the terminal summary reports each auth run's challenges and token fetches.

The reference registry (Distribution 2.8) predates parts of distribution-spec v1.1; the checks
it is known to fail are listed in :data:`REFERENCE_KNOWN_FAILURES` and marked as strict xfails
for it alone, so a fix there (or a regression in Berth) shows up as a test result.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conformance.client import ConformanceHTTP, TokenCache, auth_mode, oci_env
from tests.conformance.spec import SpecData, build_spec_data
from tests.servers import (
    Server,
    auth_config,
    deep_merge,
    enabled_auth_modes,
    server_matrix,
    start_registry,
    storage_config,
)

HERE = Path(__file__).resolve().parent

# Auth runs (Berth on filesystem; auth does not depend on storage): the issue on auth asks for the
# conformance suite with credentials against token mode; Basic auth is cheap to run as well.
AUTH_RUNS: tuple[str, ...] = ("token", "htpasswd")

_AUTH_SUMMARY: list[tuple[str, TokenCache]] = []

REFERENCE_KNOWN_FAILURES: dict[str, str] = {
    "out_of_order_chunk": "Distribution 2.8 ignores Content-Range and accepts an out-of-order chunk (202, not 416)",
    "chunk_retry": "Distribution 2.8 answers a chunk re-sent to a stale session URL with 404 BLOB_UPLOAD_INVALID, not 416",
    "stale_upload_status": "Distribution 2.8 answers GET on a stale session URL with 404 BLOB_UPLOAD_INVALID, not 204",
    "tag_pagination": "Distribution 2.8 ignores n and last on tags/list (every tag, unsorted, in one answer)",
    "referrers": "Distribution 2.8 has no referrers API (404) and sets no OCI-Subject",
    "tag_delete": "Distribution 2.8 answers DELETE /manifests/<tag> with 400 DIGEST_INVALID (not 202, nor 400 UNSUPPORTED)",
    "automatic_mount": "Distribution 2.8 has no automatic mount: POST ?mount= without from always starts an upload (202)",
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
    """Every (kind, backend) pair without auth, then Berth on filesystem with each auth mode enabled."""
    params: list[object] = []
    for kind, backend in server_matrix():
        marks = [pytest.mark.interop] if kind == "reference" else []
        if backend == "s3":
            marks.append(pytest.mark.s3)
        params.append(pytest.param((kind, backend, "none"), id=f"{kind}-{backend}", marks=marks))
    if ("berth", "filesystem") in server_matrix():
        for mode in AUTH_RUNS:
            if mode in enabled_auth_modes():
                params.append(pytest.param(("berth", "filesystem", mode), id=f"berth-filesystem-{mode}"))
    return params


def pytest_configure(config: pytest.Config) -> None:
    """Register this suite's markers."""
    config.addinivalue_line("markers", "auth_only: runs only against registries that require credentials")
    config.addinivalue_line("markers", "token_only: runs only against registries in token mode")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect (visibly) this suite's ``auth_only`` tests on runs without auth, ``token_only`` on the others."""
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        param = callspec.params.get("registry") if callspec is not None else None
        auth = param[2] if HERE in Path(str(item.path)).parents and isinstance(param, tuple) else None
        if auth is not None and (
            (item.get_closest_marker("auth_only") is not None and auth == "none")
            or (item.get_closest_marker("token_only") is not None and auth != "token")
        ):
            dropped.append(item)
        else:
            keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


@pytest.fixture(scope="session", params=_params())
def registry(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A running registry of the parametrized kind, backend and auth mode for the conformance workflows.

    With auth, the user may do everything (htpasswd user, no policy file) and ``credentials`` is set.
    """
    kind, backend, auth = request.param
    label = f"{kind}-{backend}" + ("" if auth == "none" else f"-{auth}")
    workdir = tmp_path_factory.mktemp(f"conformance-{label}")
    s3 = request.getfixturevalue("s3_server") if backend == "s3" else None
    overlay, credentials = auth_config(auth, kind, workdir / "auth")
    config = deep_merge(storage_config(backend, workdir, s3=s3), overlay)
    server = start_registry(kind, config, workdir / "server")
    server.credentials = credentials
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def tokens(registry: Server) -> Iterator[TokenCache]:
    """The run's token cache, shared by every client of ``registry``.

    On teardown of an auth run that sent requests, it checks they carried credentials, and hands
    its counts to the terminal summary.
    """
    cache = TokenCache()
    yield cache
    mode = auth_mode(registry)
    if mode == "none" or not cache.requests:
        return
    _AUTH_SUMMARY.append((f"{registry.label}-{mode}", cache))
    if mode == "token":
        assert cache.fetched and cache.bearer_requests, f"the {mode} run sent no request with a token"
    else:
        assert cache.basic_requests, f"the {mode} run sent no request with Basic credentials"


@pytest.fixture(scope="session")
def http(registry: Server, tokens: TokenCache) -> ConformanceHTTP:
    """The run's client for ``registry``, configured as the official suite is (``OCI_*``)."""
    return ConformanceHTTP.from_env(oci_env(registry), tokens)


@pytest.fixture(scope="session")
def spec() -> SpecData:
    """The session's conformance content (unique configs, shared layer, referrers graph)."""
    return build_spec_data()


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


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line per auth run: challenges answered, token fetches, requests sent with credentials."""
    for label, cache in _AUTH_SUMMARY:
        terminalreporter.write_line(
            f"conformance {label}: {len(cache.challenges)} challenges answered, {len(cache.fetched)} token fetches "
            f"for {len(cache.tokens)} scope sets, {cache.bearer_requests} requests with a token, "
            f"{cache.basic_requests} with Basic credentials"
        )
