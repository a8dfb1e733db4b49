"""The local admin key's files, and the proof a server gives that it holds that key.

``serve`` keeps its admin key in ``<data dir>/admin.key`` and leaves it for this user's client
commands in ``$XDG_DATA_HOME/runwatch/servers/PORT.key`` (both 0600). Either can outlive its server
(``kill -9``, a crash), and ``--url`` can name any port: a client command must not hand the key to
whatever listens there. So it sends a local key only to a server that proves it holds it:

* the client sends a fresh random ``nonce`` to ``GET /api/local-proof`` (open, it carries nothing
  secret) and the server answers ``HMAC-SHA256(its admin key, nonce + the address and port the
  request reached it on)``; the client computes the same with each key it found, and sends the
  one that matches — nothing before, and nothing if none does.

Why not a server id written beside the key and shown on ``/api/health``: what a server shows
anyone can be read by anyone while it runs and replayed, after it dies, by whatever takes its port.
An answer keyed by the secret to a nonce never seen before cannot be replayed or computed without
the key, and a program that asks learns nothing it can use: the nonce is random and the answer is
a MAC. Why the address and port: another server holding the same key (one started from the same
data folder on another port, or the real server on the same port at another loopback address,
127.0.0.1 beside [::1]) would otherwise answer for an impostor that relays it the nonce; it signs
where the request reached it, the client checks that is where it connected, and then keeps to that
address. A server behind a port mapping or a proxy therefore proves nothing: pass ``--token``.

A port's file also names the process that wrote it; a client removes a file whose server is gone
(it does not prove itself, and its process no longer runs), and ``serve`` removes its own at
shutdown.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from runwatch.api.auth.tokens import KEY_PREFIX

ADMIN_KEY_FILE = "admin.key"
#: Where a client asks a server to prove it holds its local admin key (open to anyone).
PROOF_PATH = "/api/local-proof"
#: A proof's nonce: 128 to 512 random bits, in hex.
NONCE = re.compile(r"[0-9a-f]{32,128}")
#: A port file is a few dozen bytes; anything longer is not one of ours.
MAX_FILE_BYTES = 4096


def admin_key_path(data_dir: Path) -> Path:
    return data_dir / ADMIN_KEY_FILE


def local_servers() -> Path:
    """Where ``serve`` tells this user's client commands which key a local port wants (as
    Jupyter's runtime folder does): ``$XDG_DATA_HOME/runwatch/servers`` (``~/.local/share/…``)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "runwatch" / "servers"


def port_path(port: int) -> Path:
    return local_servers() / f"{port}.key"


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (mode 0600) in one step: a reader sees the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def read_admin_key(data_dir: Path) -> str | None:
    """The local admin key, if this machine's data folder has one (and we may read it)."""
    try:
        key = admin_key_path(data_dir).read_text().strip()
    except OSError:
        return None
    return key if key.startswith(KEY_PREFIX) else None


@dataclass(frozen=True, slots=True)
class PortFile:
    """What ``serve`` left for a port: its admin key and the process that wrote it (None: unknown)."""

    path: Path
    key: str
    pid: int | None


def remember_local(port: int, key: str) -> None:
    """Leave the admin key where client commands of this user look for port ``port``; best effort."""
    with contextlib.suppress(OSError):
        write_private(port_path(port), json.dumps({"key": key, "pid": os.getpid()}) + "\n")


def read_port_file(port: int) -> PortFile | None:
    """The key a server on ``port`` left for this user: only from a regular file of this user's."""
    path = port_path(port)
    try:
        info = path.lstat()
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_size > MAX_FILE_BYTES:
            return None
        text = path.read_text().strip()
    except OSError:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        data = {"key": text}  # written by an earlier version: the key alone
    if not isinstance(data, dict):
        return None
    key, pid = data.get("key"), data.get("pid")
    if not isinstance(key, str) or not key.startswith(KEY_PREFIX):
        return None
    return PortFile(path, key, pid if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0 else None)


def forget_local(port: int, key: str) -> None:
    """At shutdown: take the key back, so that whatever listens on the port next does not get it."""
    found = read_port_file(port)
    if found is not None and found.key == key:
        with contextlib.suppress(OSError):
            found.path.unlink()


def remove_if_gone(port: int, found: PortFile) -> bool:
    """Remove ``found`` if the process that wrote it no longer runs and the file is still the same;
    True if it was removed. (A process we may not signal is alive; an unknown one is gone.)"""
    if found.pid is not None:
        try:
            os.kill(found.pid, 0)
            return False
        except PermissionError:
            return False
        except OSError:
            pass
    if read_port_file(port) != found:
        return False
    try:
        found.path.unlink()
    except OSError:
        return False
    return True


def canonical_address(host: str) -> str:
    """One spelling of an address: ``::ffff:127.0.0.1`` is ``127.0.0.1``, ``[::1]`` is ``::1``."""
    host = host.strip("[]").split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host.lower()
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.compressed


def proof(key: str, nonce: str, address: str, port: int) -> str:
    """What a server holding ``key`` answers to ``nonce`` when it was reached at ``address:port``."""
    message = f"runwatch local key proof\n{nonce}\n{canonical_address(address)}\n{port}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()
