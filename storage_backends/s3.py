"""The S3 backend: storage paths as object keys in one bucket.

Layout. The object for storage path ``/a/b`` has the key
``<rootdirectory>/a/b`` with leading slashes removed (Distribution's S3
layout, so a bucket written by ``registry:2`` is served as it is).
Directories are key prefixes: ``list`` is a ``ListObjectsV2`` with
``Delimiter="/"``, ``walk`` the same without a delimiter, ``stat`` of a
directory is "some object has this prefix".

Calls. One boto3 client per driver, created on first use in a worker thread;
every boto3 call (and every read of a response body) runs on the driver's own
bounded :class:`~concurrent.futures.ThreadPoolExecutor` (``maxthreads``), so
the event loop never blocks. Each call has connect/read timeouts of
``timeout / 3`` and at most 3 attempts (botocore "standard" retries), so an
unreachable or stalled S3 fails within about ``timeout`` plus a few seconds
of back-off, never hangs. Requests carry no ``Expect: 100-continue``
(botocore's handling of it stalls against some S3-compatible servers,
SeaweedFS among them, until the read timeout).

Errors. Provider errors become the driver's typed errors: missing
key/upload -> :class:`PathNotFound`; connection errors, timeouts,
throttling, 5xx, a missing bucket and refused credentials ->
:class:`StorageUnavailable`. Credentials never appear in an error message or
a log line: messages carry the operation, path and S3 error code, with any
credential string scrubbed from the provider's text, and the boto exception
is not chained. ``loglevel`` (``off``, ``error``, ``warn``, ``info``,
``debug``) only governs this module's own lines (operation, path, outcome,
duration); the boto3/botocore loggers are held at INFO or above because their
DEBUG lines print request headers with the access key id.

Writers. ``writer(path)`` streams through an S3 multipart upload for the
object's key. Bytes are buffered until ``chunksize`` (>= 5 MiB, S3's minimum
part size) is reached and then uploaded as one part; nothing is visible at
the key until ``commit()`` completes the upload (or, for content that never
reached a part, writes it with one ``PutObject``). ``cancel()`` aborts the
upload.

``close()`` persists the writer so that ``writer(path, append=True)`` in any
process can continue it:

* pending bytes of at least 5 MiB are uploaded as a part;
* the smaller rest (the *tail*, < 5 MiB, which may not become a non-final
  part) is written to a hidden sibling *state object*
  ``<dir>/.berth-writer-<name>`` whose metadata names the upload id and the
  number of parts the tail follows.

``writer(path, append=True)`` looks up, concurrently, the in-progress
multipart uploads for the key (``ListMultipartUploads``, as Distribution
does) and the state object; it then lists the parts (``ListParts``) and
continues with parts ``1..n`` of the state's upload plus the tail as the
pending buffer (parts uploaded after the last ``close()`` are superseded and
dropped at completion). Without a state object it continues the newest
in-progress upload for the key; without either, it continues the committed
object (copied server-side with ``UploadPartCopy``, or read back when smaller
than 5 MiB), or starts empty. ``writer(path)`` without append first aborts
in-progress uploads for the key and deletes its state object. Hidden
``.berth-`` names are left out of ``list`` and ``walk``; ``commit`` and
``cancel`` delete the state object. (A crash between ``commit`` completing
the upload and deleting the state object leaves a state whose upload is
gone, which append ignores; only the state of a writer that never reached
5 MiB would wrongly be resumed. The registry's digest check catches that.)

Moves copy server-side (``CopyObject``, or a multipart ``UploadPartCopy``
above ``multipartcopythresholdsize``) and then delete the source. ``delete``
of a directory removes every object below it in batches (with any directory
marker keys, deepest first) and aborts uploads in progress below it.
``redirect_url`` presigns a GET (or HEAD).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import warnings
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import boto3
import botocore.config
import botocore.exceptions
import botocore.handlers
import botocore.session
import urllib3.exceptions

from storage_backends.base import (
    READ_CHUNK,
    FileInfo,
    FileWriter,
    InvalidOffset,
    InvalidPath,
    PathNotFound,
    StorageDriver,
    StorageError,
    StorageUnavailable,
)

T = TypeVar("T")

MIN_PART_SIZE = 5 << 20  # S3's smallest non-final multipart part
MAX_PART_SIZE = 5 << 30  # S3's largest part (and largest single CopyObject)
MAX_PARTS = 10_000
DEFAULT_CHUNK_SIZE = 10 << 20
DEFAULT_COPY_CHUNK_SIZE = 32 << 20
DEFAULT_COPY_THRESHOLD = 32 << 20
DEFAULT_COPY_CONCURRENCY = 100
DEFAULT_MAX_THREADS = 32
DEFAULT_TIMEOUT = 30.0
ATTEMPTS = 3  # tries per S3 call (botocore standard retry mode)
LIST_PAGE = 1000
DELETE_BATCH = 1000  # DeleteObjects' limit
HIDDEN_PREFIX = ".berth-"
STATE_PREFIX = ".berth-writer-"
META_UPLOAD = "berth-upload-id"
META_PARTS = "berth-parts"
SDK_LOGGERS = ("boto3", "botocore", "s3transfer")

_NOT_FOUND = {"NoSuchKey", "NotFound", "404", "NoSuchUpload"}
_DENIED = {
    "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken",
    "TokenRefreshRequired", "InvalidSecurity", "AccountProblem", "AllAccessDisabled", "403", "401",
}
_BUSY = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "Throttling", "ThrottlingException",
         "RequestTimeTooSkewed", "OperationAborted"}

log = logging.getLogger(__name__)
_SHARED_LOCK = threading.Lock()
_SHARED_SESSION: Any = None


def _quiet_sdk_loggers() -> None:
    """Keep boto3/botocore below DEBUG: their debug lines carry the access key id and signatures."""
    for name in SDK_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level < logging.INFO:  # NOTSET (inherit) included
            logger.setLevel(logging.INFO)


class _RangeNotSatisfiable(StorageError):
    """Internal: a ranged GET started at or past the end of the object."""


@dataclass(frozen=True)
class _Part:
    number: int
    etag: str
    size: int


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


class S3Driver(StorageDriver):
    """Objects in an S3 (or S3-compatible) bucket; takes the ``storage.s3`` config keys."""

    name = "s3"
    walk_is_cheap = True
    min_chunk_size = MIN_PART_SIZE

    def __init__(
        self,
        accesskey: str = "",
        secretkey: str = "",
        sessiontoken: str = "",
        region: str = "us-east-1",
        regionendpoint: str = "",
        bucket: str = "",
        rootdirectory: str = "",
        forcepathstyle: bool = False,
        secure: bool = True,
        skipverify: bool = False,
        v4auth: bool = True,
        chunksize: int = DEFAULT_CHUNK_SIZE,
        multipartcopychunksize: int = DEFAULT_COPY_CHUNK_SIZE,
        multipartcopymaxconcurrency: int = DEFAULT_COPY_CONCURRENCY,
        multipartcopythresholdsize: int = DEFAULT_COPY_THRESHOLD,
        storageclass: str = "STANDARD",
        encrypt: bool = False,
        keyid: str = "",
        usedualstack: bool = False,
        accelerate: bool = False,
        objectacl: str = "private",
        loglevel: str = "off",
        maxthreads: int = DEFAULT_MAX_THREADS,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if not bucket:
            raise ValueError("s3: bucket is required")
        if bool(accesskey) != bool(secretkey):
            raise ValueError(
                "s3: accesskey and secretkey must be given together (or neither, for the AWS default chain)"
            )
        self.bucket = str(bucket)
        self.region = str(region or "us-east-1")
        self.chunksize = int(chunksize)
        if self.chunksize < MIN_PART_SIZE:
            raise ValueError(f"s3: chunksize must be at least {MIN_PART_SIZE} bytes (S3's minimum part size)")
        if self.chunksize > MAX_PART_SIZE:
            raise ValueError(f"s3: chunksize must be at most {MAX_PART_SIZE} bytes")
        # The last copy range may absorb a remainder below 5 MiB, so leave room for it.
        self.copy_chunksize = min(max(int(multipartcopychunksize), MIN_PART_SIZE), MAX_PART_SIZE - MIN_PART_SIZE)
        self.copy_concurrency = max(1, int(multipartcopymaxconcurrency))
        self.copy_threshold = min(max(int(multipartcopythresholdsize), 0), MAX_PART_SIZE)
        self.timeout = float(timeout) if float(timeout) > 0 else DEFAULT_TIMEOUT
        self.maxthreads = max(1, int(maxthreads))
        self._root = "/".join(p for p in str(rootdirectory or "").split("/") if p)
        self._secrets = [s for s in (accesskey, secretkey, sessiontoken) if s and len(s) >= 4]
        self._credentials = (accesskey or None, secretkey or None, sessiontoken or None)
        endpoint = str(regionendpoint or "")
        if endpoint and "://" not in endpoint:
            endpoint = ("https://" if _truthy(secure) else "http://") + endpoint
        self.endpoint = endpoint or None
        self._secure = _truthy(secure)
        self._skipverify = _truthy(skipverify)
        self._v4auth = _truthy(v4auth)
        self._forcepathstyle = _truthy(forcepathstyle)
        self._dualstack = _truthy(usedualstack)
        self._accelerate = _truthy(accelerate)
        if self._accelerate and self._forcepathstyle:
            raise ValueError("s3: accelerate cannot be combined with forcepathstyle")
        if self._skipverify:
            # The operator chose not to verify TLS; don't warn on every request.
            warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
        self._put_args: dict[str, Any] = {}
        if storageclass and str(storageclass).upper() != "NONE":
            self._put_args["StorageClass"] = str(storageclass)
        if objectacl:
            self._put_args["ACL"] = str(objectacl)
        if _truthy(encrypt):
            if keyid:
                self._put_args["ServerSideEncryption"] = "aws:kms"
                self._put_args["SSEKMSKeyId"] = str(keyid)
            else:
                self._put_args["ServerSideEncryption"] = "AES256"
        self._log_level = self._parse_loglevel(str(loglevel or "off"))
        _quiet_sdk_loggers()
        self._pool = ThreadPoolExecutor(max_workers=self.maxthreads, thread_name_prefix="berth-s3")
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"S3Driver(bucket={self.bucket!r}, endpoint={self.endpoint!r}, rootdirectory={self._root!r})"

    # ---- client, threads, errors ----
    @staticmethod
    def _parse_loglevel(level: str) -> int | None:
        level = level.strip().lower()
        if level in ("", "off", "none"):
            return None
        if level.startswith("debug"):
            return logging.DEBUG
        return {"error": logging.ERROR, "warn": logging.WARNING, "warning": logging.WARNING}.get(level, logging.INFO)

    def _get_client(self) -> Any:
        # Runs in a worker thread: building a client reads botocore's model files.
        with self._client_lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self) -> Any:
        access, secret, token = self._credentials
        per_try = max(0.5, self.timeout / ATTEMPTS)
        config = botocore.config.Config(
            signature_version="s3v4" if self._v4auth else "s3",
            connect_timeout=per_try,
            read_timeout=per_try,
            retries={"mode": "standard", "total_max_attempts": ATTEMPTS},
            max_pool_connections=self.maxthreads,
            s3={
                "addressing_style": "path" if self._forcepathstyle else "virtual",
                "use_dualstack_endpoint": self._dualstack,
                "use_accelerate_endpoint": self._accelerate,
            },
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            user_agent_extra="berth",
        )
        args: dict[str, Any] = {
            "endpoint_url": self.endpoint,
            "use_ssl": self._secure,
            "verify": False if self._skipverify else None,
            "config": config,
            "region_name": self.region,
        }
        if access:
            # Explicit keys: reuse one botocore session (its parsed service
            # models) for every driver; clients are independent once created.
            with _SHARED_LOCK:
                global _SHARED_SESSION
                if _SHARED_SESSION is None:
                    _SHARED_SESSION = botocore.session.get_session()
                client = _SHARED_SESSION.create_client(
                    "s3", aws_access_key_id=access, aws_secret_access_key=secret, aws_session_token=token, **args,
                )
        else:
            # The AWS default chain (environment, profile, web identity, instance role).
            client = boto3.session.Session(region_name=self.region).client("s3", **args)
        client.meta.events.unregister("before-call.s3", botocore.handlers.add_expect_header)
        return client

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _log(self, level: int, message: str) -> None:
        if self._log_level is not None and level >= self._log_level:
            log.log(level, "%s", self._scrub(message))

    def _translate(self, exc: BaseException, op: str, path: str | None) -> StorageError:
        where = f"s3 {op} {path}" if path else f"s3 {op}"
        if isinstance(exc, botocore.exceptions.ClientError):
            error = exc.response.get("Error", {}) or {}
            code = str(error.get("Code", "") or "")
            status = int((exc.response.get("ResponseMetadata", {}) or {}).get("HTTPStatusCode", 0) or 0)
            detail = self._scrub(str(error.get("Message", "") or ""))[:200]
            text = f"{where}: {code or status}" + (f" ({detail})" if detail else "")
            if code == "InvalidRange" or status == 416:
                return _RangeNotSatisfiable(text, path, self.name)
            if code == "NoSuchBucket" or (op == "head_bucket" and status == 404):
                return StorageUnavailable(f"{where}: bucket {self.bucket!r} does not exist", path, self.name)
            if code in _NOT_FOUND or status == 404:
                return PathNotFound(text, path, self.name)
            if code in _DENIED or status in (401, 403):
                return StorageUnavailable(f"{where}: access denied ({code or status})", path, self.name)
            if code in _BUSY or status >= 500 or status == 429:
                return StorageUnavailable(text, path, self.name)
            return StorageError(text, path, self.name)
        if isinstance(exc, botocore.exceptions.NoCredentialsError):
            return StorageUnavailable(f"{where}: no S3 credentials found", path, self.name)
        if isinstance(exc, (botocore.exceptions.PartialCredentialsError, botocore.exceptions.CredentialRetrievalError)):
            return StorageUnavailable(f"{where}: S3 credentials are unusable", path, self.name)
        if isinstance(exc, (botocore.exceptions.BotoCoreError, OSError)) or type(exc).__module__.startswith("urllib3"):
            return StorageUnavailable(f"{where}: {type(exc).__name__}: {self._scrub(str(exc))[:200]}", path, self.name)
        return StorageError(f"{where}: {type(exc).__name__}", path, self.name)

    async def _run(self, op: str, path: str | None, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking call on the pool, translating provider errors."""
        if self._closed:
            raise StorageUnavailable("s3 driver is closed", path, self.name)
        loop = asyncio.get_running_loop()
        began = time.monotonic()
        try:
            result = await loop.run_in_executor(self._pool, partial(fn, *args, **kwargs))
        except StorageError:
            raise
        except Exception as exc:  # noqa: BLE001 - every provider error is translated
            error = self._translate(exc, op, path)
            level = logging.DEBUG if isinstance(error, (PathNotFound, _RangeNotSatisfiable)) else logging.WARNING
            self._log(level, f"{error} after {time.monotonic() - began:.3f}s")
            raise error from None
        self._log(logging.DEBUG, f"s3 {op} {path or ''} ok in {time.monotonic() - began:.3f}s")
        return result

    async def _call(self, op: str, path: str | None, **kwargs: Any) -> Any:
        """One S3 API call (``op`` is the boto3 method name) with ``Bucket`` filled in."""

        def invoke() -> Any:
            return getattr(self._get_client(), op)(Bucket=self.bucket, **kwargs)

        return await self._run(op, path, invoke)

    async def close(self) -> None:
        """Close the client's connections and the thread pool."""
        if self._closed:
            return
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await asyncio.get_running_loop().run_in_executor(self._pool, client.close)
        self._pool.shutdown(wait=False)

    async def health(self) -> None:
        """Raise :class:`StorageUnavailable` unless the bucket answers."""
        await self._call("head_bucket", None)

    # ---- keys ----
    def _key(self, path: str) -> str:
        if path == "/":
            raise InvalidPath("the root is a directory", path, self.name)
        return f"{self._root}{path}".lstrip("/")

    def _dir_prefix(self, path: str) -> str:
        if path == "/":
            return f"{self._root}/" if self._root else ""
        return self._key(path) + "/"

    def _state_key(self, key: str) -> str:
        head, _, name = key.rpartition("/")
        return f"{head}/{STATE_PREFIX}{name}" if head else f"{STATE_PREFIX}{name}"

    # ---- whole objects ----
    async def _get_content(self, path: str) -> bytes:
        resp = await self._call("get_object", path, Key=self._key(path))
        body = resp["Body"]
        try:
            data: bytes = await self._run("get_object", path, body.read)
        finally:
            await self._close_body(body)
        return data

    async def _put_content(self, path: str, data: bytes) -> None:
        await self._call(
            "put_object", path, Key=self._key(path), Body=bytes(data),
            ContentType="application/octet-stream", **self._put_args,
        )

    async def _close_body(self, body: Any) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(self._pool, body.close)
        except Exception as exc:  # noqa: BLE001 - closing a dead stream must not mask the real outcome
            self._log(logging.DEBUG, f"s3 closing a response body failed: {type(exc).__name__}")

    async def _reader(self, path: str, offset: int, length: int | None) -> AsyncIterator[bytes]:
        key = self._key(path)
        if length == 0:
            info = await self._stat_object(path, key)
            if offset > info.size:
                raise InvalidOffset(f"offset {offset} beyond size {info.size}", path, self.name)
            return
        args: dict[str, Any] = {"Key": key}
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            args["Range"] = f"bytes={offset}-{end}"
        try:
            resp = await self._call("get_object", path, **args)
        except _RangeNotSatisfiable:
            info = await self._stat_object(path, key)
            if offset > info.size:
                raise InvalidOffset(f"offset {offset} beyond size {info.size}", path, self.name) from None
            return
        body = resp["Body"]
        try:
            while True:
                chunk: bytes = await self._run("get_object", path, body.read, READ_CHUNK)
                if not chunk:
                    break
                yield chunk
        finally:
            await self._close_body(body)

    # ---- metadata ----
    async def _stat_object(self, path: str, key: str) -> FileInfo:
        head = await self._call("head_object", path, Key=key)
        return FileInfo(path, int(head.get("ContentLength", 0)), head["LastModified"].timestamp(), False)

    async def _stat(self, path: str) -> FileInfo:
        if path == "/":
            return FileInfo(path, 0, 0.0, True)
        try:
            return await self._stat_object(path, self._key(path))
        except PathNotFound:
            pass
        resp = await self._call("list_objects_v2", path, Prefix=self._dir_prefix(path), MaxKeys=1)
        contents = resp.get("Contents") or []
        if not contents:
            raise PathNotFound(f"path not found: {path}", path, self.name)
        return FileInfo(path, 0, contents[0]["LastModified"].timestamp(), True)

    async def _list(self, path: str) -> list[str]:
        prefix = self._dir_prefix(path)
        names: set[str] = set()
        seen = False
        token: str | None = None
        for _ in range(1_000_000):  # bounded: one iteration per page
            args: dict[str, Any] = {"Prefix": prefix, "Delimiter": "/", "MaxKeys": LIST_PAGE}
            if token:
                args["ContinuationToken"] = token
            resp = await self._call("list_objects_v2", path, **args)
            for obj in resp.get("Contents") or []:
                seen = True
                names.add(obj["Key"][len(prefix):])
            for common in resp.get("CommonPrefixes") or []:
                seen = True
                names.add(common["Prefix"][len(prefix):].rstrip("/"))
            token = resp.get("NextContinuationToken")
            if not resp.get("IsTruncated") or not token:
                break
        if not seen and path != "/":
            raise PathNotFound(f"path not found: {path}", path, self.name)
        base = "" if path == "/" else path
        return sorted(f"{base}/{n}" for n in names if n and "/" not in n and not n.startswith(HIDDEN_PREFIX))

    async def _list_keys(self, path: str, prefix: str) -> AsyncIterator[dict[str, Any]]:
        token: str | None = None
        for _ in range(1_000_000):
            args: dict[str, Any] = {"Prefix": prefix, "MaxKeys": LIST_PAGE}
            if token:
                args["ContinuationToken"] = token
            resp = await self._call("list_objects_v2", path, **args)
            for obj in resp.get("Contents") or []:
                yield obj
            token = resp.get("NextContinuationToken")
            if not resp.get("IsTruncated") or not token:
                return

    async def _walk(self, path: str) -> AsyncIterator[FileInfo]:
        prefix = self._dir_prefix(path)
        base = "" if path == "/" else path
        seen = False
        async for obj in self._list_keys(path, prefix):
            seen = True
            rel = obj["Key"][len(prefix):]
            if not rel or rel.endswith("/") or rel.rpartition("/")[2].startswith(HIDDEN_PREFIX):
                continue
            yield FileInfo(f"{base}/{rel}", int(obj.get("Size", 0)), obj["LastModified"].timestamp())
        if not seen and path != "/":
            raise PathNotFound(f"path not found: {path}", path, self.name)

    # ---- move and delete ----
    async def _move(self, source: str, dest: str) -> None:
        src_key, dst_key = self._key(source), self._key(dest)
        info = await self._stat_object(source, src_key)
        if src_key == dst_key:
            return
        if info.size > self.copy_threshold:
            await self._multipart_copy(dest, src_key, dst_key, info.size)
        else:
            await self._call(
                "copy_object", source, Key=dst_key, CopySource={"Bucket": self.bucket, "Key": src_key},
                **self._put_args,
            )
        await self._call("delete_object", source, Key=src_key)

    def _copy_ranges(self, size: int) -> list[tuple[int, int]]:
        """Inclusive byte ranges of at most the copy chunk size; none (but a lone one) under 5 MiB."""
        ranges: list[tuple[int, int]] = []
        step = max(self.copy_chunksize, -(-size // MAX_PARTS))
        start = 0
        while start < size:
            end = min(size, start + step)
            if 0 < size - end < MIN_PART_SIZE:
                end = size  # fold a too-small remainder into this range
            ranges.append((start, end - 1))
            start = end
        return ranges

    async def _copy_parts(self, path: str, src_key: str, dst_key: str, upload_id: str, size: int) -> list[_Part]:
        sem = asyncio.Semaphore(min(self.copy_concurrency, self.maxthreads))

        async def copy(number: int, first: int, last: int) -> _Part:
            async with sem:
                resp = await self._call(
                    "upload_part_copy", path, Key=dst_key, UploadId=upload_id, PartNumber=number,
                    CopySource={"Bucket": self.bucket, "Key": src_key}, CopySourceRange=f"bytes={first}-{last}",
                )
            return _Part(number, resp["CopyPartResult"]["ETag"], last - first + 1)

        ranges = self._copy_ranges(size)
        return list(await asyncio.gather(*(copy(i + 1, a, b) for i, (a, b) in enumerate(ranges))))

    async def _multipart_copy(self, path: str, src_key: str, dst_key: str, size: int) -> None:
        resp = await self._call(
            "create_multipart_upload", path, Key=dst_key, ContentType="application/octet-stream", **self._put_args,
        )
        upload_id = resp["UploadId"]
        try:
            parts = await self._copy_parts(path, src_key, dst_key, upload_id, size)
            await self._complete(path, dst_key, upload_id, parts)
        except BaseException:
            await self._abort_quiet(path, dst_key, upload_id)
            raise

    async def _is_object(self, path: str) -> bool:
        if path == "/":
            return False
        try:
            await self._stat_object(path, self._key(path))
        except PathNotFound:
            return False
        return True

    async def _keys_below(self, path: str, prefix: str) -> list[str]:
        return [obj["Key"] async for obj in self._list_keys(path, prefix)]

    async def _delete(self, path: str) -> None:
        prefix = self._dir_prefix(path)
        is_file, keys = await asyncio.gather(self._is_object(path), self._keys_below(path, prefix))
        if not is_file and not keys and path != "/":
            raise PathNotFound(f"path not found: {path}", path, self.name)
        dirs: set[str] = set()
        for key in keys:
            parents = key[len(prefix):].split("/")[:-1]
            for i in range(1, len(parents) + 1):
                dirs.add(prefix + "/".join(parents[:i]) + "/")
        if is_file:
            await self._call("delete_object", path, Key=self._key(path))
        if not keys:
            return
        # Objects first, then directory keys deepest first (some S3 servers keep
        # implicit folders that only disappear this way; elsewhere it is a no-op).
        victims = [k for k in keys if k not in dirs]
        victims += sorted(dirs, key=lambda d: (-d.count("/"), d))
        if prefix:
            victims.append(prefix)
        for start in range(0, len(victims), DELETE_BATCH):
            batch = victims[start:start + DELETE_BATCH]
            resp = await self._call(
                "delete_objects", path, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
            )
            errors = [e for e in resp.get("Errors") or [] if e.get("Code") not in ("NoSuchKey", None)]
            if errors:
                first = errors[0]
                raise StorageUnavailable(
                    f"s3 delete_objects {path}: {len(errors)} keys not deleted ({first.get('Code')})", path, self.name,
                )
        for upload in await self._uploads(path, prefix, exact=False):
            await self._abort_quiet(path, upload["Key"], upload["UploadId"])

    # ---- multipart helpers ----
    async def _uploads(self, path: str, prefix: str, exact: bool) -> list[dict[str, Any]]:
        """In-progress multipart uploads whose key is ``prefix`` (``exact``) or starts with it."""
        found: list[dict[str, Any]] = []
        markers: dict[str, str] = {}
        for _ in range(1_000_000):
            resp = await self._call("list_multipart_uploads", path, Prefix=prefix, **markers)
            for upload in resp.get("Uploads") or []:
                if not exact or upload.get("Key") == prefix:
                    found.append(upload)
            if not resp.get("IsTruncated"):
                break
            markers = {
                "KeyMarker": resp.get("NextKeyMarker") or "",
                "UploadIdMarker": resp.get("NextUploadIdMarker") or "",
            }
            if not markers["KeyMarker"] and not markers["UploadIdMarker"]:
                break
        return found

    async def _list_parts(self, path: str, key: str, upload_id: str) -> list[_Part]:
        parts: list[_Part] = []
        marker = 0
        for _ in range(MAX_PARTS):
            resp = await self._call("list_parts", path, Key=key, UploadId=upload_id, PartNumberMarker=marker)
            for part in resp.get("Parts") or []:
                parts.append(_Part(int(part["PartNumber"]), part["ETag"], int(part["Size"])))
            if not resp.get("IsTruncated"):
                break
            marker = int(resp.get("NextPartNumberMarker") or 0)
            if not marker:
                break
        parts.sort(key=lambda p: p.number)
        return parts

    async def _complete(self, path: str, key: str, upload_id: str, parts: list[_Part]) -> None:
        await self._call(
            "complete_multipart_upload", path, Key=key, UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": p.number, "ETag": p.etag} for p in parts]},
        )

    async def _abort_quiet(self, path: str, key: str, upload_id: str) -> None:
        try:
            await self._call("abort_multipart_upload", path, Key=key, UploadId=upload_id)
        except PathNotFound:
            pass

    async def _delete_quiet(self, path: str, key: str) -> None:
        try:
            await self._call("delete_object", path, Key=key)
        except PathNotFound:
            pass

    async def _load_state(self, path: str, key: str) -> tuple[str, int, bytes] | None:
        """The state object of ``key``'s writer: (upload id or "", parts it follows, tail bytes)."""
        try:
            resp = await self._call("get_object", path, Key=self._state_key(key))
        except PathNotFound:
            return None
        body = resp["Body"]
        try:
            tail: bytes = await self._run("get_object", path, body.read)
        finally:
            await self._close_body(body)
        meta = {k.lower(): v for k, v in (resp.get("Metadata") or {}).items()}
        try:
            parts = int(meta.get(META_PARTS, "0"))
        except ValueError:
            parts = -1
        return meta.get(META_UPLOAD, ""), parts, tail

    # ---- writers ----
    async def _writer(self, path: str, append: bool) -> FileWriter:
        key = self._key(path)
        if not append:
            uploads, _ = await asyncio.gather(
                self._uploads(path, key, exact=True), self._delete_quiet(path, self._state_key(key)),
            )
            for upload in uploads:
                await self._abort_quiet(path, key, upload["UploadId"])
            return _S3Writer(self, path, key, None, [], bytearray(), False)

        uploads, state = await asyncio.gather(self._uploads(path, key, exact=True), self._load_state(path, key))
        live = {u["UploadId"]: u for u in uploads}
        if state is not None:
            upload_id, count, tail = state
            if count >= 0 and (upload_id in live or (not upload_id and count == 0)):
                for other in live:  # leftovers of writers that never closed
                    if other != upload_id:
                        await self._abort_quiet(path, key, other)
                parts: list[_Part] = []
                if upload_id:
                    listed = {p.number: p for p in await self._list_parts(path, key, upload_id)}
                    parts = [listed[n] for n in range(1, count + 1) if n in listed]
                    if len(parts) != count:
                        raise StorageError(f"s3 writer {path}: upload lost parts", path, self.name)
                return _S3Writer(self, path, key, upload_id or None, parts, bytearray(tail), True)
            # Stale state (its upload was completed or aborted elsewhere): fall through.
        if uploads:
            newest = max(uploads, key=lambda u: u.get("Initiated") or 0)
            parts = await self._list_parts(path, key, newest["UploadId"])
            if any(p.size < MIN_PART_SIZE for p in parts[:-1]) or (parts and parts[-1].size < MIN_PART_SIZE):
                raise StorageError(
                    f"s3 writer {path}: cannot continue an upload whose parts are below 5 MiB", path, self.name,
                )
            return _S3Writer(self, path, key, newest["UploadId"], parts, bytearray(), state is not None)
        try:
            info = await self._stat_object(path, key)
        except PathNotFound:
            return _S3Writer(self, path, key, None, [], bytearray(), state is not None)
        return await self._writer_from_object(path, key, info.size, state is not None)

    async def _writer_from_object(self, path: str, key: str, size: int, state_exists: bool) -> FileWriter:
        """A writer continuing the committed object at ``key``."""
        if size < MIN_PART_SIZE:
            data = await self._get_content(path)
            return _S3Writer(self, path, key, None, [], bytearray(data), state_exists)
        resp = await self._call(
            "create_multipart_upload", path, Key=key, ContentType="application/octet-stream", **self._put_args,
        )
        upload_id = resp["UploadId"]
        try:
            parts = await self._copy_parts(path, key, key, upload_id, size)
        except BaseException:
            await self._abort_quiet(path, key, upload_id)
            raise
        return _S3Writer(self, path, key, upload_id, parts, bytearray(), state_exists)

    async def _redirect_url(self, path: str, method: str, expires_in: int) -> str | None:
        operation = {"GET": "get_object", "HEAD": "head_object"}.get(method.upper())
        if operation is None:
            return None
        key = self._key(path)

        def presign() -> str:
            return str(self._get_client().generate_presigned_url(
                operation, Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=int(expires_in),
            ))

        return await self._run("presign", path, presign)


class _S3Writer(FileWriter):
    """A multipart upload plus an in-memory pending buffer (see the module docstring)."""

    def __init__(
        self, driver: S3Driver, path: str, key: str, upload_id: str | None, parts: list[_Part],
        pending: bytearray, state_exists: bool,
    ) -> None:
        self._driver = driver
        self._path = path
        self._key = key
        self._upload_id = upload_id
        self._parts = parts
        self._buf = pending
        self._state_exists = state_exists
        self._status = "open"  # open -> closed -> committed | cancelled

    @property
    def size(self) -> int:
        return sum(p.size for p in self._parts) + len(self._buf)

    async def write(self, data: bytes) -> None:
        if self._status != "open":
            raise ValueError(f"writer is {self._status}")
        self._buf += data
        while len(self._buf) >= self._driver.chunksize:
            await self._upload_part(self._driver.chunksize)

    async def _upload_part(self, count: int) -> None:
        d = self._driver
        if self._upload_id is None:
            resp = await d._call(
                "create_multipart_upload", self._path, Key=self._key,
                ContentType="application/octet-stream", **d._put_args,
            )
            self._upload_id = resp["UploadId"]
        number = (self._parts[-1].number if self._parts else 0) + 1
        if number > MAX_PARTS:
            raise StorageError(f"s3 writer {self._path}: more than {MAX_PARTS} parts", self._path, d.name)
        body = bytes(self._buf[:count])
        resp = await d._call(
            "upload_part", self._path, Key=self._key, UploadId=self._upload_id, PartNumber=number, Body=body,
        )
        self._parts.append(_Part(number, resp["ETag"], len(body)))
        del self._buf[:count]

    async def close(self) -> None:
        if self._status != "open":
            return
        d = self._driver
        if len(self._buf) >= MIN_PART_SIZE:
            await self._upload_part(len(self._buf))
        await d._call(
            "put_object", self._path, Key=d._state_key(self._key), Body=bytes(self._buf),
            ContentType="application/octet-stream",
            Metadata={META_UPLOAD: self._upload_id or "", META_PARTS: str(len(self._parts))},
        )
        self._state_exists = True
        self._status = "closed"

    async def commit(self) -> None:
        if self._status not in ("open", "closed"):
            raise ValueError(f"writer is {self._status}")
        d = self._driver
        if self._upload_id is not None and not self._parts:
            await d._abort_quiet(self._path, self._key, self._upload_id)
            self._upload_id = None
        if self._upload_id is None:
            await d._call(
                "put_object", self._path, Key=self._key, Body=bytes(self._buf),
                ContentType="application/octet-stream", **d._put_args,
            )
        else:
            if self._buf:
                await self._upload_part(len(self._buf))
            await d._complete(self._path, self._key, self._upload_id, self._parts)
        self._status = "committed"
        self._buf = bytearray()
        # A crash right here leaves a stale state object; its upload no longer
        # exists, so a later append ignores it (unless it held only a tail).
        if self._state_exists:
            await d._delete_quiet(self._path, d._state_key(self._key))
            self._state_exists = False

    async def cancel(self) -> None:
        if self._status in ("committed", "cancelled"):
            return
        d = self._driver
        self._status = "cancelled"
        self._buf = bytearray()
        if self._upload_id is not None:
            await d._abort_quiet(self._path, self._key, self._upload_id)
            self._upload_id = None
        if self._state_exists:
            await d._delete_quiet(self._path, d._state_key(self._key))
            self._state_exists = False
