"""The machine's real PostgreSQL and Redis, one private database or key prefix per test; and a Redis
server of a test's own, for tests that must stop or restart it."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import redis
import redis.asyncio

from tests.conftest import free_port
from tests.harness.waiting import eventually as wait_until  # noqa: F401 (tests/contract/test_redis_bus.py's name for it)
from tests.harness.waiting import eventually_blocking

#: The machine's servers (the CI machine runs both on loopback); overridable for other setups.
POSTGRES = os.environ.get("RUNWATCH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
REDIS = os.environ.get("RUNWATCH_TEST_REDIS", "redis://127.0.0.1:6379/0")


@contextlib.asynccontextmanager
async def postgres_database(options: str = "") -> AsyncIterator[str]:
    """A new, empty database (``options``: more of CREATE DATABASE); dropped (connections and all)
    afterwards. Yields its URL."""
    name = f"runwatch_test_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(POSTGRES + "/postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}" {options}')
        yield f"{POSTGRES}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def new_prefix() -> str:
    return f"rwtest-{secrets.token_hex(5)}:"


def drop_prefix(url: str, prefix: str) -> int:
    """Delete every key under ``prefix``; returns how many there were."""
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
        return len(keys)
    finally:
        client.close()


async def keys_under(url: str, prefix: str) -> list[bytes]:
    client = redis.asyncio.Redis.from_url(url)
    try:
        return [k async for k in client.scan_iter(match=prefix + "*", count=1000)]
    finally:
        await client.aclose()


class OwnRedis:
    """A ``redis-server`` on a free port, with no persistence: stopping it loses everything, as a
    Redis without persistence does when it restarts."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> OwnRedis:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed (Debian package redis-server)"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=self.folder,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        eventually_blocking(self._answers, 10, "redis-server to answer", interval=0.02)
        return self

    def _answers(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port, socket_connect_timeout=0.2).ping())
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def own_redis(folder: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(folder).start()
    try:
        yield server
    finally:
        server.stop()
