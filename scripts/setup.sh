#!/usr/bin/env bash
# Installs everything auth_ext needs on a fresh Debian 12 machine. Idempotent: each step is
# skipped when its result is already present, so the demo, the tests and CI can all call it.
set -euo pipefail

PG_MAJOR=${PG_MAJOR:-15}
PG_CONFIG=/usr/lib/postgresql/$PG_MAJOR/bin/pg_config
PGRX_VERSION=0.18.0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# 1. Debian packages: server + headers for pgrx, clang for bindgen, cmake for aws-lc-rs,
#    sudo to run PostgreSQL as the postgres user, pgbouncer for the e2e tests.
apt_pkgs=(postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR postgresql-contrib
          pgbouncer libclang-dev clang cmake sudo
          build-essential pkg-config)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# The Debian package starts a cluster on 5432; our scripts start their own on free ports.

# 2. cargo-pgrx, pinned to the pgrx version in Cargo.toml. The Rust toolchain itself (built and
#    tested with 1.95) is a prerequisite, installed with rustup beforehand.
if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found; install a Rust toolchain (rustup; tested with 1.95) first" >&2
  exit 1
fi
if ! cargo pgrx --version 2>/dev/null | grep -q " $PGRX_VERSION"; then
  log "cargo install cargo-pgrx $PGRX_VERSION (about 3 minutes)"
  cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
fi

# 3. pgrx against the system PostgreSQL (no download: this machine has no general network).
pgrx_home=${PGRX_HOME:-$HOME/.pgrx}
if ! grep -qs "pg$PG_MAJOR = \"$PG_CONFIG\"" "$pgrx_home/config.toml"; then
  log "cargo pgrx init --pg$PG_MAJOR $PG_CONFIG"
  cargo pgrx init --pg$PG_MAJOR "$PG_CONFIG"
fi

# 4. Python packages for the independent signer / end-to-end clients.
if ! python3 -c 'import jwt, cryptography, psycopg, argon2, bcrypt, pytest, aiosmtpd, pyotp' 2>/dev/null; then
  log "pip install PyJWT cryptography psycopg argon2-cffi bcrypt pytest aiosmtpd pyotp"
  python3 -m pip --version >/dev/null 2>&1 || {
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-pip >/dev/null
  }
  pip_args=(-q --disable-pip-version-check --root-user-action=ignore
            'PyJWT[crypto]>=2.8' 'cryptography>=42' 'psycopg[binary]>=3.1' 'argon2-cffi>=23' 'bcrypt>=4' 'pytest>=7' 'aiosmtpd>=1.4' 'pyotp>=2.9')
  # Debian 12's system Python refuses pip without this flag (PEP 668); a pyenv one does not.
  python3 -m pip install "${pip_args[@]}" 2>/dev/null ||
    python3 -m pip install --break-system-packages "${pip_args[@]}"
fi

# 5. The extension is installed into the system PostgreSQL's directories, which are
#    root-owned; the postgres user must be able to read the build tree when pgrx runs tests.
log "ready: $(cargo pgrx --version), $($PG_CONFIG --version)"
