#!/usr/bin/env bash
# In-place upgrade test: the released 0.1.0, built from its commit, installed into a private copy
# of the system PostgreSQL 15 and filled with users, keys, sessions, grant tables and audit rows;
# then this tree's build is installed over it (as a DBA would install a new package) and
# `ALTER EXTENSION auth_ext UPDATE` runs. tests/upgrade/run.py checks that nothing was lost,
# that every function works on the old data, and that the upgraded schema equals a fresh
# install's (tests/upgrade/catalog.sql). Called by scripts/test.sh; idempotent (builds are kept
# under target/upgrade/).
set -euo pipefail
cd "$(dirname "$0")/.."
OLD_VERSION=0.1.0
OLD_COMMIT=c473a4b4dbe844914c40222171c1e7475eda42fa   # the 0.1.0 release
SYSTEM_BIN=/usr/lib/postgresql/15/bin
work=$PWD/target/upgrade
copy=$work/pg
log() { printf '\033[1m[upgrade]\033[0m %s\n' "$*"; }

# Both versions install into this copy, never into the system PostgreSQL (relocatable: its
# pg_config answers paths under the copy).
if [ ! -x "$copy/usr/lib/postgresql/15/bin/postgres" ]; then
  log "copying PostgreSQL 15 to $copy"
  rm -rf "$copy"
  mkdir -p "$copy/usr/lib/postgresql" "$copy/usr/share/postgresql" "$copy/usr/include/postgresql"
  cp -a /usr/lib/postgresql/15 "$copy/usr/lib/postgresql/"
  cp -a /usr/share/postgresql/15 "$copy/usr/share/postgresql/"
  cp -a /usr/include/postgresql/15 "$copy/usr/include/postgresql/"
fi
PG_CONFIG=$copy/usr/lib/postgresql/15/bin/pg_config
# Start from the copy's pristine extension directory: no file of an earlier run stays behind.
rm -f "$copy"/usr/share/postgresql/15/extension/auth_ext* "$copy"/usr/lib/postgresql/15/lib/auth_ext.so

old_src=$work/src-$OLD_VERSION
if [ ! -f "$old_src/.complete" ]; then
  log "exporting $OLD_VERSION ($OLD_COMMIT)"
  rm -rf "$old_src" && mkdir -p "$old_src"
  git archive "$OLD_COMMIT" | tar -x -C "$old_src"
  touch "$old_src/.complete"
fi
# Each version is built and installed into the copy in turn, and its files kept aside: run.py
# starts with the old ones installed and puts the new ones over them.
ext_dir=$copy/usr/share/postgresql/15/extension
lib_dir=$copy/usr/lib/postgresql/15/lib
keep() { rm -rf "$1" && mkdir -p "$1" && mv "$ext_dir"/auth_ext* "$lib_dir"/auth_ext.so "$1/"; }
log "building $OLD_VERSION"
(cd "$old_src" && CARGO_TARGET_DIR=$work/target-$OLD_VERSION \
   cargo pgrx install --pg-config "$PG_CONFIG" >"$work/install-$OLD_VERSION.log" 2>&1) \
  || { tail -30 "$work/install-$OLD_VERSION.log"; exit 1; }
keep "$work/files-$OLD_VERSION"
log "building this tree"
cargo pgrx install --pg-config "$PG_CONFIG" >"$work/install-new.log" 2>&1 \
  || { tail -30 "$work/install-new.log"; exit 1; }
keep "$work/files-new"
cp "$work/files-$OLD_VERSION"/auth_ext.so "$lib_dir/"
cp "$work/files-$OLD_VERSION"/auth_ext.control "$work/files-$OLD_VERSION"/auth_ext--*.sql "$ext_dir/"

PG_BIN=$copy/usr/lib/postgresql/15/bin python3 tests/upgrade/run.py \
  --old-version "$OLD_VERSION" --new-files "$work/files-new" \
  --extension-dir "$ext_dir" --lib-dir "$lib_dir"
