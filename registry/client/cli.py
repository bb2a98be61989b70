"""The ``berth`` client verbs: argument parsing and printing only (the work is in the library).

Wire into the ``berth`` command with :func:`add_client_commands`, or run
standalone as ``python -m registry.client.cli VERB …`` (:func:`main`). Every
handler returns an exit code (see :mod:`registry.client.errors` and
``docs/client.md``); failures print one ``berth: …`` line on stderr, never a
traceback (set ``BERTH_DEBUG=1`` to get one).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
import traceback
from typing import Any, Awaitable, Callable, Sequence, TypeVar

from registry.client import archive, remote
from registry.client.pull import DEFAULT_PULL_CONCURRENCY, pull as pull_image
from registry.client.push import DEFAULT_CHUNK_SIZE, DEFAULT_PUSH_CONCURRENCY, push as push_image
from registry.client.authflow import RegistryAuth
from registry.client.credentials import Credential, DockerConfig
from registry.client.errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, ClientError, NotFound, UsageError
from registry.client.platforms import Platform
from registry.client.progress import make_reporter
from registry.client.store import Image, Store, humanize_age, humanize_size, local_name
from registry.client.transport import RegistryClient, TransportOptions
from registry.reference import DOCKER_HUB, DOCKER_HUB_API, InvalidReference, Reference, parse_reference

VERBS = ("login", "logout", "pull", "push", "tag", "save", "load", "images", "rmi", "inspect", "tags", "copy", "delete")
T = TypeVar("T")


def _ref(text: str) -> Reference:
    try:
        return parse_reference(text)
    except InvalidReference as exc:
        raise UsageError(f"invalid reference {text!r}: {exc}") from None


def _repo(text: str) -> Reference:
    """A repository (``host/name``), tolerating a tag."""
    ref = _ref(text)
    return Reference(ref.registry, ref.repository, None, None)


def _host(text: str) -> str:
    host = text.strip()
    for prefix in ("https://", "http://"):
        if host.startswith(prefix):
            host = host[len(prefix):]
    host = host.split("/", 1)[0]
    if host in ("index.docker.io", "registry-1.docker.io", ""):
        host = DOCKER_HUB
    return host


def _client(args: argparse.Namespace, config: DockerConfig | None = None) -> RegistryClient:
    config = config or DockerConfig()
    auth = RegistryAuth(lambda host: config.get(DOCKER_HUB if host == DOCKER_HUB_API else host))
    options = TransportOptions(insecure=getattr(args, "insecure", False), ca_file=getattr(args, "ca_file", None))
    return RegistryClient(auth, options)


def _run(factory: Callable[[RegistryClient], Awaitable[T]], args: argparse.Namespace) -> T:
    async def go() -> T:
        async with _client(args) as client:
            return await factory(client)

    return asyncio.run(go())


class OutputError(ClientError):
    """stdout cannot be written (a full disk, /dev/full); a closed pipe stays a BrokenPipeError."""


def _out(text: str = "") -> None:
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise OutputError(f"cannot write output: {exc.strerror or exc}") from None


def discard_stdout() -> None:
    """Point stdout at /dev/null, so what is still buffered does not fail again at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _store() -> Store:
    return Store()


def _platform(args: argparse.Namespace) -> Platform | None:
    text = getattr(args, "platform", None)
    if text and getattr(args, "all_platforms", False):
        raise UsageError("--platform and --all-platforms contradict each other: pass one")
    return Platform.parse(text) if text else None


# Handlers ----------------------------------------------------------------------------------

def cmd_login(args: argparse.Namespace) -> int:
    """``berth login HOST``."""
    host = _host(args.host)
    username = args.username
    if args.password_stdin:
        if args.password:
            raise UsageError("--password and --password-stdin are mutually exclusive")
        if not username:
            raise UsageError("--password-stdin requires --username")
        password = sys.stdin.read().rstrip("\r\n")
    else:
        password = args.password or ""
    if not username:
        if not sys.stdin.isatty():
            raise UsageError("no username given: pass -u USER (and -p PASS or --password-stdin)")
        username = input("Username: ").strip()
    if not password:
        if not sys.stdin.isatty():
            raise UsageError("no password given: pass -p PASS or --password-stdin")
        password = getpass.getpass("Password: ")
    elif args.password:
        _err("WARNING! Using --password via the CLI is insecure. Use --password-stdin.")
    config = DockerConfig()
    api_host = DOCKER_HUB_API if host == DOCKER_HUB else host

    stored = _run(lambda c: c.login(api_host, Credential(username, password)), args)
    config.store(host, stored)
    _out("Login Succeeded")
    return EXIT_OK


def cmd_logout(args: argparse.Namespace) -> int:
    """``berth logout HOST``."""
    host = _host(args.host)
    if DockerConfig().erase(host):
        _out(f"Removing login credentials for {host}")
    else:
        _out(f"Not logged in to {host}")
    return EXIT_OK


def cmd_pull(args: argparse.Namespace) -> int:
    """``berth pull REF``."""
    ref = _ref(args.ref)
    store = _store()
    reporter = make_reporter(args.quiet)
    try:
        result = _run(lambda c: pull_image(c, store, ref, platform=_platform(args), all_platforms=args.all_platforms,
                                              concurrency=args.concurrency, reporter=reporter), args)
    finally:
        reporter.close()
    if not args.quiet:
        _out(f"Digest: {result.descriptor.digest}")
        status = "Downloaded newer image for" if result.changed else "Image is up to date for"
        _out(f"Status: {status} {ref.familiar()}")
    _out(local_name(ref))
    return EXIT_OK


def cmd_push(args: argparse.Namespace) -> int:
    """``berth push REF``."""
    ref = _ref(args.ref)
    store = _store()
    image = store.get(args.ref)
    reporter = make_reporter(args.quiet)
    try:
        result = _run(lambda c: push_image(c, store, image, ref, concurrency=args.concurrency,
                                              chunk_size=args.chunk_size, reporter=reporter), args)
    finally:
        reporter.close()
    _out(f"{ref.tag or 'latest'}: digest: {result.digest} size: {result.size}")
    return EXIT_OK


def cmd_tag(args: argparse.Namespace) -> int:
    """``berth tag SRC DST``."""
    store = _store()
    image = store.get(args.source)
    dst = _ref(args.target)
    if dst.digest is not None:
        raise UsageError("a tag target cannot contain a digest")
    store.add_image(local_name(dst), image.descriptor)
    return EXIT_OK


def cmd_images(args: argparse.Namespace) -> int:
    """``berth images``."""
    store = _store()
    images = store.images()
    if args.repository:
        want = _repo(args.repository)
        images = [i for i in images if i.reference is not None and i.reference.registry == want.registry
                  and i.reference.repository == want.repository]
    rows = []
    for image in images:
        summary = store.summary(image)
        ref = image.reference
        if ref is None:
            repo, tag = "<none>", "<none>"
        else:
            familiar = Reference(ref.registry, ref.repository, None, None).familiar()
            repo, tag = familiar, ref.tag if ref.tag and ref.digest is None else "<none>"
        rows.append((repo, tag, str(image.digest), summary.image_id.hex[:12], humanize_age(summary.created),
                     humanize_size(summary.size), summary.created))
    rows.sort(key=lambda r: (r[6], r[0], r[1]), reverse=True)
    if args.quiet:
        seen = set()
        for r in rows:
            if r[3] not in seen:
                seen.add(r[3])
                _out(r[3])
        return EXIT_OK
    headers = ["REPOSITORY", "TAG"] + (["DIGEST"] if args.digests else []) + ["IMAGE ID", "CREATED", "SIZE"]
    table = [[r[0], r[1]] + ([r[2]] if args.digests else []) + [r[3], r[4], r[5]] for r in rows]
    widths = [max([len(h)] + [len(row[i]) for row in table]) for i, h in enumerate(headers)]
    _out("   ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
    for row in table:
        _out("   ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return EXIT_OK


def cmd_rmi(args: argparse.Namespace) -> int:
    """``berth rmi REF…``."""
    store = _store()
    doomed: list[Image] = []
    for word in args.refs:
        hits = store.find(word)
        if not hits:
            raise NotFound(f"no such image: {word}")
        try:
            ref = parse_reference(word)
            by_name = [h for h in hits if h.name == local_name(ref)]
        except InvalidReference:
            by_name = []
        if by_name:
            doomed.extend(by_name)
            continue
        names = {h.name for h in hits}
        if len(names) > 1 and not args.force:
            raise UsageError(f"image {word} is referenced by {len(names)} names; remove them by name or pass --force")
        doomed.extend(hits)
    store.remove_images(doomed)
    for image in doomed:
        ref = image.reference
        if ref is not None:
            _out(f"Untagged: {ref.familiar()}")
    removed, freed = store.gc()
    remaining = {i.digest for i in store.images()}
    for image in doomed:
        if image.digest not in remaining:
            _out(f"Deleted: {image.digest}")
            remaining.add(image.digest)
    if removed:
        _out(f"Freed {humanize_size(freed)} ({removed} blobs)")
    return EXIT_OK


def cmd_save(args: argparse.Namespace) -> int:
    """``berth save -o FILE REF…``."""
    store = _store()
    items: list[archive.SaveItem] = []
    for word in args.refs:
        image = store.get(word)
        try:
            ref = parse_reference(word)
            names = [ref] if image.name == local_name(ref) else []
        except InvalidReference:
            names = []
        if not names and image.reference is not None and not any(c in word for c in "/:") and len(word) < 12:
            names = [image.reference]
        merged = next((i for i in items if i.image.digest == image.digest), None)
        if merged is not None:
            merged.names.extend(n for n in names if n not in merged.names)
        else:
            items.append(archive.SaveItem(image, names))
    if args.output == "-":
        if sys.stdout.isatty():
            raise UsageError("refusing to write an archive to a terminal; use -o FILE or redirect stdout")
        try:
            with store.adding_lock():
                archive.save(store, items, sys.stdout.buffer, compress=args.gzip)
                sys.stdout.buffer.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OutputError(f"cannot write the archive to stdout: {exc.strerror or exc}") from None
        return EXIT_OK
    target = os.path.abspath(args.output)
    tmp = f"{target}.tmp-{os.getpid()}"
    try:
        with store.adding_lock(), open(tmp, "wb") as f:
            archive.save(store, items, f, compress=args.gzip)
        os.replace(tmp, target)
    except OSError as exc:
        raise ClientError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return EXIT_OK


def cmd_load(args: argparse.Namespace) -> int:
    """``berth load -i FILE``."""
    store = _store()
    if args.input == "-":
        if sys.stdin.isatty():
            raise UsageError("refusing to read an archive from a terminal; use -i FILE or redirect stdin")
        result = archive.load(store, sys.stdin.buffer)
    else:
        try:
            f = open(args.input, "rb")
        except OSError as exc:
            raise ClientError(f"cannot read {args.input}: {exc.strerror or exc}") from None
        with f:
            result = archive.load(store, f)
    if not args.quiet:
        for line in archive.iter_names(result):
            _out(line)
    return EXIT_OK


def cmd_inspect(args: argparse.Namespace) -> int:
    """``berth inspect REF``."""
    ref = _ref(args.ref)
    if args.raw:
        result = _run(lambda c: c.get_manifest(ref), args)
        try:
            sys.stdout.buffer.write(result.data)
            sys.stdout.buffer.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OutputError(f"cannot write output: {exc.strerror or exc}") from None
        return EXIT_OK
    doc = _run(lambda c: remote.inspect(c, ref, platform=_platform(args)), args)
    _out(json.dumps(doc, indent=2))
    return EXIT_OK


def cmd_tags(args: argparse.Namespace) -> int:
    """``berth tags REPO``."""
    repo = _repo(args.repository)
    for tag in _run(lambda c: remote.tags(c, repo.api_host, repo.repository), args):
        _out(tag)
    return EXIT_OK


def cmd_copy(args: argparse.Namespace) -> int:
    """``berth copy SRC DST``."""
    src, dst = _ref(args.source), _ref(args.target)
    reporter = make_reporter(args.quiet)
    try:
        result = _run(lambda c: remote.copy(c, src, dst, all_platforms=args.all_platforms, platform=_platform(args),
                                            concurrency=args.concurrency, chunk_size=args.chunk_size, reporter=reporter), args)
    finally:
        reporter.close()
    _out(f"Copied {src.familiar()} to {dst.familiar()}: digest: {result.digest}")
    return EXIT_OK


def cmd_delete(args: argparse.Namespace) -> int:
    """``berth delete REF``."""
    ref = _ref(args.ref)
    gone = _run(lambda c: remote.delete(c, ref), args)
    if isinstance(gone, str):
        _out(f"Deleted tag: {ref.familiar()}")
    else:
        _out(f"Deleted: {gone}")
    return EXIT_OK


# Parser ------------------------------------------------------------------------------------

def _network(p: argparse.ArgumentParser) -> None:
    p.add_argument("--insecure", action="store_true", help="allow plain HTTP and unverified TLS for this registry")
    p.add_argument("--ca-file", metavar="FILE", help="extra CA certificates (PEM) to trust")


def _size(text: str) -> int:
    units = {"k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}
    t = text.strip().lower().rstrip("ib").rstrip("b")
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}") from None


def _wrap(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except ClientError as exc:
            if isinstance(exc, OutputError):
                discard_stdout()
            _err(f"berth: {exc}")
            return exc.exit_code
        except KeyboardInterrupt:
            _err("berth: interrupted")
            return EXIT_INTERRUPTED
        except EOFError:  # Ctrl-D at a prompt
            _err("\nberth: cancelled (end of input)")
            return EXIT_INTERRUPTED
        except BrokenPipeError:  # the reader went away (``berth images | head -1``): stop quietly
            discard_stdout()
            return EXIT_ERROR
        except Exception as exc:  # noqa: BLE001 - the CLI promises one line, not a traceback
            if os.environ.get("BERTH_DEBUG"):
                traceback.print_exc()
            _err(f"berth: internal error: {exc.__class__.__name__}: {exc} (set BERTH_DEBUG=1 for details)")
            return EXIT_ERROR

    run.__doc__ = handler.__doc__
    return run


def add_client_commands(subparsers: Any) -> None:
    """Add the client verbs to an argparse subparsers object; each sets ``client_func`` (returns an exit code)."""
    p = subparsers.add_parser("login", help="log in to a registry (stores credentials in ~/.docker/config.json)")
    p.add_argument("host")
    p.add_argument("-u", "--username")
    p.add_argument("-p", "--password")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    _network(p)
    p.set_defaults(client_func=_wrap(cmd_login))

    p = subparsers.add_parser("logout", help="forget a registry's credentials")
    p.add_argument("host")
    p.set_defaults(client_func=_wrap(cmd_logout))

    p = subparsers.add_parser("pull", help="pull an image into the local store")
    p.add_argument("ref")
    p.add_argument("--platform", help="os/arch[/variant] to pick from an index (default: this machine's)")
    p.add_argument("--all-platforms", action="store_true", help="keep the whole index with every platform")
    p.add_argument("-j", "--concurrency", type=int, default=DEFAULT_PULL_CONCURRENCY, help="parallel downloads")
    p.add_argument("-q", "--quiet", action="store_true")
    _network(p)
    p.set_defaults(client_func=_wrap(cmd_pull))

    p = subparsers.add_parser("push", help="push an image from the local store")
    p.add_argument("ref")
    p.add_argument("-j", "--concurrency", type=int, default=DEFAULT_PUSH_CONCURRENCY, help="parallel uploads")
    p.add_argument("--chunk-size", type=_size, default=DEFAULT_CHUNK_SIZE,
                   help="upload blobs larger than this in chunks of this size (default 64M)")
    p.add_argument("-q", "--quiet", action="store_true")
    _network(p)
    p.set_defaults(client_func=_wrap(cmd_push))

    p = subparsers.add_parser("tag", help="give a local image another name")
    p.add_argument("source")
    p.add_argument("target")
    p.set_defaults(client_func=_wrap(cmd_tag))

    p = subparsers.add_parser("images", help="list local images")
    p.add_argument("repository", nargs="?")
    p.add_argument("-q", "--quiet", action="store_true", help="only image IDs")
    p.add_argument("--digests", action="store_true", help="show manifest digests")
    p.set_defaults(client_func=_wrap(cmd_images))

    p = subparsers.add_parser("rmi", help="remove local images and free their blobs")
    p.add_argument("refs", nargs="+")
    p.add_argument("-f", "--force", action="store_true", help="remove every name of an image ID")
    p.set_defaults(client_func=_wrap(cmd_rmi))

    p = subparsers.add_parser("save", help="write images to a tar archive (docker/podman/skopeo compatible)")
    p.add_argument("refs", nargs="+")
    p.add_argument("-o", "--output", required=True, help="archive file, or - for stdout")
    p.add_argument("--gzip", action="store_true", help="compress the archive with gzip")
    p.set_defaults(client_func=_wrap(cmd_save))

    p = subparsers.add_parser("load", help="read images from a tar archive (docker, podman, skopeo, crane)")
    p.add_argument("-i", "--input", required=True, help="archive file, or - for stdin")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(client_func=_wrap(cmd_load))

    p = subparsers.add_parser("inspect", help="describe a remote image (manifest, config, platforms, sizes)")
    p.add_argument("ref")
    p.add_argument("--platform", help="describe this platform's image of an index")
    p.add_argument("--raw", action="store_true", help="print the manifest bytes as served")
    _network(p)
    p.set_defaults(client_func=_wrap(cmd_inspect))

    p = subparsers.add_parser("tags", help="list a remote repository's tags")
    p.add_argument("repository")
    _network(p)
    p.set_defaults(client_func=_wrap(cmd_tags))

    p = subparsers.add_parser("copy", help="copy an image between registries without the local store")
    p.add_argument("source")
    p.add_argument("target")
    p.add_argument("--all-platforms", action="store_true", help="copy a whole index")
    p.add_argument("--platform", help="platform to pick from an index (default: this machine's)")
    p.add_argument("-j", "--concurrency", type=int, default=DEFAULT_PUSH_CONCURRENCY)
    p.add_argument("--chunk-size", type=_size, default=DEFAULT_CHUNK_SIZE)
    p.add_argument("-q", "--quiet", action="store_true")
    _network(p)
    p.set_defaults(client_func=_wrap(cmd_copy))

    p = subparsers.add_parser("delete", help="delete a remote tag or manifest")
    p.add_argument("ref")
    _network(p)
    p.set_defaults(client_func=_wrap(cmd_delete))


def build_parser() -> argparse.ArgumentParser:
    """A parser with just the client verbs (``python -m registry.client.cli``)."""
    parser = argparse.ArgumentParser(prog="berth", description="Berth image client: docker's image verbs without an engine")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_client_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one client verb; returns its exit code."""
    args = build_parser().parse_args(argv)
    return int(args.client_func(args))


if __name__ == "__main__":
    sys.exit(main())
