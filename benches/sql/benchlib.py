"""What the SQL benchmarks share: a throwaway cluster and a timer."""
import contextlib
import os
import pathlib
import statistics
import subprocess
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
PG_BIN = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")  # as scripts/cluster.sh
# Steady plans for scans: no parallel workers or JIT to make one variant luckier than another.
SCAN_CONF = ("shared_buffers = 512MB", "max_parallel_workers_per_gather = 0", "jit = off")


@contextlib.contextmanager
def throwaway_cluster(name, *conf):
    """Starts a cluster (scripts/cluster.sh) and yields (port, dir); stops it afterwards."""
    d = f"/tmp/auth_ext_{name}_{os.getpid()}"
    # The benchmarks sign users in right after sign-up: no email confirmation step.
    conf = ("auth.require_email_confirmation = off", *conf)
    port = subprocess.run([str(ROOT / "scripts/cluster.sh"), "start", d, *conf],
                          check=True, capture_output=True, text=True).stdout.strip()
    try:
        yield int(port), d
    finally:
        subprocess.run([str(ROOT / "scripts/cluster.sh"), "stop", d], check=True)


def median_ms(fn, runs):
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return statistics.median(out)
