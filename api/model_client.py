"""The openai client the runner streams the model with, and, in the embedded default, the Unix
socket it reaches the built-in offline model by.

With no endpoint configured, runwatch is its own model server: the runner reads the offline model
from the same process. Over loopback TCP, every chunk paid the kernel's whole TCP path twice in
that one process (the model's ``write``: segment, loopback, receive; the runner's ``read``); a
Unix socket hands the bytes over directly. The offline model's CPU per chunk at 10 streams x 100
tok/s drops by about a quarter (bench/README.md, "The offline model over a Unix socket").

``model_socket`` (``RUNWATCH_MODEL_SOCKET``): ``auto`` (default) listens, with the offline model,
on a socket in a private temporary folder, removed at shutdown; ``off`` keeps to TCP; an absolute
path listens there (a benchmark or a tool may then connect to it too). The HTTP API on the TCP
port is unchanged; the socket serves the same app.
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from openai import DEFAULT_CONNECTION_LIMITS, AsyncOpenAI, DefaultAioHttpClient, DefaultAsyncHttpxClient

from runwatch.api.config import ConfigError, Settings

#: ``sun_path`` holds 108 bytes on Linux (104 on macOS) with its terminating NUL: keep under both.
MAX_SOCKET_PATH = 100


def _use_aiohttp(settings: Settings) -> bool:
    """The aiohttp transport unless httpx is asked for, or the endpoint's URL carries credentials:
    aiohttp refuses a request with both those and the SDK's ``Authorization`` header."""
    return settings.model_transport == "aiohttp" and urlsplit(settings.model_base_url).username is None


class ModelSocket:
    """Where this process's offline model listens for its own runner: a path, made (``auto``) or
    given, that ``remove`` takes away again (and, for ``auto``, its private folder)."""

    def __init__(self, path: Path, folder: Path | None) -> None:
        self.path = path
        self._folder = folder

    @classmethod
    def for_settings(cls, settings: Settings) -> ModelSocket | None:
        """The socket the settings ask for, or None (a configured endpoint, ``off``, no AF_UNIX)."""
        if not settings.offline or settings.model_socket == "off" or not hasattr(os, "fchmod"):
            return None
        if settings.model_socket != "auto":
            path = Path(settings.model_socket)
            if path.exists() and not path.is_socket():
                raise ConfigError(f"model_socket {path} exists and is not a socket; check RUNWATCH_MODEL_SOCKET")
            return cls(path, None)
        folder = Path(tempfile.mkdtemp(prefix="runwatch-"))  # 0700: this user's alone
        path = folder / "model.sock"
        if len(os.fsencode(path)) > MAX_SOCKET_PATH:  # a long TMPDIR: keep to TCP
            folder.rmdir()
            return None
        return cls(path, folder)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)


def model_client(settings: Settings, socket: ModelSocket | None) -> AsyncOpenAI:
    """The SDK's client on the configured transport; over ``socket`` when there is one (the URL,
    and so the ``Host`` header, stay the TCP port's)."""
    http_client: Any = None
    if socket is not None:
        path = str(socket.path)
        try:  # the SDK's aiohttp transport takes a socket path, but is not exported
            from openai._vendor.httpx_aiohttp.transport import AiohttpTransport
        except ImportError:
            AiohttpTransport = None
        if _use_aiohttp(settings) and AiohttpTransport is not None:
            http_client = DefaultAioHttpClient(transport=AiohttpTransport(uds=path, limits=DEFAULT_CONNECTION_LIMITS))
        else:
            # the httpx the SDK is built on: httpx2 since openai 3, httpx before
            sdk_httpx = importlib.import_module(DefaultAsyncHttpxClient.__mro__[1].__module__.partition(".")[0])
            transport = sdk_httpx.AsyncHTTPTransport(uds=path, limits=DEFAULT_CONNECTION_LIMITS)
            http_client = DefaultAsyncHttpxClient(transport=transport)
    elif _use_aiohttp(settings):
        http_client = DefaultAioHttpClient()
    return AsyncOpenAI(
        base_url=settings.model_base_url,
        api_key=settings.openai_api_key or "offline",
        max_retries=0 if settings.offline else 2,
        http_client=http_client,
    )
