"""The openai client the runner streams the model with, and, in the embedded default, the Unix
socket it reaches the built-in offline model by.

With no endpoint configured, runwatch is its own model server: the runner reads the offline model
from the same process. Over loopback TCP, every chunk paid the kernel's whole TCP path twice in
that one process (the model's ``write``: segment, loopback, receive; the runner's ``read``); a
Unix socket hands the bytes over directly. The offline model's CPU per chunk drops by a quarter to
a third at 100 and 300 streams x 50 tok/s, and by 3-25% at 10 x 100, where each write may wake an
idle reader (bench/HISTORY.md, "Third session").

``model_socket`` (``RUNWATCH_MODEL_SOCKET``): ``auto`` (default) listens, with the offline model,
on a socket in a private temporary folder; ``off`` keeps to TCP; an absolute path listens there (a
benchmark or another process of the same user may then connect to it too). What this process made
is removed when it stops, after a failed start too (not after a kill). The HTTP API on the TCP port
is unchanged; the socket serves the same app.

The runner's client to its own offline model (socket or TCP) sends the runtime's ``model_key``
(``/v1`` needs a principal), lets an idle connection go well before the server would close it
(``OFFLINE_KEEPALIVE_SECONDS``), and retries a request that could not be sent, as it does a real
endpoint's: a Unix socket whose accept queue is full refuses a connect at once (``EAGAIN``) where
TCP would retry the handshake itself.
"""

from __future__ import annotations

import errno
import importlib
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import structlog
from openai import DEFAULT_CONNECTION_LIMITS, AsyncOpenAI, DefaultAioHttpClient, DefaultAsyncHttpxClient

from runwatch.api.settings.config import MAX_SOCKET_PATH, ConfigError, Settings

log = structlog.get_logger()

#: The runner lets a connection to its own offline model go after this long idle, well before
#: uvicorn closes it (5 s after its last response: its ``timeout_keep_alive``). At 5 s on both
#: ends, a request written as the server's keep-alive timer fired (a busy event loop runs timers
#: before reads) met a closed socket: "Connection reset by peer", which the SDK's aiohttp transport
#: reports as "Request timed out". Of 200 runs started at once, reusing the connections of the 200
#: before them, 11 and then 93 failed so, within milliseconds.
OFFLINE_KEEPALIVE_SECONDS = 2.0
#: Tries after the first of a model request that fails before its response starts (the SDK's
#: backoff: about 0.5 s, then 1 s). A local model too: its socket's queue may be full for a moment.
MODEL_RETRIES = 2


def _use_aiohttp(settings: Settings) -> bool:
    """The aiohttp transport unless httpx is asked for, or the endpoint's URL carries credentials:
    aiohttp refuses a request with both those and the SDK's ``Authorization`` header."""
    return settings.model.transport == "aiohttp" and urlsplit(settings.model_base_url).username is None


class ModelSocket:
    """Where this process's offline model listens for its own runner: a path, made (``auto``, in a
    private folder) or given. ``bind`` makes the listening socket; ``remove`` takes away what this
    process made, and only that: not a socket another process has bound at the path since."""

    def __init__(self, path: Path, folder: Path | None) -> None:
        self.path = path
        self._folder = folder
        #: (device, inode) of the socket file ``bind`` made, to tell it from a successor's.
        self._bound: tuple[int, int] | None = None

    @classmethod
    def for_settings(cls, settings: Settings) -> ModelSocket | None:
        """The socket the settings ask for, or None (a configured endpoint, ``off``, no AF_UNIX, or
        no private folder to be had: then the runner reads the model over TCP, as logged)."""
        if not settings.model.offline and settings.offline_model.socket not in ("auto", "off"):
            log.warning("model_socket.ignored", reason="a model endpoint is configured: there is no offline model")
        if not settings.model.offline or settings.offline_model.socket == "off" or not hasattr(socket, "AF_UNIX"):
            return None
        if settings.offline_model.socket != "auto":
            path = Path(settings.offline_model.socket)
            if path.exists() and not path.is_socket():
                raise ConfigError(f"model_socket {path} exists and is not a socket; check RUNWATCH_MODEL_SOCKET")
            if not path.parent.is_dir():
                raise ConfigError(
                    f"model_socket's folder {path.parent} does not exist; create it or check RUNWATCH_MODEL_SOCKET"
                )
            return cls(path, None)
        sweep_stale(Path(tempfile.gettempdir()))
        try:
            folder = Path(tempfile.mkdtemp(prefix="runwatch-"))  # 0700: this user's alone
        except OSError as exc:
            log.warning("model_socket.skipped", reason=str(exc), hint=_SKIPPED_HINT)
            return None
        path = folder / "model.sock"
        if len(os.fsencode(path)) > MAX_SOCKET_PATH:
            folder.rmdir()
            log.warning("model_socket.skipped", reason=f"{path} is too long for a socket", hint=_SKIPPED_HINT)
            return None
        return cls(path, folder)

    def bind(self, backlog: int) -> socket.socket:
        """A listening socket at ``path``, for this user alone. A socket file nobody listens on
        (left by a process that is gone) is replaced; one a process listens on is not
        (``OSError`` EADDRINUSE), nor one that cannot be probed."""
        path = self.path
        if path.exists():
            status = _connect_status(path)
            if status == 0 or status in (errno.EAGAIN, errno.EINPROGRESS):  # EAGAIN: its backlog is full
                raise OSError(errno.EADDRINUSE, f"another process listens on {path}")
            if status != errno.ECONNREFUSED:
                raise OSError(status, f"cannot tell whether another process listens on {path}: {os.strerror(status)}")
            path.unlink()
        sock = socket.socket(socket.AF_UNIX)
        try:
            sock.bind(str(path))
            path.chmod(0o600)
            sock.listen(backlog)
            made = path.stat()
        except OSError:
            sock.close()
            raise
        self._bound = (made.st_dev, made.st_ino)
        return sock

    def remove(self) -> None:
        """Remove the socket file this process bound (if it is still the one there) and the private
        folder it made; safe to call more than once, and after a start that failed."""
        if self._bound is not None:
            try:
                now = self.path.stat()
                if (now.st_dev, now.st_ino) == self._bound:
                    self.path.unlink()
            except FileNotFoundError:
                pass
            self._bound = None
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)


def _connect_status(path: Path) -> int:
    """What connecting to the Unix socket at ``path`` gives: 0 when a process listens there,
    ECONNREFUSED when nobody does (within a second)."""
    with socket.socket(socket.AF_UNIX) as probe:
        probe.settimeout(1.0)
        return probe.connect_ex(str(path))


def sweep_stale(tempdir: Path) -> int:
    """Remove the private folders (``runwatch-*``, this user's, holding only ``model.sock``) that
    processes killed before their shutdown left; a folder whose socket still answers, or refuses
    for any reason but "nobody listens", or was made in the last minute, is kept. Returns how many
    went."""
    swept = 0
    uid = os.getuid()
    for folder in tempdir.glob("runwatch-*"):
        try:
            sock = folder / "model.sock"
            if folder.is_symlink() or folder.stat().st_uid != uid or [p.name for p in folder.iterdir()] != [sock.name]:
                continue
            if sock.lstat().st_mtime > time.time() - 60:  # perhaps bound a moment ago, not yet listening
                continue
            if _connect_status(sock) != errno.ECONNREFUSED:
                continue
            shutil.rmtree(folder)
            swept += 1
        except OSError:  # gone meanwhile, or not ours to read
            continue
    if swept:
        log.info("model_socket.swept", folders=swept, reason="left by processes killed before their shutdown")
    return swept


_SKIPPED_HINT = "runs read the offline model over TCP; set RUNWATCH_MODEL_SOCKET to an absolute path to use a socket"


def model_client(settings: Settings, socket: ModelSocket | None, key: str | None = None) -> AsyncOpenAI:
    """The SDK's client on the configured transport; over ``socket`` when there is one (the URL,
    and so the ``Host`` header, stay the TCP port's). ``key``: the offline model's ``model_key``."""
    aiohttp = _use_aiohttp(settings)
    limits = DEFAULT_CONNECTION_LIMITS
    if settings.model.offline:  # both ends are ours: the client lets idle connections go first
        limits = type(limits)(
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=OFFLINE_KEEPALIVE_SECONDS,
        )
    http_client: Any = None
    if socket is None:
        http_client = DefaultAioHttpClient(limits=limits) if aiohttp else DefaultAsyncHttpxClient(limits=limits)
    else:
        path = str(socket.path)
        transport = _aiohttp_uds(path, limits) if aiohttp else None
        if transport is not None:
            http_client = DefaultAioHttpClient(transport=transport)
        else:
            # the httpx the SDK is built on: httpx2 since openai 3, httpx before
            sdk_httpx = importlib.import_module(DefaultAsyncHttpxClient.__mro__[1].__module__.partition(".")[0])
            transport = sdk_httpx.AsyncHTTPTransport(uds=path, limits=limits)
            http_client = DefaultAsyncHttpxClient(transport=transport)
    return AsyncOpenAI(
        base_url=settings.model_base_url,
        api_key=settings.model.openai_api_key or key or "offline",
        max_retries=MODEL_RETRIES,
        http_client=http_client,
    )


def _aiohttp_uds(path: str, limits: Any) -> Any | None:
    """The SDK's aiohttp transport to the socket at ``path``; it is not exported, so None (and a
    warning: httpx costs more per chunk) if this SDK has none."""
    try:
        from openai._vendor.httpx_aiohttp.transport import AiohttpTransport
    except ImportError:
        log.warning("model_socket.httpx", reason="this openai SDK has no aiohttp transport to a socket")
        return None
    return AiohttpTransport(uds=path, limits=limits)
