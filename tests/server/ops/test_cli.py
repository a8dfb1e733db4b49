"""The command line: --help everywhere, clear errors, `run` follows a run to its end."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading

import pytest

from tests.conftest import free_port
from tests.harness.cli import one_line_error, runwatch


def same_user(server, **extra: str) -> dict[str, str]:
    """The environment of another terminal of the user who started ``server`` (no RUNWATCH_ settings)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNWATCH_")}
    return env | {"XDG_DATA_HOME": server.env["XDG_DATA_HOME"]} | extra


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["serve"],
        ["run"],
        ["agents"],
        ["migrate"],
        ["keys"],
        ["keys", "create"],
        ["keys", "list"],
        ["keys", "revoke"],
    ],
)
def test_every_command_has_help(command):
    result = runwatch(*command, "--help")
    assert result.returncode == 0 and "usage: runwatch" in result.stdout


def test_serve_help_lists_every_environment_variable():
    out = runwatch("serve", "--help").stdout
    assert "OPENAI_BASE_URL" in out and "RUNWATCH_COALESCE_MS" in out and "RUNWATCH_WS_MAX_LAG" in out


def test_a_bad_setting_says_what_is_wrong(tmp_path):
    result = runwatch("serve", "--data-dir", str(tmp_path), env={"RUNWATCH_MAX_RUNNING": "many", "PATH": ""})
    assert result.returncode == 2 and "max_running must be a whole number, got 'many'" in result.stderr


def test_jwts_need_a_named_issuer_and_audience(tmp_path):
    env = {**os.environ, "RUNWATCH_JWT_SECRET": "x" * 40}
    result = runwatch("serve", "--data-dir", str(tmp_path), "--port", str(free_port()), env=env)
    assert result.returncode == 2 and "RUNWATCH_JWT_ISSUER and RUNWATCH_JWT_AUDIENCE" in result.stderr


def test_a_port_in_use_says_what_to_do(server, tmp_path):
    result = runwatch("serve", "--port", str(server.port), "--data-dir", str(tmp_path))
    assert result.returncode == 2 and "already in use" in result.stderr and "--port" in result.stderr


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--port", "99999"], "port must be between 1 and 65535"),
        (["--host", "10.255.255.1"], "10.255.255.1 is not an address of this machine; pass --host"),
        (["--data-dir", "/proc/nope"], "cannot use '/proc/nope' as the data folder"),
    ],
    ids=["port-out-of-range", "host-not-here", "data-dir-not-creatable"],
)
def test_a_setting_serve_cannot_use_is_one_line_that_says_what_to_do(flags, says, tmp_path):
    # Binding to an address this machine does not have fails locally; nothing is sent anywhere.
    result = runwatch("serve", "--data-dir", str(tmp_path), "--port", str(free_port()), *flags)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("runwatch: ") and says in result.stderr, result.stderr
    assert "pass --" in result.stderr


def test_run_follows_a_run_to_its_end(server):
    result = runwatch("run", "demo", "what is 3 * 4?", "--url", server.url, env=same_user(server))
    assert result.returncode == 0, result.stderr
    assert "→ calculator" in result.stderr and "[succeeded]" in result.stderr
    assert "12" in result.stdout and result.stdout.endswith("\n")


def test_client_commands_find_the_server_from_the_environment(server):
    env = same_user(server)
    by_url = runwatch("agents", env=env | {"RUNWATCH_URL": server.url})
    by_port = runwatch("agents", env=env | {"RUNWATCH_PORT": str(server.port)})
    for result in (by_url, by_port):
        assert result.returncode == 0 and result.stdout.startswith("demo"), result.stderr


def test_run_against_no_server_explains(tmp_path):
    result = runwatch("run", "demo", "hi", "--url", "http://127.0.0.1:9")
    assert result.returncode == 2 and "is `runwatch serve` running?" in result.stderr


def test_agents_lists_them(server):
    result = runwatch("agents", "--url", server.url, env=same_user(server))
    assert result.returncode == 0 and result.stdout.startswith("demo")


def test_client_commands_take_a_token_and_say_what_to_do_without_one(server, tmp_path):
    elsewhere = same_user(server, XDG_DATA_HOME=str(tmp_path))  # another user: no local key to find
    refused = runwatch("agents", "--url", server.url, env=elsewhere)
    assert refused.returncode == 2 and "pass --token or set RUNWATCH_TOKEN" in refused.stderr
    with_flag = runwatch("agents", "--url", server.url, "--token", server.token, env=elsewhere)
    with_env = runwatch("agents", "--url", server.url, env=elsewhere | {"RUNWATCH_TOKEN": server.token})
    assert with_flag.returncode == with_env.returncode == 0, with_flag.stderr


def test_keys_are_created_shown_once_listed_and_revoked(server, tmp_path):
    data = ["--data-dir", str(server.data_dir)]
    made = runwatch("keys", "create", "--tenant", "acme", "--role", "viewer", "--name", "dash", *data)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("rw_") and "shown this once" in made.stderr
    key_id = made.stderr.split()[1].rstrip(":")
    listed = runwatch("keys", "list", *data).stdout
    assert key_id in listed and "acme" in listed and "viewer" in listed and key not in listed
    ok = runwatch("agents", "--url", server.url, "--token", key)
    assert ok.returncode == 0, ok.stderr
    assert runwatch("keys", "revoke", key_id, *data).returncode == 0
    assert "revoked" in runwatch("keys", "list", *data).stdout
    assert runwatch("keys", "revoke", key_id, *data).returncode == 1  # not twice
    bad = runwatch("keys", "create", "--tenant", "no spaces", "--role", "viewer", *data)
    assert bad.returncode == 2 and "--tenant" in bad.stderr


async def test_migrate_brings_a_new_postgresql_database_to_the_latest_schema():
    import asyncpg

    from runwatch.agents.store.migrations import latest
    from tests.harness.services import postgres_database

    async with postgres_database() as url:
        first = runwatch("migrate", "--database", url)
        again = runwatch("migrate", "--database", url)  # nothing left to do: the same answer
        assert first.returncode == again.returncode == 0, first.stderr
        assert f"schema version {latest()}" in first.stdout
        conn = await asyncpg.connect(url)
        versions = [r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")]
        await conn.close()
        assert versions == list(range(1, latest() + 1))


def test_an_unreachable_database_or_redis_is_named_with_the_setting_to_check(tmp_path):
    port = free_port()
    bad_db = runwatch("serve", "--data-dir", str(tmp_path), "--database", f"postgresql://u:hunter22@127.0.0.1:{port}/x")
    bad_redis = runwatch("serve", "--data-dir", str(tmp_path), "--redis", f"redis://:hunter22@127.0.0.1:{port}/0")
    assert bad_db.returncode == 2 and "RUNWATCH_DATABASE_URL" in bad_db.stderr
    assert bad_redis.returncode == 2 and "RUNWATCH_REDIS_URL" in bad_redis.stderr
    assert "hunter22" not in bad_db.stderr + bad_redis.stderr  # passwords are masked


def test_an_unknown_flag_of_a_command_prints_that_command_s_usage():
    result = runwatch("run", "demo", "hi", "--bogus")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("usage: runwatch run "), result.stderr
    assert "runwatch run: error: unrecognized arguments: --bogus" in result.stderr
    nested = runwatch("keys", "list", "--bogus")
    assert nested.returncode == 2 and nested.stderr.startswith("usage: runwatch keys list "), nested.stderr
    alone = runwatch("run", "--bogus")  # (its arguments missing too: still run's usage)
    assert alone.returncode == 2 and alone.stderr.startswith("usage: runwatch run "), alone.stderr


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["--url", "localhost:8000"], {}, "--url 'localhost:8000' has no scheme; pass --url http://localhost:8000"),
        (["--url", "ws://127.0.0.1:8000"], {}, "is not an http:// or https:// URL; pass --url http://127.0.0.1:8000"),
        (["--url", "http://"], {}, "--url 'http://' names no host; pass --url http://HOST:PORT"),
        (["--url", "http://127.0.0.1:99999"], {}, "has no valid port (1 to 65535)"),
        (
            [],
            {"RUNWATCH_URL": "127.0.0.1:8000"},
            "RUNWATCH_URL '127.0.0.1:8000' has no scheme; set RUNWATCH_URL=http://",
        ),
        ([], {"RUNWATCH_PORT": "eighty"}, "RUNWATCH_PORT must be a port number (1 to 65535), got 'eighty'"),
    ],
    ids=["no-scheme", "websocket-scheme", "no-host", "port-out-of-range", "env-url-no-scheme", "env-port-not-a-number"],
)
@pytest.mark.parametrize("command", [["agents"], ["run", "demo", "hi"]])
def test_a_server_address_client_commands_cannot_use_is_one_line_that_says_what_to_pass(command, args, env, says):
    result = runwatch(*command, *args, env={**os.environ, **env})
    assert says in one_line_error(result)


def _listener(answer: bytes | None) -> tuple[socket.socket, int]:
    """A TCP port whose server sends ``answer`` to whoever connects and hangs up (None: says nothing)."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:  # closed: the test is over
                return
            if answer is None:
                held.append(conn)
            else:
                conn.sendall(answer)
                conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


@pytest.mark.parametrize("command", [["agents"], ["run", "demo", "hi"]])
def test_a_port_that_does_not_speak_http_is_one_line_not_a_traceback(command):
    server, port = _listener(b"SSH-2.0-OpenSSH_9.6\r\n")  # what an SSH port says first
    with server:
        said = one_line_error(runwatch(*command, "--url", f"http://127.0.0.1:{port}"))
    assert f"http://127.0.0.1:{port} does not answer as an HTTP server" in said and "pass --url" in said


def test_a_port_that_never_answers_is_given_up_on_after_ten_seconds():
    server, port = _listener(None)  # accepts, then is silent (a firewall, a stuck process)
    with server:
        said = one_line_error(runwatch("agents", "--url", f"http://127.0.0.1:{port}", timeout=30))
    assert f"http://127.0.0.1:{port} did not answer within 10 s" in said


def test_another_web_server_is_named_as_not_runwatch():
    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html><body>It works!</body></html>"
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        said = one_line_error(runwatch("agents", "--url", f"http://127.0.0.1:{httpd.server_port}"))
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert "answered HTTP 200 with text/html, not runwatch's JSON" in said


def test_keys_list_prints_aligned_columns_under_a_header(tmp_path):
    data = ["--data-dir", str(tmp_path)]
    made = runwatch("keys", "create", "--tenant", "acme", "--role", "viewer", "--name", "wall screen", *data)
    runwatch("keys", "create", "--tenant", "a-tenant-with-a-much-longer-name", "--role", "admin", *data)
    assert runwatch("keys", "revoke", made.stderr.split()[1].rstrip(":"), *data).returncode == 0
    lines = runwatch("keys", "list", *data).stdout.splitlines()
    header = ["ID", "TENANT", "ROLE", "STATE", "CREATED (UTC)", "NAME"]
    starts = [lines[0].index(title) for title in header]
    assert starts == sorted(starts) and len(lines) == 3, lines
    for line in lines[1:]:
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        assert all(line[a - 1 : a] in ("", " ") for a in starts), line  # every cell starts its column
        assert cells[0].startswith("k_") and cells[2] in ("viewer", "admin") and cells[4][:2] == "20", cells
    revoked = next(line for line in lines if "wall screen" in line)
    assert "revoked 20" in revoked and "acme" in revoked


def test_a_client_command_whose_reader_has_gone_ends_quietly(server):
    read, write = os.pipe()
    os.close(read)  # `runwatch agents | head -0`: the reader is gone before anything is written
    try:
        result = subprocess.run(
            [sys.executable, "-m", "runwatch.api.cli", "agents", "--url", server.url],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            env=same_user(server),
        )
    finally:
        os.close(write)
    assert result.returncode == 141 and result.stderr == "", result.stderr  # as a shell reports SIGPIPE
