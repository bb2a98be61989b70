"""Where everything lives in storage: Distribution's layout, as one pure module.

Nothing else in Berth builds storage paths. Every argument is validated
(names by the spec grammar, tags by the tag grammar, digests by
:class:`~registry.digest.Digest`, upload ids as UUIDs) before it is joined,
so no request can name a path outside the tree below::

    /docker/registry/v2/
      blobs/<alg>/<hex[:2]>/<hex>/data                    blob bytes
      repositories/<name>/                                 name may contain '/'
        _layers/<alg>/<hex>/link                           blob linked into repo
        _manifests/revisions/<alg>/<hex>/link              manifest revision
        _manifests/tags/<tag>/current/link                 tag -> digest
        _manifests/tags/<tag>/index/<alg>/<hex>/link       tag history
        _manifests/referrers/<salg>/<shex>/<alg>/<hex>/link   Berth: subject -> referrer
        _uploads/<uuid>/data                               upload in progress
        _uploads/<uuid>/startedat                          RFC 3339 start time
        _uploads/<uuid>/hashstates/<alg>/<offset>          (Distribution's; unused by Berth)
      _berth/                                              Berth's own state (Distribution ignores it)
        httpsecret                                         generated upload-state key (no http.secret)
        gc/{trash,journal.json,lock}                       garbage collection (registry.maintenance)
        tokens/<id>.json                                   access token record (hash only; auth.pat)
        tokens/<id>.lastused                               when the token last authenticated

Each ``link`` file holds a digest string. The tree is the one the reference
registry (Distribution 2.x) reads and writes, so data directories and buckets
are interchangeable; ``_manifests/referrers`` is Berth's addition, which
Distribution ignores.
"""

from __future__ import annotations

import re

from registry.digest import Digest
from registry.reference import validate_name, validate_tag

ROOT = "/docker/registry/v2"
BLOBS = f"{ROOT}/blobs"
REPOSITORIES = f"{ROOT}/repositories"
BERTH_STATE = f"{ROOT}/_berth"
HTTP_SECRET = f"{BERTH_STATE}/httpsecret"
GC_DIR = f"{BERTH_STATE}/gc"
TOKENS_DIR = f"{BERTH_STATE}/tokens"

_TOKEN_ID_RE = re.compile(r"^[0-9a-f]{16}$")
_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class InvalidUploadId(ValueError):
    """An upload id that is not a lower-case UUID."""


def validate_upload_id(upload_id: str) -> str:
    if not isinstance(upload_id, str) or not _UUID_RE.match(upload_id):
        raise InvalidUploadId(f"invalid upload id {upload_id!r}")
    return upload_id


class InvalidTokenId(ValueError):
    """An access token id that is not 16 lower-case hex digits."""


def validate_token_id(token_id: str) -> str:
    """``token_id`` if it is 16 lower-case hex digits; else :class:`InvalidTokenId`."""
    if not isinstance(token_id, str) or not _TOKEN_ID_RE.match(token_id):
        raise InvalidTokenId("invalid token id")
    return token_id


def token_record(token_id: str) -> str:
    """Where an access token's record (never its secret) is stored."""
    return f"{TOKENS_DIR}/{validate_token_id(token_id)}.json"


def token_last_used(token_id: str) -> str:
    """Where the time an access token last authenticated is stored."""
    return f"{TOKENS_DIR}/{validate_token_id(token_id)}.lastused"


def blob_dir(digest: Digest) -> str:
    return f"{BLOBS}/{digest.algorithm}/{digest.hex[:2]}/{digest.hex}"


def blob_data(digest: Digest) -> str:
    return f"{blob_dir(digest)}/data"


def repository(name: str) -> str:
    return f"{REPOSITORIES}/{validate_name(name)}"


def layers_dir(name: str) -> str:
    return f"{repository(name)}/_layers"


def layer_link(name: str, digest: Digest) -> str:
    return f"{layers_dir(name)}/{digest.algorithm}/{digest.hex}/link"


def manifests_dir(name: str) -> str:
    return f"{repository(name)}/_manifests"


def revisions_dir(name: str) -> str:
    return f"{manifests_dir(name)}/revisions"


def revision_link(name: str, digest: Digest) -> str:
    return f"{revisions_dir(name)}/{digest.algorithm}/{digest.hex}/link"


def tags_dir(name: str) -> str:
    return f"{manifests_dir(name)}/tags"


def tag_dir(name: str, tag: str) -> str:
    return f"{tags_dir(name)}/{validate_tag(tag)}"


def tag_current_link(name: str, tag: str) -> str:
    return f"{tag_dir(name, tag)}/current/link"


def tag_index_link(name: str, tag: str, digest: Digest) -> str:
    return f"{tag_dir(name, tag)}/index/{digest.algorithm}/{digest.hex}/link"


def referrers_dir(name: str, subject: Digest) -> str:
    return f"{manifests_dir(name)}/referrers/{subject.algorithm}/{subject.hex}"


def referrer_link(name: str, subject: Digest, referrer: Digest) -> str:
    return f"{referrers_dir(name, subject)}/{referrer.algorithm}/{referrer.hex}/link"


def uploads_dir(name: str) -> str:
    return f"{repository(name)}/_uploads"


def upload_dir(name: str, upload_id: str) -> str:
    return f"{uploads_dir(name)}/{validate_upload_id(upload_id)}"


def upload_data(name: str, upload_id: str) -> str:
    return f"{upload_dir(name, upload_id)}/data"


def upload_started_at(name: str, upload_id: str) -> str:
    return f"{upload_dir(name, upload_id)}/startedat"


def digest_from_link_path(path: str) -> Digest:
    """The digest named by ``.../<alg>/<hex>/link`` or ``.../<alg>/<hex>`` (for listings)."""
    parts = path.rstrip("/").split("/")
    if parts[-1] == "link":
        parts = parts[:-1]
    return Digest.parse(f"{parts[-2]}:{parts[-1]}")
