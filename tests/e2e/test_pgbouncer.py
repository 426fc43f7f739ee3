"""The backend flow through pgbouncer in transaction mode: server connections are shared by
many clients, so identity must live exactly as long as one transaction."""
import os
import shutil
import socket
import subprocess
import threading
import time

import pytest

from conftest import ALICE, BOB

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="module")
def bouncer(cluster):
    if not os.path.exists(PGBOUNCER):
        pytest.fail("pgbouncer is not installed (scripts/setup.sh installs it)")
    d = f"{cluster.dir}/pgbouncer"
    os.makedirs(d, exist_ok=True)
    port = free_port()
    with open(f"{d}/users.txt", "w") as f:
        f.write('"app_user" ""\n"postgres" ""\n')
    with open(f"{d}/pgbouncer.ini", "w") as f:
        f.write(f"""[databases]
e2e = host=127.0.0.1 port={cluster.port} dbname=e2e

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {d}/users.txt
pool_mode = transaction
default_pool_size = 2
max_client_conn = 100
server_reset_query = DISCARD ALL
ignore_startup_parameters = extra_float_digits
logfile = {d}/pgbouncer.log
pidfile = {d}/pgbouncer.pid
""")
    subprocess.run(["chown", "-R", "postgres:postgres", d], check=True)
    cmd = ["runuser", "-u", "postgres", "--", PGBOUNCER, "-d", f"{d}/pgbouncer.ini"] if os.geteuid() == 0 else [PGBOUNCER, "-d", f"{d}/pgbouncer.ini"]
    subprocess.run(cmd, check=True)
    for _ in range(50):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    yield port
    with open(f"{d}/pgbouncer.pid") as f:
        os.kill(int(f.read().strip()), 15)


def test_transaction_pooling_never_leaks_identity(cluster, signer, documents, bouncer):
    errors = []
    backends = set()

    def client(i):
        try:
            # prepare_threshold=None: no server-side prepared statements through the pooler.
            conn = cluster.connect(user="app_user", port=bouncer)
            conn.prepare_threshold = None
            with conn:
                for n in range(60):
                    mode = (i + n) % 3
                    with conn.transaction():
                        if mode == 0:
                            conn.execute("SELECT set_config('auth.jwt', %s, true)", (signer.token(ALICE),))
                            want = 3
                        elif mode == 1:
                            conn.execute("SELECT set_config('auth.jwt', %s, true)", (signer.token(BOB, alg="EdDSA"),))
                            want = 2
                        else:
                            want = 0  # a client that sends no token must inherit nothing
                        got = conn.execute("SELECT count(*) FROM documents").fetchone()[0]
                        uid, pid = conn.execute("SELECT auth.uid()::text, pg_backend_pid()").fetchone()
                        backends.add(pid)
                    if got != want or (mode == 2 and uid is not None):
                        errors.append((i, n, mode, got, uid))
        except Exception as e:  # noqa: BLE001
            errors.append((i, repr(e)))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    # 12 clients really shared the 2 server connections: every transaction ran on one of them.
    assert 1 <= len(backends) <= 2, backends
