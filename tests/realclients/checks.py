"""Independent verification of what a registry holds, over plain HTTP (stdlib only).

Owns the checks the real-client and interop suites make after a tool pushed or copied
something: the manifest bytes hash to the digest the tool reported, ``Docker-Content-Digest``
agrees, every referenced manifest and blob is served, and every blob's bytes hash to its
descriptor's digest and size. Blobs are streamed, never read whole. Handles Basic auth and
the Bearer token dance so the same checks run in htpasswd and token mode.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
ACCEPT = f"{OCI_MANIFEST}, {OCI_INDEX}, {DOCKER_MANIFEST}, {DOCKER_LIST}"
CHUNK = 1 << 20
TIMEOUT = 120
_BASIC = "<basic>"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)
MAX_HOPS = 5


@dataclass
class Response:
    """Status, headers (lower-cased names) and body of one HTTP exchange."""

    status: int
    headers: dict[str, str]
    body: bytes = b""

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


@dataclass
class RegistryHTTP:
    """A tiny synchronous registry client: Basic or Bearer auth, bounded timeouts, no redirects."""

    base_url: str
    username: str | None = None
    password: str | None = None
    _auth: dict[str, str] = field(default_factory=dict)  # scope key (repo, "*" or BASIC) -> header

    def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        sink: Any = None,
    ) -> Response:
        """One request: retried once after a 401 challenge when credentials are known, and
        following up to a few redirects for GET/HEAD (credentials dropped on another host).

        With ``sink`` (an object with ``update``/``write``) a 2xx body is streamed into it
        instead of being returned.
        """
        url = path if path.startswith("http") else self.base_url + path
        scope_key = self._scope_key(path)
        authorize = True
        for attempt in range(MAX_HOPS):
            req = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
            authorization = self._auth.get(scope_key) or self._auth.get(_BASIC)
            if authorization and authorize:
                req.add_header("Authorization", authorization)
            try:
                with _OPENER.open(req, timeout=TIMEOUT) as resp:
                    hdrs = {k.lower(): v for k, v in resp.headers.items()}
                    if sink is not None:
                        while chunk := resp.read(CHUNK):
                            sink(chunk)
                        return Response(resp.status, hdrs)
                    return Response(resp.status, hdrs, resp.read())
            except urllib.error.HTTPError as err:
                hdrs = {k.lower(): v for k, v in err.headers.items()}
                data = err.read()
                if err.code == 401 and authorize and attempt == 0 and self.username is not None:
                    self._answer_challenge(hdrs.get("www-authenticate", ""), scope_key)
                    continue
                if err.code in (301, 302, 303, 307, 308) and method in ("GET", "HEAD") and "location" in hdrs:
                    # Follow storage redirects (S3 presigned URLs) without our credentials.
                    target = urllib.parse.urljoin(url, hdrs["location"])
                    if urllib.parse.urlsplit(target).netloc != urllib.parse.urlsplit(url).netloc:
                        authorize = False
                    url = target
                    continue
                return Response(err.code, hdrs, data)
        raise AssertionError(f"{method} {path}: no final answer after {MAX_HOPS} hops")

    def _basic(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    @staticmethod
    def _scope_key(path: str) -> str:
        match = re.match(r"^/v2/(.+?)/(manifests|blobs|tags|referrers)/", path)
        return match.group(1) if match else "*"

    def _answer_challenge(self, challenge: str, scope_key: str) -> None:
        scheme, _, params_text = challenge.partition(" ")
        if scheme.lower() == "basic":
            self._auth[_BASIC] = self._basic()
            return
        params = dict(re.findall(r'(\w+)="([^"]*)"', params_text))
        query = {k: v for k, v in params.items() if k in ("service", "scope")}
        realm = params["realm"]
        url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query)
        req = urllib.request.Request(url, headers={"Authorization": self._basic()})
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            doc = json.loads(resp.read())
        self._auth[scope_key] = "Bearer " + (doc.get("token") or doc["access_token"])

    # Convenience verbs -----------------------------------------------------------------

    def get_manifest(self, repo: str, ref: str, accept: str = ACCEPT) -> Response:
        """GET a manifest by tag or digest."""
        return self.request("GET", f"/v2/{repo}/manifests/{ref}", {"Accept": accept})

    def head_manifest(self, repo: str, ref: str, accept: str = ACCEPT) -> Response:
        """HEAD a manifest by tag or digest."""
        return self.request("HEAD", f"/v2/{repo}/manifests/{ref}", {"Accept": accept})

    def tags(self, repo: str) -> list[str]:
        """All tags of ``repo`` (following Link pagination, bounded)."""
        path: str | None = f"/v2/{repo}/tags/list"
        found: list[str] = []
        for _ in range(1000):
            if path is None:
                break
            resp = self.request("GET", path)
            assert resp.status == 200, f"tags/list {repo}: {resp.status} {resp.body[:300]!r}"
            found += resp.json().get("tags") or []
            path = _next_link(resp.headers.get("link"))
        return found

    def catalog(self) -> list[str]:
        """All repositories (following Link pagination, bounded)."""
        path: str | None = "/v2/_catalog"
        found: list[str] = []
        for _ in range(1000):
            if path is None:
                break
            resp = self.request("GET", path)
            assert resp.status == 200, f"_catalog: {resp.status} {resp.body[:300]!r}"
            found += resp.json().get("repositories") or []
            path = _next_link(resp.headers.get("link"))
        return found

    def blob_digest(self, repo: str, digest: str) -> tuple[str, int]:
        """Stream a blob and return (sha256 digest of its bytes, size)."""
        sha = hashlib.sha256()
        size = 0

        def sink(chunk: bytes) -> None:
            nonlocal size
            sha.update(chunk)
            size += len(chunk)

        resp = self.request("GET", f"/v2/{repo}/blobs/{digest}", sink=sink)
        assert resp.status == 200, f"GET blob {repo}@{digest}: {resp.status} {resp.body[:300]!r}"
        return "sha256:" + sha.hexdigest(), size


def _next_link(link: str | None) -> str | None:
    if not link:
        return None
    match = re.search(r"<([^>]+)>", link)
    return match.group(1) if match else None


def http_for(server: Any) -> RegistryHTTP:
    """A :class:`RegistryHTTP` for a started server, with the credentials it carries, if any."""
    creds = getattr(server, "credentials", None)
    if creds:
        return RegistryHTTP(server.url, creds[0], creds[1])
    return RegistryHTTP(server.url)


@dataclass
class Verified:
    """What :func:`verify_image` found: the manifest's digest, media type, document, children."""

    digest: str
    media_type: str
    document: dict[str, Any]
    children: dict[str, Verified] = field(default_factory=dict)

    @property
    def blob_digests(self) -> list[str]:
        """Config and layer digests of an image manifest (empty for an index)."""
        if self.media_type in INDEX_TYPES:
            return []
        return [self.document["config"]["digest"], *[layer["digest"] for layer in self.document["layers"]]]


def verify_image(http: RegistryHTTP, repo: str, ref: str, expect_digest: str | None = None) -> Verified:
    """Check that ``repo:ref`` is served whole and consistent; raise AssertionError otherwise.

    The manifest's bytes must hash to ``expect_digest`` (when given) and to the
    ``Docker-Content-Digest`` header; HEAD must agree with GET; an index's children are
    verified recursively by digest; every blob must stream bytes that hash to its descriptor.
    """
    resp = http.get_manifest(repo, ref)
    assert resp.status == 200, f"GET manifest {repo}:{ref}: {resp.status} {resp.body[:300]!r}"
    digest = "sha256:" + hashlib.sha256(resp.body).hexdigest()
    if expect_digest is not None:
        assert digest == expect_digest, f"{repo}:{ref} serves {digest}, the client reported {expect_digest}"
    assert resp.headers.get("docker-content-digest") == digest, (
        f"Docker-Content-Digest {resp.headers.get('docker-content-digest')} != {digest}"
    )
    head = http.head_manifest(repo, ref)
    assert head.status == 200, f"HEAD manifest {repo}:{ref}: {head.status}"
    assert head.headers.get("docker-content-digest") == digest
    assert int(head.headers.get("content-length", "-1")) == len(resp.body)
    document = json.loads(resp.body)
    media_type = document.get("mediaType") or resp.headers.get("content-type", "").split(";")[0]
    assert resp.headers.get("content-type", "").split(";")[0].strip() == media_type, (
        f"Content-Type {resp.headers.get('content-type')} but the manifest says {media_type}"
    )
    verified = Verified(digest, media_type, document)
    if media_type in INDEX_TYPES:
        for child in document["manifests"]:
            verified.children[child["digest"]] = verify_image(http, repo, child["digest"], child["digest"])
            sub = http.head_manifest(repo, child["digest"])
            assert int(sub.headers.get("content-length", "-1")) == child["size"]
        return verified
    for descriptor in [document["config"], *document.get("layers", [])]:
        got, size = http.blob_digest(repo, descriptor["digest"])
        assert got == descriptor["digest"], f"blob {descriptor['digest']} streams bytes hashing to {got}"
        assert size == descriptor["size"], f"blob {descriptor['digest']} is {size} bytes, descriptor says {descriptor['size']}"
        head = http.request("HEAD", f"/v2/{repo}/blobs/{descriptor['digest']}")
        assert head.status == 200 and int(head.headers.get("content-length", "-1")) == descriptor["size"]
    return verified


def layout_manifest_digest(layout: Path, tag: str) -> str:
    """The digest an OCI layout's ``index.json`` records for ``tag``."""
    index = json.loads((layout / "index.json").read_text())
    for entry in index["manifests"]:
        if entry.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            return str(entry["digest"])
    raise AssertionError(f"{layout} has no manifest tagged {tag!r}")


def layout_blob(layout: Path, digest: str) -> Path:
    """The path of ``digest`` inside an OCI layout."""
    algorithm, _, hexpart = digest.partition(":")
    return layout / "blobs" / algorithm / hexpart


def file_digest(path: Path) -> str:
    """sha256 digest of a file, streamed."""
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            sha.update(chunk)
    return "sha256:" + sha.hexdigest()


def assert_layout_holds(layout: Path, digests: list[str], originals: dict[str, Path]) -> None:
    """Every digest is a file in ``layout`` whose bytes hash to it and equal the original's bytes."""
    for digest in digests:
        path = layout_blob(layout, digest)
        assert path.is_file(), f"{digest} missing from {layout}"
        assert file_digest(path) == digest, f"{path} does not hash to {digest}"
        if digest in originals:
            assert _same_bytes(path, originals[digest]), f"{digest} differs from the pushed original"


def _same_bytes(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            ca, cb = fa.read(CHUNK), fb.read(CHUNK)
            if ca != cb:
                return False
            if not ca:
                return True
