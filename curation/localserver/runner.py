"""Run a local Argilla server (argilla-server 2.8.0) for annotation, with no Docker.

The server lives in its own virtualenv (it pins old libraries), keeps its data in SQLite under
a home folder, searches with the index-free SQL plugin of :mod:`curation.localserver`, and
talks to a private Redis on loopback: Debian's ``redis-server`` when it is on PATH, otherwise
an embedded ``fakeredis`` server. Redis, the server and its rq worker run as child processes in
their own sessions, so they outlive the caller; their process ids, the port and the generated
credentials are kept in ``<home>/server.json`` (mode 0600).

Layout of ``home``: ``argilla.db`` (the server's database), ``server.json``, ``logs/*.log``,
``tmp/`` (the servers' TMPDIR, emptied on start and stop), ``pythonpath/`` (makes the plugin
importable by the server's python).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import requests

from curation.core.errors import ServerError
from curation.core.processes import alive, start_time

SERVER_VERSION = "2.8.0"
SERVER_REQUIREMENTS: tuple[str, ...] = (
    f"argilla-server=={SERVER_VERSION}",
    f"argilla=={SERVER_VERSION}",
    "click<8.2",  # click 8.2+ breaks argilla_server's typer 0.9 CLI
    "fakeredis>=2.26,<3",  # embedded Redis when no redis-server binary is on PATH
)
SEARCH_ENGINE = "sqlite"  # the name curation.localserver.search_engine registers
USERNAME = "argilla"  # the owner user that `database users create_default` makes
VENV_ENV_VAR = "CURATION_ARGILLA_VENV"
DEFAULT_VENV = Path("~/.cache/refusal-curation") / f"argilla-server-{SERVER_VERSION}"
STATE_FILE = "server.json"
START_TIMEOUT = 90.0
STOP_TIMEOUT = 15.0

_READY_MARKER = ".curation-ready"
_LAUNCHER = "curation.localserver.launch"
_FAKEREDIS_MAIN = """
import sys
from fakeredis import TcpFakeServer
server = TcpFakeServer(("127.0.0.1", int(sys.argv[1])), server_type="redis")
server.daemon_threads = True
server.serve_forever()
"""
_CHILDREN: list[subprocess.Popen] = []  # keeps Popen objects alive (no ResourceWarning)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ServerInfo:
    """Where a running local server answers, how to sign in, and its processes."""

    url: str
    api_key: str
    username: str
    password: str
    home: Path
    port: int
    server_pid: int
    worker_pid: int
    redis_pid: int
    redis_url: str
    redis_kind: str  # "redis-server" or "fakeredis"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (home as a string)."""
        data = asdict(self)
        data["home"] = str(self.home)
        return data


# --- the server's virtualenv ------------------------------------------------------------------


def venv_dir() -> Path:
    """The server virtualenv's folder: ``$CURATION_ARGILLA_VENV`` or the default cache path."""
    return Path(os.environ.get(VENV_ENV_VAR) or DEFAULT_VENV).expanduser().absolute()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (flock) on ``path``, released on exit or process death."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _venv_ready(venv: Path) -> bool:
    marker = venv / _READY_MARKER
    python = venv / "bin" / "python"
    try:
        return python.exists() and marker.read_text() == "\n".join(SERVER_REQUIREMENTS)
    except OSError:
        return False


def server_python(progress: Progress | None = None) -> Path:
    """The server virtualenv's python, creating the virtualenv on first use.

    Safe when processes race: the build holds a lock file, and a marker written last tells
    a finished virtualenv from a half-built one (which is removed and built again).
    """
    venv = venv_dir()
    python = venv / "bin" / "python"
    if _venv_ready(venv):
        return python
    with _file_lock(venv.parent / f"{venv.name}.lock"):
        if _venv_ready(venv):
            return python
        log_path = venv.parent / f"{venv.name}.install.log"
        if progress:
            progress(f"Installing argilla-server {SERVER_VERSION} into {venv} (one time, ~1 min)")
        shutil.rmtree(venv, ignore_errors=True)
        started = time.monotonic()
        with open(log_path, "w") as log:
            steps = [
                [sys.executable, "-m", "venv", str(venv)],
                [str(python), "-m", "pip", "install", "--quiet", "--quiet",
                 "--disable-pip-version-check", *SERVER_REQUIREMENTS],
            ]  # fmt: skip
            for command in steps:
                log.write("$ " + " ".join(command) + "\n")
                log.flush()
                result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False)
                if result.returncode != 0:
                    shutil.rmtree(venv, ignore_errors=True)
                    raise ServerError(
                        f"installing argilla-server failed ({command[2]} exited "
                        f"{result.returncode}); see {log_path}"
                    )
        (venv / _READY_MARKER).write_text("\n".join(SERVER_REQUIREMENTS))
        if progress:
            progress(f"Installed argilla-server in {time.monotonic() - started:.0f} s")
    return python


# --- small helpers ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _read_state(home: Path) -> dict[str, Any]:
    path = home / STATE_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise ServerError(f"cannot read {path}: {error}") from error


def _write_state(home: Path, state: dict[str, Any]) -> None:
    """Write server.json atomically, readable by its owner only (it holds credentials)."""
    path = home / STATE_FILE
    temporary = path.with_name(f".{STATE_FILE}.{os.getpid()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(state, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:] if line.strip())[-400:]


def _spawn(command: list[str], log_path: Path, env: dict[str, str], cwd: Path) -> subprocess.Popen:
    """Start ``command`` in its own session (so it outlives the caller), logging to log_path."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} $ {' '.join(command)}\n")
        log.flush()
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    _CHILDREN.append(process)
    return process


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")  # RESP; fakeredis ignores inline commands
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _http_ok(url: str) -> bool:
    try:
        return requests.get(f"{url}/api/v1/status", timeout=2.0).status_code == 200
    except requests.RequestException:
        return False


def _pythonpath(home: Path) -> Path:
    """A folder holding only a link to the ``curation`` package, for the server's PYTHONPATH.

    Only the package goes on the path, never the toolkit's site-packages: its libraries would
    shadow the server's pinned ones.
    """
    package = Path(__file__).resolve().parent.parent
    folder = home / "pythonpath"
    link = folder / "curation"
    folder.mkdir(parents=True, exist_ok=True)
    if not (link.is_symlink() and link.resolve() == package):
        if link.is_symlink() or link.is_file():
            link.unlink()
        elif link.exists():
            shutil.rmtree(link)
        link.symlink_to(package, target_is_directory=True)
    return folder


def _server_env(home: Path, state: dict[str, Any], redis_url: str) -> dict[str, str]:
    """The servers' environment: the caller's, less any ARGILLA_* / Python path settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("ARGILLA_")
        and key not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}
    }
    env.update(
        ARGILLA_HOME_PATH=str(home),
        ARGILLA_SEARCH_ENGINE=SEARCH_ENGINE,
        ARGILLA_REDIS_URL=redis_url,
        ARGILLA_AUTH_SECRET_KEY=state["auth_secret_key"],
        HF_HUB_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        TMPDIR=str(home / "tmp"),
        PYTHONPATH=str(_pythonpath(home)),
        PYTHONUNBUFFERED="1",
    )
    return env


def _reset_tmp(home: Path) -> None:
    shutil.rmtree(home / "tmp", ignore_errors=True)
    (home / "tmp").mkdir(parents=True, exist_ok=True)


def _info(home: Path, state: dict[str, Any]) -> ServerInfo:
    processes = state["processes"]
    return ServerInfo(
        url=state["url"],
        api_key=state["api_key"],
        username=state["username"],
        password=state["password"],
        home=home,
        port=state["port"],
        server_pid=processes["server"]["pid"],
        worker_pid=processes["worker"]["pid"],
        redis_pid=processes["redis"]["pid"],
        redis_url=state["redis_url"],
        redis_kind=state["redis_kind"],
    )


def _terminate(processes: dict[str, Any], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM each live recorded process group, then SIGKILL what is left after timeout."""
    live = {
        name: entry["pid"]
        for name, entry in processes.items()
        if alive(entry.get("pid"), entry.get("start_time"))
    }
    # The server and worker first, Redis last (they talk to it while shutting down).
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for name in sorted(live, key=lambda name: name == "redis"):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(live[name], sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            live = {name: pid for name, pid in live.items() if alive(pid)}
            if not live:
                return
            time.sleep(0.1)
    if live:
        raise ServerError(f"could not stop processes {sorted(live.values())}")


# --- public lifecycle ---------------------------------------------------------------------------


def status(home: Path) -> ServerInfo | None:
    """The running server in ``home``, or None (nothing started, stopped, or stale pids)."""
    home = Path(home).expanduser().absolute()
    state = _read_state(home)
    processes = state.get("processes")
    if not processes:
        return None
    server = processes.get("server", {})
    if not alive(server.get("pid"), server.get("start_time")) or not _http_ok(state["url"]):
        return None
    return _info(home, state)


def start(home: Path, port: int | None = None, progress: Progress | None = None) -> ServerInfo:
    """Start Redis, argilla-server and its worker for ``home`` and wait until the API answers.

    Returns the running server as is when one already runs for ``home``. On first use it
    creates the database and the owner user ``argilla`` with a generated API key and password,
    kept in ``home/server.json``. ``port`` defaults to a free one.
    """
    home = Path(home).expanduser().absolute()
    home.mkdir(parents=True, exist_ok=True)
    python = server_python(progress)
    with _file_lock(home / ".lock"):
        running = status(home)
        if running is not None:
            return running
        state = _read_state(home)
        if state.get("processes"):  # stale or half-dead: clear what is left
            _terminate(state.pop("processes"))
        if port is None:
            port = _free_port()
        elif not _port_free(port):
            raise ServerError(f"port {port} on 127.0.0.1 is in use")
        state.setdefault("auth_secret_key", secrets.token_hex(32))
        state.setdefault("username", USERNAME)
        logs = home / "logs"
        logs.mkdir(exist_ok=True)
        _reset_tmp(home)
        processes: dict[str, Any] = {}
        try:
            redis_url, redis_kind = _start_redis(python, home, logs, processes)
            env = _server_env(home, state, redis_url)
            _setup_database(python, home, state, env, logs, progress)
            url = f"http://127.0.0.1:{port}"
            if progress:
                progress(f"Starting argilla-server {SERVER_VERSION} at {url}")
            for name, arguments in (
                ("server", ["start", "--host", "127.0.0.1", "--port", str(port)]),
                ("worker", ["worker", "--num-workers", "1"]),
            ):
                command = [str(python), "-m", _LAUNCHER, *arguments]
                process = _spawn(command, logs / f"{name}.log", env, home)
                processes[name] = {"pid": process.pid, "start_time": start_time(process.pid)}
            state.update(
                url=url,
                port=port,
                redis_url=redis_url,
                redis_kind=redis_kind,
                server_version=SERVER_VERSION,
                started_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                processes=processes,
            )
            _write_state(home, state)
            _wait_for_server(url, processes, logs / "server.log")
        except BaseException:
            with contextlib.suppress(ServerError):
                _terminate(processes, timeout=5.0)
            state.pop("processes", None)
            _write_state(home, state)
            raise
        return _info(home, state)


def stop(home: Path) -> bool:
    """Stop the server, worker and Redis of ``home``; True when something was running."""
    home = Path(home).expanduser().absolute()
    if not (home / STATE_FILE).exists():
        return False
    with _file_lock(home / ".lock"):
        state = _read_state(home)
        processes = state.pop("processes", None)
        if not processes:
            return False
        was_running = any(
            alive(entry.get("pid"), entry.get("start_time")) for entry in processes.values()
        )
        _terminate(processes)
        _write_state(home, state)
        shutil.rmtree(home / "tmp", ignore_errors=True)
        return was_running


# --- start's steps ------------------------------------------------------------------------------


def _start_redis(
    python: Path, home: Path, logs: Path, processes: dict[str, Any]
) -> tuple[str, str]:
    """Start a private Redis on a free loopback port; return its URL and kind."""
    port = _free_port()
    binary = shutil.which("redis-server")
    if binary:
        kind = "redis-server"
        command = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                   "--appendonly", "no", "--daemonize", "no",
                   "--dir", str(home / "tmp")]  # fmt: skip
        env = dict(os.environ)
    else:
        kind = "fakeredis"
        command = [str(python), "-c", _FAKEREDIS_MAIN, str(port)]
        env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME"}}
    process = _spawn(command, logs / "redis.log", env, home)
    processes["redis"] = {"pid": process.pid, "start_time": start_time(process.pid)}
    deadline = time.monotonic() + 20.0
    while time.monotonic() < deadline:
        if _redis_ping(port):
            return f"redis://127.0.0.1:{port}/0", kind
        if process.poll() is not None:
            break
        time.sleep(0.1)
    raise ServerError(
        f"{kind} did not start on port {port}: {_log_tail(logs / 'redis.log')} "
        f"(log: {logs / 'redis.log'})"
    )


def _run_cli(
    python: Path, arguments: list[str], env: dict[str, str], home: Path, log: Path
) -> None:
    """Run one argilla_server CLI command through the launcher, failing with a log pointer."""
    with open(log, "a") as handle:
        handle.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} $ {' '.join(arguments[:3])}\n")
        handle.flush()
        result = subprocess.run(
            [str(python), "-m", _LAUNCHER, *arguments],
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=home,
            check=False,
            timeout=300,
        )
    if result.returncode != 0:
        raise ServerError(
            f"argilla_server {' '.join(arguments[:2])} failed (exit {result.returncode}): "
            f"{_log_tail(log, 2)} (log: {log})"
        )


def _setup_database(
    python: Path,
    home: Path,
    state: dict[str, Any],
    env: dict[str, str],
    logs: Path,
    progress: Progress | None,
) -> None:
    """Migrate the database when new or made by another server version; make the owner user."""
    database = home / "argilla.db"
    if not database.exists() or state.get("migrated") != SERVER_VERSION:
        if progress:
            progress(f"Preparing the Argilla database in {home}")
        _run_cli(python, ["database", "migrate"], env, home, logs / "setup.log")
        state["migrated"] = SERVER_VERSION
        _write_state(home, state)
    if "api_key" not in state:
        if database.exists() and state.get("migrated") and _owner_exists(database):
            raise ServerError(
                f"{database} has a user {USERNAME!r} but {home / STATE_FILE} lost its credentials"
            )
        api_key = "argilla.apikey." + secrets.token_urlsafe(32)
        password = secrets.token_urlsafe(18)
        _run_cli(
            python,
            ["database", "users", "create_default", "--api-key", api_key, "--password", password,
             "--quiet"],
            env, home, logs / "setup.log",
        )  # fmt: skip
        state.update(api_key=api_key, password=password, username=USERNAME)
        _write_state(home, state)


def _owner_exists(database: Path) -> bool:
    import sqlite3

    with contextlib.closing(sqlite3.connect(database)) as connection:
        try:
            row = connection.execute(
                "SELECT 1 FROM users WHERE username = ?", (USERNAME,)
            ).fetchone()
        except sqlite3.Error:
            return False
    return row is not None


def _wait_for_server(url: str, processes: dict[str, Any], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    server = processes["server"]
    while time.monotonic() < deadline:
        if _http_ok(url):
            return
        if not alive(server["pid"]):
            raise ServerError(
                f"argilla-server exited during startup: {_log_tail(log, 2)} (log: {log})"
            )
        time.sleep(0.25)
    raise ServerError(
        f"argilla-server did not answer at {url} within {START_TIMEOUT:.0f} s (log: {log})"
    )
