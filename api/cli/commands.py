"""The ``runwatch`` command: ``serve`` the app, ``run`` an agent and follow it, list ``agents``."""

from __future__ import annotations

import argparse
import errno
import os
import signal
import socket
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from runwatch.api import __version__
from runwatch.api.cli.client import client_options, list_agents, run_agent
from runwatch.api.cli.keys import keys_parser
from runwatch.api.settings.config import ConfigError, Settings
from runwatch.api.settings.flags import ENVIRONMENT_HELP, add_setting_flags, settings_of

if TYPE_CHECKING:
    from runwatch.api.runtime import Runtime


def _serve_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="run the server (API, WebSocket, dashboard)",
        description="Run runwatch: REST + WebSocket + SSE API, the dashboard, and the offline model "
        "when no OpenAI endpoint is configured.",
        epilog=ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_setting_flags(p)
    p.set_defaults(func=serve)


def _listen_problem(host: str, port: int) -> str | None:
    """Why ``serve`` could not listen on ``host:port``, as one line that says what to do; None if it can."""
    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError):
        return f"{host!r} is not an address or a known host name; pass --host or set RUNWATCH_HOST"
    with socket.socket(family, kind) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"{host}:{port} is already in use; pass --port or set RUNWATCH_PORT"
            if exc.errno == errno.EADDRNOTAVAIL:
                return (
                    f"{host} is not an address of this machine; pass --host (127.0.0.1, or 0.0.0.0 for every "
                    "interface) or set RUNWATCH_HOST"
                )
            if exc.errno == errno.EACCES:
                return f"no permission to listen on port {port}; pass --port (1024 or above) or set RUNWATCH_PORT"
            return f"cannot listen on {host}:{port} ({exc.strerror}); pass --host and --port"
    return None


def _data_dir_problem(path: Path) -> str | None:
    """Why the data folder cannot hold the database, as one line that says what to do; None if it can."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)  # (a new one: this user's only)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        return (
            f"cannot use {str(path)!r} as the data folder ({exc.strerror or exc}); pass --data-dir or set "
            "RUNWATCH_DATA_DIR to a folder you can write"
        )
    return None


def _backends_problem(database_url: str | None, postgres: bool, redis_url: str | None) -> str | None:
    """Why the configured PostgreSQL or Redis cannot be reached, as one line; None if both can."""
    import asyncio

    from runwatch.agents.redact import mask_url

    async def check() -> str | None:
        if postgres and database_url:
            import asyncpg

            try:
                conn = await asyncpg.connect(database_url, timeout=5)
                await conn.close()
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                return f"cannot reach PostgreSQL at {mask_url(database_url)} ({exc}); check RUNWATCH_DATABASE_URL"
        if redis_url:
            import redis.asyncio
            from redis.exceptions import RedisError

            client = redis.asyncio.Redis.from_url(redis_url, socket_connect_timeout=5)
            try:
                await client.ping()
            except (OSError, RedisError) as exc:
                return f"cannot reach Redis at {mask_url(redis_url)} ({exc}); check RUNWATCH_REDIS_URL"
            finally:
                await client.aclose()
        return None

    return asyncio.run(check())


def serve(args: argparse.Namespace) -> int:
    from runwatch.api.logs import configure_logging
    from runwatch.api.runtime import Runtime

    settings = settings_of(args)
    if settings is None:
        return 2
    problem = (
        _data_dir_problem(settings.store.data_dir)
        or _listen_problem(settings.server.host, settings.server.port)
        or _backends_problem(settings.store.database_url, settings.store.postgres, settings.redis.url)
    )
    if problem:
        print(f"runwatch: {problem}", file=sys.stderr)
        return 2
    configure_logging(settings.logging.format, settings.logging.level, settings.secrets)
    try:
        runtime = Runtime(settings)
    except ConfigError as exc:
        print(f"runwatch: {exc}", file=sys.stderr)
        return 2
    try:
        return _serve(settings, runtime)
    finally:  # also after a failed start (uvicorn exits with SystemExit)
        if runtime.model_socket is not None:
            runtime.model_socket.remove()


def _serve(settings: Settings, runtime: Runtime) -> int:

    from runwatch.api.app import create_app
    from runwatch.api.server import Server, uvicorn_config

    app = create_app(settings, runtime)
    config = uvicorn_config(app, settings)

    Server(config, runtime).run()
    return 0


def migrate(args: argparse.Namespace) -> int:
    """Bring the database's schema up to date (``serve`` does it too, at start)."""
    import asyncio

    from runwatch.agents.store import PostgresStore, StoreUnavailable
    from runwatch.agents.store.migrations import latest
    from runwatch.api.backends import open_store
    from runwatch.api.logs import configure_logging

    settings = settings_of(args)
    if settings is None:
        return 2
    configure_logging("console", "warning", settings.secrets)

    async def apply() -> str:
        store = open_store(settings)
        if not isinstance(store, PostgresStore):
            await store.open()  # its schema is created in place, as it was always
            await store.close()
            return f"SQLite database {settings.store.database} is ready"
        from runwatch.agents.store.migrations import migrate as apply_migrations

        pg = store
        await pg.open()  # applies what is missing, under the migrations' lock
        try:
            async with pg.pool.acquire() as conn:
                await apply_migrations(conn)
                rows = await conn.fetch("SELECT version, name, applied_at FROM schema_migrations ORDER BY version")
        finally:
            await pg.close()
        applied = "\n".join(
            f"  {r['version']:>3}  {r['name']}  (applied {r['applied_at']:%Y-%m-%d %H:%M:%S %Z})" for r in rows
        )
        return f"PostgreSQL database is at schema version {latest()}:\n{applied}"

    try:
        print(asyncio.run(apply()))
    except StoreUnavailable as exc:
        print(f"runwatch: {exc}", file=sys.stderr)
        return 2
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runwatch",
        description="Watch LLM agent runs live: serve the API and dashboard, or talk to one.",
    )
    parser.add_argument("--version", action="version", version=f"runwatch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _serve_parser(sub)
    p = sub.add_parser(
        "migrate",
        help="create or upgrade the database schema",
        description="Apply the store's schema migrations (serve applies them at start too). Safe to run "
        "while instances are running, and from several places at once: migrations take a database lock.",
    )
    add_setting_flags(p, "database_url", "data_dir")
    p.set_defaults(func=migrate)
    url_help = "server URL (default $RUNWATCH_URL, else http://127.0.0.1:$RUNWATCH_PORT, port 8000)"
    p = sub.add_parser(
        "run",
        help="start a run and follow it in the terminal",
        description="Start a run on a running server and print its events as they arrive.",
    )
    p.add_argument("agent", help="agent name, e.g. demo")
    p.add_argument("input", help="the input text, or a JSON scenario for the offline model")
    p.add_argument("--thread", help="continue this thread (printed by an earlier run) instead of starting one")
    client_options(p, url_help)
    p.set_defaults(func=run_agent)
    p = sub.add_parser(
        "agents", help="list the agents a server can run", description="List the agents of a running server."
    )
    client_options(p, url_help)
    p.set_defaults(func=list_agents)
    keys_parser(sub)
    return parser


def _command_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser of the (sub)command ``args`` chose, e.g. ``runwatch keys list``'s: its usage is the one to show."""
    while True:
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        chosen = getattr(args, sub.dest, None) if sub is not None else None
        if sub is None or chosen not in sub.choices:
            return parser
        parser = sub.choices[chosen]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said by the command's own parser, with its usage (exits 2)
        _command_parser(parser, args).error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return args.func(args)
    except BrokenPipeError:
        if args.func is serve:
            raise
        # Client commands print to pipes (`runwatch agents | head`): end quietly when the reader goes,
        # as SIGPIPE would end them. Not by SIGPIPE itself: that also kills a command whose request
        # meets a closed socket (a --url port that is not HTTP) before it can say so.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (nothing left to flush)
        return 128 + signal.SIGPIPE


if __name__ == "__main__":
    raise SystemExit(main())
