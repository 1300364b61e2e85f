"""``python -m worker.flower_launcher``: Flower, reachable from other hosts only behind a login.

Flower shows every task's arguments (whole event envelopes) and can revoke tasks, and by default
it listens on every interface without a login. This launcher binds it to 127.0.0.1 unless a
login is configured (``FLOWER_BASIC_AUTH``, or Flower's OAuth: ``FLOWER_AUTH`` with
``FLOWER_OAUTH2_KEY`` and ``FLOWER_OAUTH2_SECRET``, or the same as options), and refuses to
start on any other address without one. Other options are passed to Flower unchanged.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from collections.abc import Mapping, Sequence

LOOPBACK = "127.0.0.1"
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - only with a login, which is the point of this module
EXIT_REFUSED = 2


class Refused(Exception):
    """Flower would be reachable from other hosts without a login."""


def _option(args: Sequence[str], *names: str) -> str | None:
    """The value of ``--name value`` or ``--name=value`` (the last one given), if any."""
    found: str | None = None
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                found = args[i + 1]
            elif arg.startswith(name + "="):
                found = arg.partition("=")[2]
    return found


def login_configured(env: Mapping[str, str], args: Sequence[str]) -> bool:
    """Basic auth, or OAuth with its key and secret, from the environment or the options."""

    def given(var: str, *flags: str) -> bool:
        return bool(env.get(var) or _option(args, *flags))

    basic = given("FLOWER_BASIC_AUTH", "--basic-auth", "--basic_auth")
    oauth = (
        given("FLOWER_AUTH", "--auth")
        and given("FLOWER_OAUTH2_KEY", "--oauth2-key", "--oauth2_key")
        and given("FLOWER_OAUTH2_SECRET", "--oauth2-secret", "--oauth2_secret")
    )
    return basic or oauth


def _is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:  # a host name, or "" (every interface)
        return False


def choose_address(requested: str | None, *, login: bool) -> str:
    """Where Flower listens: as asked when that is safe, else loopback; raise when unsafe."""
    if requested is None:
        return ALL_INTERFACES if login else LOOPBACK
    if not login and not _is_loopback(requested):
        raise Refused(
            f"refusing to start Flower on {requested or 'every interface'!r} without a login: "
            "set FLOWER_BASIC_AUTH=user:password (or Flower's OAuth settings), "
            f"or listen on {LOOPBACK}"
        )
    return requested


def flower_command(argv: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """The ``celery flower`` command line for ``argv`` (raises ``Refused``)."""
    parser = argparse.ArgumentParser(prog="python -m worker.flower_launcher", add_help=True)
    parser.add_argument("--address")
    parser.add_argument("--port", default=env.get("PORT", "5555"))
    known, rest = parser.parse_known_args(list(argv))
    address = choose_address(known.address, login=login_configured(env, rest))
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker.celery_app:app",
        "flower",
        f"--address={address}",
        f"--port={known.port}",
        *rest,
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        cmd = flower_command(args, os.environ)
    except Refused as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_REFUSED
    address = cmd[6].partition("=")[2]
    if address == LOOPBACK and _option(args, "--address") is None:
        sys.stderr.write(
            f"flower: no login configured (FLOWER_BASIC_AUTH), listening on {LOOPBACK} only\n"
        )
    os.execv(cmd[0], cmd)  # noqa: S606 - our own interpreter; Flower takes this process's pid
    return 0  # pragma: no cover - execv does not return


if __name__ == "__main__":
    sys.exit(main())
