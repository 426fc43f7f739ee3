#!/usr/bin/env bash
# Builds a Debian package of the extension for the system PostgreSQL 15:
#   target/debian/postgresql-15-auth-ext_<version>_<arch>.deb
# holding auth_ext.so, the control file, the install script and the upgrade scripts, for DBAs
# who install with `dpkg -i` (no Rust toolchain on the database server). Prints the path.
set -euo pipefail
cd "$(dirname "$0")/.."
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
major=$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
version=$(sed -nE 's/^version = "([^"]+)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
name=postgresql-$major-auth-ext

cargo pgrx package --pg-config "$PG_CONFIG" >&2
staged=target/release/auth_ext-pg$major
root=target/debian/${name}_${version}_${arch}
rm -rf "$root" && mkdir -p "$root/DEBIAN"
cp -a "$staged/." "$root/"
# Only what the package must hold: the library and the extension files.
stray=$(find "$root" -path "$root/DEBIAN" -prune -o -type f -print \
          | grep -Ev '/(lib/auth_ext\.so|extension/auth_ext[^/]*)$' || true)
if [ -n "$stray" ]; then echo "unexpected files in the package: $stray" >&2; exit 1; fi
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<CONTROL
Package: $name
Version: $version
Architecture: $arch
Maintainer: auth_ext developers <auth-ext@localhost>
Depends: postgresql-$major, libc6, libgcc-s1
Installed-Size: $size
Section: database
Priority: optional
Homepage: https://localhost/auth_ext
Description: complete auth core inside PostgreSQL $major (auth_ext)
 JWT verification in SQL (JOSE algorithms, JWKS, rotation), Supabase-compatible
 auth.uid()/auth.jwt() helpers for row level security, argon2id credentials with
 lockout, role-claim sync, and token issuance with rotating refresh tokens.
 After installing: CREATE EXTENSION auth_ext; (superuser), or for an upgrade
 ALTER EXTENSION auth_ext UPDATE; in each database that has it.
CONTROL
dpkg-deb --root-owner-group --build "$root" "$root.deb" >&2
echo "$root.deb"
