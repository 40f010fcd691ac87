"""A real PostgreSQL server for the tests: initdb into a temporary folder, started
on a free loopback port, stopped and removed at the end. No mocks: what the
daemon reads is what a server sends.

The server binaries come from PATH, else /usr/lib/postgresql/*/bin (Debian's
`postgresql` package; CI installs it). Missing, the tests FAIL saying so: a
skipped test would hide that nothing was checked. PostgreSQL refuses to run
as root, so under root the server runs as the `postgres` system user (the
package creates it) and its folder is handed to that user.

The superuser `postgres` connects by the unix socket in the folder without a
password (trust); TCP connections need a password (scram), as a real
server's do, so the tests exercise the URL's and PGPASSWORD's password.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg

USER = "ann"
PASSWORD = "s3cret-Pw-7Qz"  # distinctive, so a leak is found by grepping for it
SERVER_USER = "postgres"  # the OS user the server runs as under root


def find_binary(name: str) -> str:
    """A PostgreSQL server binary: on PATH, else in Debian's versioned folder."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if candidates:
        return candidates[-1]  # the newest version
    raise RuntimeError(f"PostgreSQL's {name} not found on PATH or in /usr/lib/postgresql/*/bin; "
                       "these tests need a real server: apt-get install postgresql "
                       "(Debian/Ubuntu), brew install postgresql (macOS)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    port: int
    socket_dir: Path

    def admin(self, dbname: str = "postgres") -> psycopg.Connection:
        """A superuser connection by the unix socket, autocommit."""
        return psycopg.connect(host=str(self.socket_dir), port=self.port, user="postgres",
                               dbname=dbname, autocommit=True)

    def url(self, dbname: str, password: bool = True) -> str:
        secret = f":{PASSWORD}" if password else ""
        return f"postgresql://{USER}{secret}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, dbname: str) -> str:
        """A fresh database owned by the test user; its URL, password included."""
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{dbname}" OWNER {USER}')
        return self.url(dbname)


def _as_server_user() -> dict:
    """Popen's arguments that run a command as the server's user (under root only)."""
    if os.geteuid() != 0:
        return {}
    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise RuntimeError(f"running as root, and there is no {SERVER_USER!r} user to run "
                           "PostgreSQL as (it refuses root): apt-get install postgresql "
                           "creates one, or run the tests as another user") from None
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": [],
            "env": {**os.environ, "HOME": entry.pw_dir, "USER": SERVER_USER}}


def _run(command: list[str], **kwargs) -> None:
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n"
                           f"{done.stdout}\n{done.stderr}")


@contextlib.contextmanager
def running_server() -> Iterator[Server]:
    """A started PostgreSQL server, with the test user (password PASSWORD)."""
    initdb, pg_ctl = find_binary("initdb"), find_binary("pg_ctl")
    as_user = _as_server_user()
    # Not under pytest's tmp_path: its parents are private to root, and the
    # server's user must reach the folder.
    folder = Path(tempfile.mkdtemp(prefix="tether-pg-"))
    if as_user:
        os.chown(folder, as_user["user"], as_user["group"])
    data, sockets, logfile = folder / "data", folder / "sockets", folder / "server.log"
    port = _free_port()
    started = False
    try:
        try:
            _run([initdb, "-D", str(data), "-U", "postgres", "--auth-local=trust",
                  "--auth-host=scram-sha-256", "--encoding=UTF8", "--no-sync"], **as_user)
            sockets.mkdir()
            if as_user:
                os.chown(sockets, as_user["user"], as_user["group"])
            options = (f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off "
                       "-c synchronous_commit=off -c full_page_writes=off")
            _run([pg_ctl, "-D", str(data), "-l", str(logfile), "-w", "-t", "60", "-o", options,
                  "start"], **as_user)
            started = True
        except RuntimeError as exc:
            log = logfile.read_text(errors="replace")[-3000:] if logfile.exists() else ""
            raise RuntimeError(f"{exc}\nserver log:\n{log}") from None
        server = Server(port, sockets)
        with server.admin() as conn:
            conn.execute(f"CREATE USER {USER} PASSWORD '{PASSWORD}' CREATEDB")
        yield server
    finally:
        if started:
            _run([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], **as_user)
        shutil.rmtree(folder, ignore_errors=True)
