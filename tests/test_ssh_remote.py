"""A real SSH remote: an OpenSSH server on 127.0.0.1 (throw-away host key, user key and
authorized_keys), ``dvc push`` to it and ``dvc pull`` from it into a fresh clone with dvc-ssh.

Skipped, with the reason, where ``sshd`` or the ``dvc-ssh`` plugin (``pip install "dvc[ssh]"``)
is missing.
"""

from __future__ import annotations

import filecmp
import getpass
import importlib.util
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dvc_copy import run

SSHD = shutil.which("sshd") or next((p for p in ("/usr/sbin/sshd", "/usr/local/sbin/sshd") if Path(p).exists()), None)
PRIVSEP_DIR = Path("/run/sshd")

pytestmark = [
    pytest.mark.integration,  # starts an OpenSSH server and DVC processes
    pytest.mark.skipif(SSHD is None, reason="no OpenSSH server (sshd) installed: apt-get install openssh-server"),
    pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="no ssh-keygen installed (openssh-client)"),
    pytest.mark.skipif(importlib.util.find_spec("dvc_ssh") is None,
                       reason='dvc-ssh is not installed: pip install "dvc[ssh]"'),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


@pytest.fixture
def sshd(tmp_path) -> Iterator[dict[str, object]]:
    """sshd on a free port of 127.0.0.1 that admits only a fresh key for the current user."""
    if os.geteuid() == 0 and not PRIVSEP_DIR.is_dir():
        try:
            PRIVSEP_DIR.mkdir(mode=0o755)  # what the ssh service creates at boot
        except OSError as err:
            pytest.skip(f"sshd as root needs {PRIVSEP_DIR} ({err.strerror})")
    etc = tmp_path / "sshd"
    etc.mkdir()
    host_public = keygen(etc / "host_key")
    (etc / "authorized_keys").write_text(keygen(etc / "user_key") + "\n")
    port = free_port()
    (etc / "sshd_config").write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {etc / 'host_key'}",
        f"AuthorizedKeysFile {etc / 'authorized_keys'}", f"PidFile {etc / 'sshd.pid'}",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no", "PubkeyAuthentication yes",
        "UsePAM no", "StrictModes no", "PermitRootLogin prohibit-password", "Subsystem sftp internal-sftp",
    ]) + "\n")
    log = (etc / "sshd.log").open("w")
    server = subprocess.Popen([SSHD, "-D", "-e", "-f", str(etc / "sshd_config")], stdout=log, stderr=log)
    try:
        for _ in range(100):
            if server.poll() is not None:
                pytest.skip(f"sshd did not start: {(etc / 'sshd.log').read_text().strip()[-300:]}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        home = tmp_path / "home"
        (home / ".ssh").mkdir(parents=True)
        (home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_public}\n")
        yield {"port": port, "key": etc / "user_key", "home": home, "user": getpass.getuser()}
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


def test_push_and_pull_over_ssh(tmp_path, sshd, monkeypatch):
    monkeypatch.setenv("HOME", str(sshd["home"]))  # the throw-away known_hosts, no personal ssh config
    store = tmp_path / "store"
    url = f"ssh://{sshd['user']}@127.0.0.1:{sshd['port']}{store}"
    repo = tmp_path / "repo"
    (repo / "data" / "features").mkdir(parents=True)
    (repo / "data" / "qm9.parquet").write_bytes(os.urandom(4096))
    (repo / "data" / "features" / "atoms.parquet").write_bytes(os.urandom(2048))
    run(["git", "init", "-q"], repo)
    run(["dvc", "init", "-q"], repo)
    run(["dvc", "remote", "add", "-d", "cluster", url], repo)
    run(["dvc", "remote", "modify", "--local", "cluster", "keyfile", str(sshd["key"])], repo)
    run(["dvc", "add", "-q", "data/qm9.parquet", "data/features"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "data"], repo)
    run(["dvc", "push", "-q"], repo)
    assert len([p for p in store.rglob("*") if p.is_file()]) >= 3  # both files and the folder's listing

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    run(["dvc", "remote", "modify", "--local", "cluster", "keyfile", str(sshd["key"])], clone)
    assert not (clone / "data" / "qm9.parquet").exists()
    run(["dvc", "pull", "-q"], clone)
    for path in ("data/qm9.parquet", "data/features/atoms.parquet"):
        assert filecmp.cmp(repo / path, clone / path, shallow=False), path
