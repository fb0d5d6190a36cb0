"""What an operator typed, checked before anything starts: each mistake is one line and exit 2.

The argparse ``type=`` functions here (ports, hosts, URLs, finite numbers,
labels, names) raise ``argparse.ArgumentTypeError``, which argparse reports
with the flag's name. The checks that need the file system or the network (a
directory that can be written, an address that can be listened on, a URL
that answers, a tool on PATH) raise ``UsageError`` with a message naming the
flag. ``deploy.cli`` prints either as one line and exits 2; nothing here
starts a server or writes anything but the directories it is asked to create.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import math
import os
import re
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from deploy.stack_fields import unprintable, url_problem, user_name_problem

# A DNS name (RFC 1123): what a --host or a Kubernetes node name may be when not an IP.
_HOSTNAME = re.compile(r"(?=.{1,253}\Z)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+")
_NODE = re.compile(r"(?=.{1,253}\Z)[a-z0-9]([a-z0-9.-]*[a-z0-9])?")
# Prometheus label names; "__" is reserved for Prometheus' own.
_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class UsageError(Exception):
    """A mistake of the user's; the message names the flag and what is wrong with it."""


# ----------------------------------------------------------------------------- argparse types


def port(text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,5}", text.strip()) or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"a port is a number from 1 to 65535, not {text!r}")
    return int(text)


def host(text: str) -> str:
    """An IPv4 or IPv6 address or a DNS name (whether it is this machine's is checked later)."""
    if re.fullmatch(r"[0-9.]+", text) or ":" in text:
        try:
            return str(ipaddress.ip_address(text))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an IP address") from None
    if not _HOSTNAME.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is neither an IP address nor a host name")
    return text


def _refusing(problem_of: Callable[[str], str | None]) -> Callable[[str], str]:
    """An argparse type refusing a value ``problem_of`` finds a problem with (the stack's
    own checks, so a flag and the stack file take the same values)."""

    def parse(text: str) -> str:
        problem = problem_of(text)
        if problem is not None:
            raise argparse.ArgumentTypeError(f"{text!r}: {problem}")
        return text

    return parse


http_url = _refusing(url_problem)
user_name = _refusing(user_name_problem)


def finite(low: float, high: float) -> Callable[[str], float]:
    """A number in (low, high]: finite, so nan and inf never reach a loop or a sleep."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or not low < value <= high:
            raise argparse.ArgumentTypeError(f"must be > {low:g} and <= {high:g}, not {text!r}")
        return value

    return parse


def label(text: str) -> tuple[str, str]:
    """``KEY=VALUE``: a Prometheus label added to every series."""
    key, sep, value = text.partition("=")
    if not sep or not _LABEL.fullmatch(key) or key.startswith("__"):
        raise argparse.ArgumentTypeError(
            f"wants KEY=VALUE with KEY a label name ([A-Za-z_][A-Za-z0-9_]*, "
            f"not starting with __), not {text!r}"
        )
    if unprintable(value) is not None:
        raise argparse.ArgumentTypeError(f"the value of {key} must be printable on one line")
    return key, value


def node_name(text: str) -> str:
    if not _NODE.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a node name (lower-case letters, digits, '-' and '.')"
        )
    return text


def printable(text: str) -> str:
    if not text or unprintable(text) is not None:
        raise argparse.ArgumentTypeError(f"must be non-empty printable text, not {text!r}")
    return text


# ----------------------------------------------------------------------------- checks


def writable_dir(path: Path, flag: str) -> Path:
    """``path`` as a directory this process can write, created (with parents) if missing."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {path}: exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"{flag} {path}: cannot create it: {e.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path}: not writable by this user")
    return path


def readable_file(path: Path, flag: str) -> Path:
    try:
        with path.open("rb"):
            pass
    except IsADirectoryError:
        raise UsageError(f"{flag} {path}: is a directory, not a file") from None
    except OSError as e:
        raise UsageError(f"{flag} {path}: cannot read it: {e.strerror}") from None
    return path


def check_listen(host: str, port: int) -> None:
    """Fail now, with the reason, if a server could not listen on ``host:port``.

    Binds (as the servers do, with SO_REUSEADDR) and lets go at once; the
    server binds again a moment later.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise UsageError(f"--host {host}: cannot resolve it: {e.strerror}") from None
    for family, kind, proto, _, addr in infos:
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(addr)
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    raise UsageError(f"--port {port}: already in use on {host}") from None
                if e.errno == errno.EADDRNOTAVAIL:
                    raise UsageError(f"--host {host}: not an address of this machine") from None
                raise UsageError(
                    f"--host {host} --port {port}: cannot listen: {e.strerror}"
                ) from None


def check_reachable(url: str, flag: str, timeout: float = 5.0) -> None:
    """Fail now if nothing accepts a connection at ``url``'s host and port."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise UsageError(f"{flag} {url}: cannot connect: {reason}") from None


def require_tools(*names: str, hint: str) -> None:
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        raise UsageError(f"{', '.join(missing)} not found on PATH: {hint}")
