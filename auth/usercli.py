"""``berth user add|passwd|remove NAME``: edit a bcrypt htpasswd file without apache2-utils.

The file is ``--file`` or the one the config names (``auth.htpasswd.path``, else
``auth.token.htpasswd``; ``--config`` or the zero-config defaults). Passwords come from a
prompt (typed twice) or, with ``--password-stdin``, the first line of stdin; they never appear
on the command line. Writes are atomic (:func:`auth.htpasswd.edit_htpasswd`); a running server
picks the change up within a second. Exit codes: 0 done, 1 refused (user exists/missing,
unreadable file), 2 usage or config error.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from auth.htpasswd import DEFAULT_WRITE_COST, HtpasswdEditError, check_username, edit_htpasswd, hash_password
from registry.config import ConfigError, add_config_arguments, command_config


class _Refused(Exception):
    """One line for stderr and an exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def htpasswd_path(args: argparse.Namespace) -> tuple[str, bool]:
    """(the file to edit, whether the config uses it for logins)."""
    config = command_config(args)
    configured = (config.auth.htpasswd.path if config.auth.htpasswd is not None
                  else (config.auth.token.htpasswd if config.auth.token is not None else "")) or ""
    if args.file:
        return args.file, bool(configured) and configured == args.file
    if not configured:
        raise _Refused("no htpasswd file: pass --file FILE, or --config with auth.htpasswd.path set", 2)
    return configured, True


def read_password(args: argparse.Namespace) -> str:
    """The new password: stdin's first line with ``--password-stdin``, else a prompt typed twice."""
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        if not sys.stdin.isatty():
            raise _Refused("no terminal to prompt on: pass --password-stdin", 2)
        password = getpass.getpass(f"New password for {args.name}: ")
        if getpass.getpass("Repeat it: ") != password:
            raise _Refused("the passwords differ; nothing changed")
    if not password:
        raise _Refused("empty password; nothing changed", 2)
    return password


def _run(args: argparse.Namespace) -> int:
    path = args.file or ""
    try:
        check_username(args.name)
        path, used = htpasswd_path(args)
        action = args.user_command
        hashed = None if action == "remove" else hash_password(read_password(args), args.cost)
        edit_htpasswd(path, args.name, hashed, exists=action != "add")
    except (_Refused, HtpasswdEditError) as exc:
        print(f"berth user {args.user_command}: {exc}", file=sys.stderr)
        return getattr(exc, "code", 1)
    except ConfigError as exc:
        print(f"berth: configuration error: {exc}", file=sys.stderr)
        return 2
    except (EOFError, KeyboardInterrupt):
        print(f"\nberth user {args.user_command}: cancelled; nothing changed", file=sys.stderr)
        return 130
    except OSError as exc:
        print(f"berth user {args.user_command}: cannot write {exc.filename or path}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    done = {"add": "added user", "passwd": "changed the password of", "remove": "removed user"}[action]
    print(f"{done} {args.name} in {path}")
    if not used and action == "add":
        print(f"to require logins, set auth.htpasswd.path: {path} (and a realm) in the config; see docs/auth.md")
    return 0


def add_commands(sub: Any) -> None:
    """Add ``user add|passwd|remove`` to the ``berth`` command's sub-parsers."""
    user = sub.add_parser("user", help="add, change or remove htpasswd users (bcrypt)")
    actions = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    for name, text in (("add", "add a user (prompts for the password)"),
                       ("passwd", "change a user's password"),
                       ("remove", "remove a user")):
        p = actions.add_parser(name, help=text)
        p.add_argument("name", metavar="NAME")
        p.add_argument("--file", "-f", metavar="FILE",
                       help="the htpasswd file (default: the config's auth.htpasswd.path)")
        add_config_arguments(p)
        if name != "remove":
            p.add_argument("--password-stdin", action="store_true", help="read the password from stdin's first line")
            p.add_argument("--cost", type=int, default=DEFAULT_WRITE_COST,
                           help=f"bcrypt cost (default {DEFAULT_WRITE_COST})")
        else:
            p.set_defaults(password_stdin=False, cost=DEFAULT_WRITE_COST)
        p.set_defaults(func=_run)
