"""Fixtures: a real ``runwatch serve`` process on a free port, and WebSocket watchers that talk to it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.harness.forked import ForkedProcess
from tests.harness.hermetic import SESSION
from tests.harness.inprocess import STOPPED, ThreadedServe, data_overrides
from tests.harness.waiting import eventually_blocking
from tests.harness.watcher import Watcher

if TYPE_CHECKING:
    from playwright.sync_api import Page

ROOT = Path(__file__).resolve().parent.parent

#: Fixtures shared by more than one room: the store on SQLite and PostgreSQL, an OpenID provider.
pytest_plugins = ["tests.harness.stores", "tests.harness.oidc"]


def pytest_configure(config: pytest.Config) -> None:
    """Before anything is collected: this session's own HOME, XDG folders and working directory,
    and none of the shell's runwatch or OpenAI settings (tests/harness/hermetic.py)."""
    SESSION.enter()
    # The app's route declarations warn as Litestar builds them: a served process writes that to its
    # log, where it stays; an in-process server's would fill every summary (tests/harness/inprocess.py).
    config.addinivalue_line("filterwarnings", "ignore::litestar.exceptions.LitestarDeprecationWarning")


@pytest.hookimpl(wrapper=True)
def pytest_sessionstart(session: pytest.Session) -> Iterator[None]:
    """pytest-xdist starts its workers here, each in this process's working directory, where it
    looks for the tests: so a controller starts them from where pytest was started, then goes back."""
    distributing = getattr(session.config.option, "numprocesses", None) and not hasattr(session.config, "workerinput")
    if distributing:
        os.chdir(session.config.invocation_params.dir)
    try:
        return (yield)
    finally:
        if distributing:
            os.chdir(SESSION.work)


def pytest_unconfigure(config: pytest.Config) -> None:
    SESSION.leave()


#: The servers started during the test now running (its own, not the shared ones).
_started: list[Server] = []
#: How much of each server's log a failed test's report shows.
LOG_LINES = 60


def pytest_runtest_setup(item: pytest.Item) -> None:
    _started.clear()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[pytest.TestReport]:
    """A failed test's report ends with the end of the log of each server it used, and what each
    page it opened showed."""
    report = yield
    if report.failed and report.when == "call":
        shared = [v for v in getattr(item, "funcargs", {}).values() if isinstance(v, Server)]
        for srv in dict.fromkeys([*_started, *shared]):
            if srv.in_process:
                continue  # (its log lines are in the test's captured output)
            tail = "\n".join(srv.logs().splitlines()[-LOG_LINES:])
            report.sections.append((f"the end of the log of the server on {srv.url}", tail))
        opened = getattr(getattr(item, "funcargs", {}).get("open_page"), "pages", [])
        for page, _ in opened:
            report.sections.append((f"the page {page.url}", _page_state(page)))
    return report


def _page_state(page: Page) -> str:
    """What a failed browser test's page showed: its connection state and the text of its view."""
    try:
        return page.evaluate(
            "() => `connection: ${document.querySelector('#conn')?.dataset.state}\\n` +"
            " (document.querySelector('#view')?.innerText ?? document.body.innerText).slice(0, 3000)"
        )
    except Exception as exc:  # closed, crashed or navigating: say so
        return f"(could not read the page: {exc})"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One ``runwatch serve`` process; ``env`` overrides settings (``RUNWATCH_*``).

    ``program`` is the command that is ``runwatch``, run as a subprocess; by default the process is
    forked from one that has runwatch imported already (tests/harness/forked.py), which starts it faster.
    ``in_process`` serves it from a thread of the test process instead (tests/harness/inprocess.py): for
    tests that only talk HTTP and WebSocket to it — no pid, no log file, a graceful stop only, and
    its local admin key for client commands under this session's home, not under ``data_dir``.
    """

    #: Each started server's URL → its local admin key (so a browser test can log in to it).
    tokens: dict[str, str] = {}

    def __init__(
        self,
        data_dir: Path,
        env: dict[str, str] | None = None,
        port: int | None = None,
        *,
        program: list[str] | None = None,
        cwd: Path = ROOT,
        in_process: bool = False,
    ) -> None:
        self.program = program
        self.in_process = in_process
        self.cwd = cwd
        self.data_dir = data_dir
        #: A port of its own choosing (not a restart's): chosen again if another process took it first.
        self.own_port = port is None
        self._at(port or free_port())
        self.env = (
            {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "RUNWATCH_"))}
            | {"RUNWATCH_LOG_FORMAT": "json"}
            # Tests of other behaviours start many runs as one principal: quotas are tested on their own.
            | {"RUNWATCH_RUNS_PER_MINUTE": "100000", "RUNWATCH_TENANT_MAX_ACTIVE": "100000"}
            # The login link goes to the test's log (a test reads its code); a port's key is left
            # for client commands under the test's own folder, not the user's home.
            | {"RUNWATCH_LOGIN_LINK": "on", "XDG_DATA_HOME": str(data_dir / "xdg")}
            | (env or {})
        )
        self.proc: subprocess.Popen[bytes] | ForkedProcess | ThreadedServe | None = None
        #: The local admin key the server made in its data folder (None with authentication off).
        self.token: str | None = None

    def _at(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}/ws"
        self.log_path = self.data_dir / f"server-{port}.log"

    def start(self, timeout: float = 60.0) -> Server:  # a ceiling: a busy 2-core machine took 20 s to import
        try:
            return self._start(timeout)
        except RuntimeError as exc:
            if not (self.own_port and "address already in use" in str(exc).lower()):
                raise
            self._at(free_port())  # (another test's server took the port between its choice and bind)
            return self._start(timeout)

    def _start(self, timeout: float) -> Server:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = ["serve", "--port", str(self.port), "--data-dir", str(self.data_dir)]
        if self.in_process:
            self.proc = ThreadedServe(data_overrides(self.port, self.data_dir), self.env)
        elif self.program is None:
            self.proc = ForkedProcess(argv, self.env, self.cwd, self.log_path)
        else:
            with self.log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
                self.proc = subprocess.Popen(
                    [*self.program, *argv], cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT
                )
        _started.append(self)
        try:
            if isinstance(self.proc, ThreadedServe):
                self.proc.wait_started(timeout)
            else:
                eventually_blocking(self._healthy, timeout, "runwatch to answer /api/health")
        except AssertionError:
            self.proc.kill()  # not left running: no fixture would stop a server that never came up
            self.proc.wait(15)
            raise RuntimeError(f"runwatch did not come up in {timeout} s{self._log_tail()}") from None
        key = self.data_dir / "admin.key"
        self.token = key.read_text().strip() if key.exists() else None
        if self.token:
            Server.tokens[self.url] = self.token
        return self

    def _healthy(self) -> bool:
        """Whether the process answers ``/api/health``; a ``RuntimeError`` if it has exited."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"runwatch exited with {self.proc.returncode}:\n{self.logs()}")
        # With its key (once it made one): a port another test's server took meanwhile answers 401.
        key = self.data_dir / "admin.key"
        headers = {"Authorization": f"Bearer {key.read_text().strip()}"} if key.exists() else {}
        try:
            return httpx.get(self.url + "/api/health", headers=headers, timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Signal the server and wait; uvicorn re-raises SIGTERM after a graceful stop (exit -15)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"runwatch did not stop within {timeout} s{self._log_tail()}") from None
        if isinstance(self.proc, ThreadedServe):
            assert self.proc.returncode == STOPPED, f"the in-process server failed: {self.proc.error!r}"
        elif sig == signal.SIGTERM:
            assert "runtime.stopped" in self.logs(), self.logs()[-2000:]
        return self.proc.returncode

    def logs(self) -> str:
        """What the process wrote. An in-process server keeps no log of its own (tests/harness/inprocess.py):
        asked for one, it fails the test rather than let an assertion about the log pass on nothing."""
        if self.in_process:
            raise AssertionError("an in-process server keeps no log: this test needs a process (make_server())")
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _log_tail(self) -> str:
        """The log's end for an error message (an in-process server's is in the captured output)."""
        return "" if self.in_process else f":\n{self.logs()[-4000:]}"

    def log_lines(self) -> list[dict]:
        out = []
        for line in self.logs().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    @property
    def auth(self) -> dict[str, str]:
        """The header that authenticates as the local admin (empty with authentication off)."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def client(self, token: str | None = None) -> httpx.AsyncClient:
        """An HTTP client of the local admin, or of ``token``."""
        headers = {"Authorization": f"Bearer {token}"} if token else self.auth
        return httpx.AsyncClient(base_url=self.url, timeout=10, headers=headers)

    async def watcher(self, token: str | None = None, **kwargs) -> Watcher:
        """A WebSocket watcher of the local admin, or of ``token``."""
        headers = {"Authorization": f"Bearer {token}"} if token else self.auth
        return await Watcher.connect(self.ws_url, additional_headers=headers, **kwargs)

    async def start_run(self, user_input: str | dict, agent: str = "demo") -> str:
        text = user_input if isinstance(user_input, str) else json.dumps(user_input)
        async with self.client() as c:
            r = await c.post("/api/runs", json={"agent": agent, "input": text})
            assert r.status_code == 202, r.text
            return r.json()["id"]

    async def run_to_end(self, user_input: str | dict, agent: str = "demo") -> list[dict]:
        """Start a run, watch it from its first event to ``run.finished``, and return its events."""
        w = await self.watcher()
        run = await self.start_run(user_input, agent=agent)
        await w.subscribe(run)
        events = await w.until_finished(run)
        await w.close()
        return events


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A shared server on default settings (tests must not depend on other tests' runs)."""
    srv = Server(tmp_path_factory.mktemp("shared")).start()
    yield srv
    srv.stop()


def serve_in_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server on default settings served from this test process (tests/harness/inprocess.py), for a
    room's own ``server`` fixture when its tests only talk HTTP and WebSocket to it."""
    srv = Server(tmp_path_factory.mktemp("inprocess"), in_process=True).start()
    yield srv
    srv.stop()


#: The two ways a frame reaches a WebSocket client: written straight to uvicorn's transport (``auto``,
#: for a caught-up watcher) or always through the ASGI send (``off``). Send-path tests run on both.
FRAME_PATHS = {"direct": "auto", "asgi": "off"}


@pytest.fixture(params=list(FRAME_PATHS))
def frame_path(request: pytest.FixtureRequest) -> dict[str, str]:
    """The settings of each frame path in turn (``RUNWATCH_WS_DIRECT_WRITES``), for ``make_server``."""
    return {"RUNWATCH_WS_DIRECT_WRITES": FRAME_PATHS[request.param]}


@pytest.fixture(scope="session")
def asgi_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A shared server that sends every frame through the ASGI send (direct writes off)."""
    srv = Server(tmp_path_factory.mktemp("asgi"), {"RUNWATCH_WS_DIRECT_WRITES": "off"}).start()
    yield srv
    srv.stop()


@pytest.fixture(params=list(FRAME_PATHS))
def server_each_path(request: pytest.FixtureRequest) -> Server:
    """The shared server (direct writes) and the shared ASGI-only one in turn."""
    return request.getfixturevalue("server" if request.param == "direct" else "asgi_server")


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator:
    """Start dedicated servers with their own settings; all are stopped after the test.
    ``in_process=True`` serves one from this test process (tests/harness/inprocess.py)."""
    started: list[Server] = []

    def make(env: dict[str, str] | None = None, data_dir: Path | None = None, *, in_process: bool = False) -> Server:
        srv = Server(data_dir or tmp_path / f"data{len(started)}", env, in_process=in_process).start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        if srv.proc is not None and srv.proc.poll() is None:
            srv.stop()


#: The lease of ``cluster`` instances: a dead instance's runs are taken over within it.
CLUSTER_LEASE = 2.0


@pytest.fixture
async def cluster(tmp_path):
    """``start(n)`` → n started instances on one Redis prefix and one PostgreSQL database."""
    from tests.harness.services import REDIS, drop_prefix, new_prefix, postgres_database  # (services uses this module)

    servers: list[Server] = []
    prefix = new_prefix()
    async with postgres_database() as url:
        env = {
            "RUNWATCH_REDIS_URL": REDIS,
            "RUNWATCH_REDIS_PREFIX": prefix,
            "RUNWATCH_DATABASE_URL": url,
            "RUNWATCH_LEASE_SECONDS": str(CLUSTER_LEASE),
            "RUNWATCH_AGENTS": "tests.harness.agents_resumable",
        }

        def start(n: int, **extra: str) -> list[Server]:
            new = []
            for _ in range(n):
                name = f"i{len(servers)}"
                server = Server(tmp_path / name, env | {"RUNWATCH_INSTANCE": name} | extra)
                servers.append(server)
                new.append(server)
            for server in new:
                server.start()
            return new

        yield start
        for server in servers:
            if server.proc is not None and server.proc.poll() is None:
                server.stop()
    drop_prefix(REDIS, prefix)
