"""A private Mosquitto per test: free port on 127.0.0.1, optional TLS, password and ACL files."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from devtools.ports import free_port, wait_port

# `free_port`/`wait_port` live in devtools (bench uses them too); named here for the tests.
__all__ = ["MosquittoServer", "TlsFiles", "free_port", "make_tls_files", "wait_port"]

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


@dataclass(frozen=True)
class TlsFiles:
    """A CA and a server certificate for 127.0.0.1/localhost signed by it."""

    ca: Path
    cert: Path
    key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_tls_files(directory: Path, name: str = "test-CA") -> TlsFiles:
    """Generate a CA and a server cert with IP SAN 127.0.0.1 (the field-notes recipe)."""
    directory.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-keyout", "ca.key", "-out", "ca.crt", "-subj", f"/CN={name}", cwd=directory,
    )  # fmt: skip
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
        "-out", "server.csr", "-subj", "/CN=localhost", cwd=directory,
    )  # fmt: skip
    (directory / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "server.ext",
        cwd=directory,
    )  # fmt: skip
    return TlsFiles(directory / "ca.crt", directory / "server.crt", directory / "server.key")


class MosquittoServer:
    """One mosquitto process owned by a test; stopped by PID, never by name."""

    def __init__(
        self,
        directory: Path,
        *,
        tls: TlsFiles | None = None,
        users: dict[str, str] | None = None,
        port: int | None = None,
        acl: str | None = None,
    ) -> None:
        self.directory = directory
        self.tls = tls
        self.users = users
        self.acl_file: Path | None = None
        """The ACL file (`acl_file`) when `acl` was given: rewrite it, then `reload()`."""
        if acl is not None:
            directory.mkdir(parents=True, exist_ok=True)
            self.acl_file = directory / "acl"
            self.acl_file.write_text(acl)
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)
        self._conf = directory / "mosquitto.conf"
        self._write_conf()

    def _write_conf(self) -> None:
        lines = []
        if os.geteuid() == 0:
            lines.append("user root")  # keep root so the test's private files stay readable
        lines += ["per_listener_settings true", f"listener {self.port} 127.0.0.1"]
        if self.users:
            passwd = self.directory / "passwd"
            passwd.write_text("")
            for user, password in self.users.items():
                subprocess.run(
                    ["mosquitto_passwd", "-b", str(passwd), user, password],
                    check=True,
                    capture_output=True,
                )
            lines += ["allow_anonymous false", f"password_file {passwd}"]
            if self.acl_file is not None:
                lines.append(f"acl_file {self.acl_file}")
        else:
            lines.append("allow_anonymous true")
        if self.tls:
            lines += [
                f"cafile {self.tls.ca}",
                f"certfile {self.tls.cert}",
                f"keyfile {self.tls.key}",
                "tls_version tlsv1.2",
            ]
        lines.append("max_queued_messages 100000")
        self._conf.write_text("\n".join(lines) + "\n")

    def start(self) -> MosquittoServer:
        """Start and wait until the port accepts."""
        log = (self.directory / "mosquitto.log").open("ab")
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(self._conf)], stdout=log, stderr=log)
        log.close()
        wait_port(self.port)
        return self

    def stop(self) -> None:
        """Terminate (SIGTERM, then SIGKILL) the process this object started."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self.process = None

    def reload(self) -> None:
        """SIGHUP the broker this object started: it re-reads its password and ACL files."""
        if self.process is not None:
            self.process.send_signal(signal.SIGHUP)

    def kill(self) -> None:
        """SIGKILL the broker (a crash, for fault tests)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=5)
            self.process = None

    def __enter__(self) -> MosquittoServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
