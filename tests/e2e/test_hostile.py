"""Hostile environments: nothing a caller sends may borrow the extension owner's privileges.

A threat model, executed (docs/security.md "Trust boundaries": "Nobody borrows the owner's privileges", "Clients see
codes, not internals"; docs/operations.md "Privileges").

What is at stake
----------------
auth_ext runs code with the privileges of the extension owner (here the bootstrap superuser):
  * the account lookup when a token is first bound (any helper: auth.uid() … auth.require_role(),
    auth.verify(token), auth.authenticate(token), set_config('auth.jwt', t, true) + a helper);
  * the key-set load (the helpers read auth.key_store as its owner);
  * the role-sync triggers on registered grant tables (they rewrite auth.users as its owner);
  * the SECURITY DEFINER functions sign_up, sign_in, refresh, sign_out, ensure_user, jwks;
  * the sql_drop event trigger (unregisters dropped grant tables);
  * the bookkeeping background worker (failed sign-ins, lockout, refresh-token reuse): a fresh
    session connected as the owner, which inherits `ALTER DATABASE … SET` settings.
If any of that resolves a name — a type in a cast (`$1::uuid`), a function (`now()`), an operator
(`=`), a relation — through a search_path the caller controls, a caller-planted object with that
name runs with superuser rights.

Attackers (all plain LOGIN roles, never superuser)
-------------------------------------------------
  temp     (a) only TEMP on the database. Plants in pg_temp, which PostgreSQL searches FIRST for
               types and relations unless pg_temp is listed explicitly: composite types named
               like the builtins (uuid, text, jsonb, bool, boolean, int4, integer, int8, bigint,
               timestamptz, interval, bytea, name, regclass, oid, …) with IMPLICIT casts from
               the pg_catalog type and from text whose cast functions record; temp views named
               like auth's tables (users, sessions, key_store, identities, refresh_tokens,
               audit_log, …) whose SELECT and INSTEAD OF triggers record.
  schema   (b) owns schema evil_schema and runs with `search_path = evil_schema, pg_catalog,
               public` (ALTER ROLE … SET, which any role may do for itself). Plants functions
               with the names and exact signatures of the builtins the extension's SQL uses
               (now, lower, make_interval, gen_random_uuid, date_part, jsonb_set, to_jsonb,
               unnest, hashtextextended, pg_advisory_xact_lock, sha256, encode, format_type,
               pg_event_trigger_dropped_objects, set_config, … ~220 overloads), aggregates
               (count(*), array_agg, jsonb_agg, string_agg, bool_or/and), operators (=, <>, <,
               >, <=, >=, ->, ->>, #>, #>>, ||, +, -, *, /, ?, @>, <@, ~~ … on uuid, text,
               jsonb, timestamptz, integers, bytea, interval, oid, arrays) and composite types
               + casts like (a). Every shadow records, then forwards to the builtin, so a
               query that picks it up still works: the only symptom is the record.
  dbowner  (c) owns the database hostile_db (the superuser ran CREATE EXTENSION there) and
               runs `ALTER DATABASE hostile_db SET search_path = evil_dbowner, pg_catalog,
               public`. Same functions/aggregates/operators as (b), and the types as DOMAINS
               over the builtins with a recording CHECK (transparent: casts keep working). Every
               new session inherits that search_path — including the bookkeeping worker.
  granter  (d) may only SELECT/INSERT/UPDATE/DELETE/TRUNCATE the registered grant table
               public.grants (`auth.enable_role_sync('grants', '=role')`). Owns schema
               evil_granter (functions/aggregates/operators, search_path via ALTER ROLE) and
               plants pg_temp DOMAINS over the builtins plus the temp views of (a).

Recording: every shadow calls `<schema>.__trip(what)`, SECURITY INVOKER, which RAISEs a WARNING
`AUTH_EXT_TRIPWIRE …` (lands in the server log even if the transaction rolls back, and from the
worker), INSERTs (current_user, session_user, what) into public.tripwire (PUBLIC may insert), and
— each in its own BEGIN … EXCEPTION block — tries `ALTER ROLE <attacker> SUPERUSER` and
`GRANT postgres TO <attacker>`. Run as the attacker these fail silently; run by extension code
that holds the owner's rights, the attacker becomes superuser.

Entry points × attackers (parametrized: the report is the matrix)
-----------------------------------------------------------------
helpers with a bound local token (user row + session: account lookup) and with an external
issuer's token; auth.verify(token); auth.authenticate(token); auth.verify(token, key);
auth.verify_jws; auth.sign_up; auth.sign_in success, failure (+ success after failures: the worker
records and resets) and lockout (worker); auth.refresh, and reuse of a rotated token (the worker
revokes the session); auth.sign_out; auth.ensure_user; auth.jwks(); hash_password /
verify_password / password_needs_rehash — each as all four attackers. Role sync by INSERT, UPDATE,
DELETE, TRUNCATE of a registered grant table (granter, dbowner); DROP TABLE of one's own table
(all four: must succeed for a non-superuser and trigger nothing); DROP of a registered grant table
by its non-superuser owner (schema, dbowner, granter).

Beyond names, the same promise against what else these callers control:
  * the owner of a registered grant table (schema, dbowner, granter) rebuilds it: turns it into a
    view calling its function (PostgreSQL 15: drop the sync triggers, VACUUM, CREATE RULE
    "_RETURN") — every later sync reads it as the extension owner; or retypes the role column to
    its own type whose cast to text records;
  * the database owner (dbowner) sets `default_transaction_read_only = on` or `role = <itself>`
    for its database: the worker inherits them and cannot record failed sign-ins or a reused
    refresh token — lockout and reuse detection must still hold (DESIGN §8 "Fail closed");
  * any caller (all four) sets `extra_float_digits` low: the account lookup must not read ban and
    session-timebox times through the caller's float output (rounded, a ban ends early and an
    ended session lives on).

Promised, and asserted after every scenario:
  1. no shadow ran: public.tripwire is empty AND the server log has no AUTH_EXT_TRIPWIRE line
     since the scenario began (so rolled-back and worker-side runs count too);
  2. the attacker's rolsuper/rolcreaterole/rolcreatedb/rolbypassrls/rolreplication are unchanged
     and it gained no role membership;
  3. the entry point still WORKS for the attacker (a scenario where everything errors would pass
     trivially; an error caused by a shadow being picked up is itself a finding).
Positive controls show that each attacker's shadows really are live in its sessions.

Also: client-visible errors (message, detail, hint, context) never carry a Rust backtrace or a
source path, also with RUST_BACKTRACE=1 in the server's environment (this module's cluster runs
with it), for errors raised by our code and PostgreSQL errors raised inside it (lock timeout).
"""
import contextlib
import dataclasses
import json
import os
import subprocess
import uuid

import jwt
import psycopg
import psycopg.sql
import pytest
from psycopg.types.json import Jsonb

from conftest import AUDIENCE, ISSUER, ROOT, Signer

PASSWORD = "long enough pw"
MARKER = "AUTH_EXT_TRIPWIRE"
# Settings the superuser gives each database: cheap argon2 for speed, and a rotated refresh
# token presented again is reuse at once (the worker path).
DB_SETTINGS = {
    "auth.argon2_memory_kib": "1024",
    "auth.argon2_iterations": "1",
    "auth.refresh_reuse_interval_seconds": "0",
    # Users sign in right after sign-up (email confirmation: test_passwordless.py).
    "auth.require_email_confirmation": "off",
}
SAFE = "-c search_path=pg_catalog,public -c role=none -c default_transaction_read_only=off"  # superuser connections
PLAIN = "hostile_plain"  # a LOGIN role without shadows


@dataclasses.dataclass(frozen=True)
class Attacker:
    kind: str
    role: str
    db: str
    schema: str | None  # own schema first in its search_path
    schema_types: str | None  # "composite" (+ casts) or "domain" shadows in that schema
    temp_types: str | None  # "composite" (+ casts) or "domain" shadows in pg_temp
    how: str


ATTACKERS = {
    a.kind: a
    for a in [
        Attacker("temp", "hostile_temp", "hostile", None, None, "composite",
                 "only TEMP: pg_temp types with casts, temp views named like auth's tables"),
        Attacker("schema", "hostile_schema", "hostile", "evil_schema", "composite", None,
                 "own schema first in search_path (ALTER ROLE): functions, operators, aggregates, types+casts"),
        Attacker("dbowner", "hostile_dbowner", "hostile_db", "evil_dbowner", "domain", None,
                 "non-superuser database owner: ALTER DATABASE SET search_path, inherited by the worker"),
        Attacker("granter", "hostile_granter", "hostile", "evil_granter", None, "domain",
                 "may only write the registered grant table; pg_temp domains + own schema first"),
    ]
}
KINDS = list(ATTACKERS)

# Builtins whose names the extension's SQL uses (grep src/*.rs sql/*.sql) or could plausibly use;
# every pg_catalog overload plpgsql can express is shadowed with its exact signature.
SHADOW_FUNCTIONS = """
    now clock_timestamp statement_timestamp transaction_timestamp timeofday to_timestamp
    date_part date_trunc make_interval age justify_interval
    lower upper length octet_length char_length btrim ltrim rtrim replace split_part strpos
    starts_with substr left right repeat regexp_replace regexp_match quote_ident quote_literal
    quote_nullable to_char
    gen_random_uuid random floor ceil round abs
    to_jsonb to_json jsonb_set jsonb_insert jsonb_typeof jsonb_array_elements
    jsonb_array_elements_text jsonb_array_length jsonb_each jsonb_each_text jsonb_object_keys
    jsonb_extract_path jsonb_extract_path_text jsonb_strip_nulls jsonb_exists jsonb_concat
    jsonb_object row_to_json array_to_json
    unnest array_length array_position array_remove array_append array_prepend array_cat
    array_to_string string_to_array cardinality array_upper array_lower
    hashtext hashtextextended pg_advisory_xact_lock pg_advisory_lock pg_advisory_unlock
    pg_try_advisory_xact_lock pg_try_advisory_lock pg_advisory_xact_lock_shared
    sha224 sha256 sha384 sha512 md5 encode decode convert_to convert_from
    format_type pg_event_trigger_dropped_objects set_config current_setting
    pg_notify txid_current pg_current_xact_id pg_backend_pid
    has_table_privilege has_schema_privilege pg_has_role to_regclass to_regtype
    to_regnamespace to_regrole pg_get_userbyid obj_description
    int4 int8 text bool uuid jsonb timestamptz
""".split()
SHADOW_OPERATORS = "= <> < > <= >= -> ->> #> #>> || + - * / ? ?| ?& @> <@ ~~ ~~* !~~ ~ !~".split()
OPERATOR_TYPES = ("uuid text jsonb json bool int2 int4 int8 float8 numeric timestamptz timestamp date "
                  "interval bytea name oid regclass _text _uuid _jsonb _int4 _int8 anyarray anyelement "
                  "anycompatible anycompatiblearray anynonarray").split()
# Type names the extension casts to (`::uuid`, `::text[]`, …) and their builtin aliases. SQL
# keywords (integer, boolean, bigint, interval…) always mean pg_catalog, but are planted too.
SHADOW_TYPES = ("uuid text jsonb json bool boolean int2 smallint int4 integer int int8 bigint float8 "
                "numeric timestamptz timestamp date interval bytea name regclass regtype regnamespace "
                "regrole oid varchar").split()

# --------------------------------------------------------------------------------------------
# Shadow builders (SQL text). Everything they create is fully qualified and pins its own
# search_path, so that planting never trips a shadow by itself.


def trip_sql(schema, role):
    return f"""
CREATE FUNCTION {schema}.__trip(what pg_catalog.text) RETURNS pg_catalog.bool
    LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $trip$
BEGIN
    RAISE WARNING '{MARKER} % | current_user=% session_user=%', what, current_user, session_user;
    BEGIN
        INSERT INTO public.tripwire (current_role_name, session_role_name, what)
        VALUES (current_user, session_user, what);
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
    BEGIN EXECUTE 'ALTER ROLE {role} SUPERUSER'; EXCEPTION WHEN OTHERS THEN NULL; END;
    BEGIN EXECUTE 'GRANT postgres TO {role}'; EXCEPTION WHEN OTHERS THEN NULL; END;
    RETURN true;
END $trip$;
"""


def functions_sql(schema):
    """Every pg_catalog overload of SHADOW_FUNCTIONS that plpgsql can take and return, same
    name, argument names, defaults and VARIADIC: identical signatures earlier in the path win."""
    return r"""
DO $gen$
DECLARE
    s text := '@S@';
    r record;
    inargs text[];
    call text;
    body text;
BEGIN
    FOR r IN
        SELECT p.proname, p.proretset, p.prorettype, p.provariadic, p.pronargs,
               pg_catalog.pg_get_function_arguments(p.oid) AS args,
               pg_catalog.pg_get_function_result(p.oid) AS res,
               pg_catalog.pg_get_function_identity_arguments(p.oid) AS ident,
               coalesce('o' = ANY (p.proargmodes), false) AS has_out
          FROM pg_catalog.pg_proc p
         WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.prokind = 'f'
           AND p.proname = ANY (string_to_array('@NAMES@', ' '))
           AND NOT EXISTS (SELECT 1 FROM unnest(coalesce(p.proallargtypes, p.proargtypes::oid[]) || p.prorettype) t(oid)
                            WHERE t.oid IN ('"any"'::regtype, 'internal'::regtype, 'cstring'::regtype,
                                            'trigger'::regtype, 'event_trigger'::regtype, 'anyenum'::regtype,
                                            'anyrange'::regtype, 'anymultirange'::regtype,
                                            'anycompatiblerange'::regtype, 'anycompatiblemultirange'::regtype,
                                            'language_handler'::regtype, 'fdw_handler'::regtype,
                                            'table_am_handler'::regtype, 'index_am_handler'::regtype,
                                            'tsm_handler'::regtype))
           AND NOT (p.prorettype = 'record'::regtype AND NOT coalesce('o' = ANY (p.proargmodes), false))
    LOOP
        CONTINUE WHEN r.has_out AND NOT r.proretset;
        SELECT array_agg(CASE WHEN i = r.pronargs AND r.provariadic <> 0 THEN 'VARIADIC $' || i ELSE '$' || i END ORDER BY i)
          INTO inargs FROM generate_series(1, r.pronargs) i;
        call := format('pg_catalog.%I(%s)', r.proname, array_to_string(coalesce(inargs, '{}'), ', '));
        body := format('BEGIN PERFORM %I.__trip(%L); ', s, format('function %s(%s)', r.proname, r.ident));
        IF r.proretset THEN
            body := body || format('RETURN QUERY SELECT * FROM %s; RETURN; END', call);
        ELSIF r.prorettype = 'void'::regtype THEN
            body := body || format('PERFORM %s; RETURN; END', call);
        ELSE
            body := body || format('RETURN %s; END', call);
        END IF;
        EXECUTE format('CREATE FUNCTION %I.%I(%s) RETURNS %s LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS %L',
                       s, r.proname, r.args, r.res, body);
    END LOOP;
END
$gen$;
""".replace("@S@", schema).replace("@NAMES@", " ".join(SHADOW_FUNCTIONS))


def operators_sql(schema):
    """Every pg_catalog binary operator named in SHADOW_OPERATORS over OPERATOR_TYPES."""
    return r"""
DO $gen$
DECLARE
    s text := '@S@';
    r record;
    n int := 0;
BEGIN
    FOR r IN
        SELECT o.oprname, pg_catalog.format_type(o.oprleft, NULL) AS l,
               pg_catalog.format_type(o.oprright, NULL) AS rt, pg_catalog.format_type(o.oprresult, NULL) AS res
          FROM pg_catalog.pg_operator o
         WHERE o.oprnamespace = 'pg_catalog'::regnamespace AND o.oprkind = 'b'
           AND o.oprname = ANY (string_to_array('@OPS@', ' '))
           AND o.oprleft = ANY (string_to_array('@TYPES@', ' ')::regtype[]::oid[])
           AND o.oprright = ANY (string_to_array('@TYPES@', ' ')::regtype[]::oid[])
           AND o.oprresult <> 'internal'::regtype
    LOOP
        n := n + 1;
        EXECUTE format('CREATE FUNCTION %I.%I(%s, %s) RETURNS %s LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS %L',
                       s, '__op_' || n, r.l, r.rt, r.res,
                       format('BEGIN PERFORM %I.__trip(%L); RETURN $1 OPERATOR(pg_catalog.%s) $2; END',
                              s, format('operator %s %s %s', r.l, r.oprname, r.rt), r.oprname));
        EXECUTE format('CREATE OPERATOR %I.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = %I.%I)',
                       s, r.oprname, r.l, r.rt, s, '__op_' || n);
    END LOOP;
END
$gen$;
""".replace("@S@", schema).replace("@OPS@", " ".join(SHADOW_OPERATORS)).replace("@TYPES@", " ".join(OPERATOR_TYPES))


def aggregates_sql(schema):
    """Aggregates, and all-text overloads of the VARIADIC "any" builtins (plpgsql cannot take
    "any"; an all-text call picks the text[] overload, which has more exact matches)."""
    def fn(name, args, ret, what, body):
        return (f"CREATE FUNCTION {schema}.{name}({args}) RETURNS {ret} LANGUAGE plpgsql VOLATILE "
                f"SET search_path = pg_catalog, pg_temp AS $b$BEGIN PERFORM {schema}.__trip('{what}'); {body} END$b$;\n")
    sql = fn("__agg_append", "anyarray, anynonarray", "anyarray", "aggregate array_agg(anynonarray)",
             "RETURN pg_catalog.array_append($1, $2);")
    sql += f"CREATE AGGREGATE {schema}.array_agg(anynonarray) (SFUNC = {schema}.__agg_append, STYPE = anyarray);\n"
    sql += fn("__agg_jsonb", "pg_catalog.jsonb, anyelement", "pg_catalog.jsonb", "aggregate jsonb_agg(anyelement)",
              "RETURN coalesce($1, '[]'::pg_catalog.jsonb) OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_array($2);")
    sql += f"CREATE AGGREGATE {schema}.jsonb_agg(anyelement) (SFUNC = {schema}.__agg_jsonb, STYPE = pg_catalog.jsonb);\n"
    sql += fn("__agg_string", "pg_catalog.text, pg_catalog.text, pg_catalog.text", "pg_catalog.text",
              "aggregate string_agg(text, text)",
              "RETURN CASE WHEN $1 IS NULL THEN $2 ELSE $1 OPERATOR(pg_catalog.||) $3 OPERATOR(pg_catalog.||) $2 END;")
    sql += f"CREATE AGGREGATE {schema}.string_agg(pg_catalog.text, pg_catalog.text) (SFUNC = {schema}.__agg_string, STYPE = pg_catalog.text);\n"
    sql += fn("__agg_count", "pg_catalog.int8", "pg_catalog.int8", "aggregate count(*)", "RETURN $1 OPERATOR(pg_catalog.+) 1;")
    sql += f"CREATE AGGREGATE {schema}.count(*) (SFUNC = {schema}.__agg_count, STYPE = pg_catalog.int8, INITCOND = '0');\n"
    sql += fn("__agg_or", "pg_catalog.bool, pg_catalog.bool", "pg_catalog.bool", "aggregate bool_or(boolean)", "RETURN $1 OR $2;")
    sql += f"CREATE AGGREGATE {schema}.bool_or(pg_catalog.bool) (SFUNC = {schema}.__agg_or, STYPE = pg_catalog.bool);\n"
    sql += fn("__agg_and", "pg_catalog.bool, pg_catalog.bool", "pg_catalog.bool", "aggregate bool_and(boolean)",
              "RETURN coalesce($1, true) AND $2;")
    sql += f"CREATE AGGREGATE {schema}.bool_and(pg_catalog.bool) (SFUNC = {schema}.__agg_and, STYPE = pg_catalog.bool);\n"
    sql += fn("__agg_max", "anyelement, anyelement", "anyelement", "aggregate max", "RETURN GREATEST($1, $2);")
    sql += fn("__agg_min", "anyelement, anyelement", "anyelement", "aggregate min", "RETURN LEAST($1, $2);")
    for t in ["pg_catalog.text", "pg_catalog.int4", "pg_catalog.int8", "pg_catalog.timestamptz", "pg_catalog.numeric"]:
        sql += f"CREATE AGGREGATE {schema}.max({t}) (SFUNC = {schema}.__agg_max, STYPE = {t});\n"
        sql += f"CREATE AGGREGATE {schema}.min({t}) (SFUNC = {schema}.__agg_min, STYPE = {t});\n"
    sql += fn("jsonb_build_object", "VARIADIC pg_catalog.text[]", "pg_catalog.jsonb", "function jsonb_build_object(VARIADIC text[])",
              "RETURN pg_catalog.jsonb_object($1);")
    sql += fn("jsonb_build_array", "VARIADIC pg_catalog.text[]", "pg_catalog.jsonb", "function jsonb_build_array(VARIADIC text[])",
              "RETURN pg_catalog.to_jsonb($1);")
    sql += fn("format", "pg_catalog.text, VARIADIC pg_catalog.text[]", "pg_catalog.text", "function format(text, VARIADIC text[])",
              "RETURN pg_catalog.format($1, VARIADIC $2);")
    sql += fn("concat", "VARIADIC pg_catalog.text[]", "pg_catalog.text", "function concat(VARIADIC text[])",
              "RETURN pg_catalog.array_to_string($1, '');")
    sql += fn("concat_ws", "pg_catalog.text, VARIADIC pg_catalog.text[]", "pg_catalog.text", "function concat_ws(text, VARIADIC text[])",
              "RETURN pg_catalog.array_to_string($2, $1);")
    return sql


def types_sql(schema, flavor, builtin):
    """Types named like the builtins. composite: `(v <builtin>)` with IMPLICIT casts from the
    builtin and from text whose functions record (a cast picks them up; what follows may then
    fail: also a finding). domain: over the builtin with a recording CHECK (casts keep working)."""
    sql = ""
    for i, name in enumerate(SHADOW_TYPES):
        base = f"pg_catalog.{builtin[name]}"
        t = f'{schema}."{name}"'
        if flavor == "domain":
            sql += f"CREATE DOMAIN {t} AS {base} CHECK ({schema}.__trip('type {schema}.{name} (domain over {base})'));\n"
            continue
        sql += f"CREATE TYPE {t} AS (v {base});\n"
        sources = [base] + ([] if base == "pg_catalog.text" else ["pg_catalog.text"])
        for j, src in enumerate(sources):
            f = f"{schema}.__cast_{i}_{j}"
            sql += (f"CREATE FUNCTION {f}({src}) RETURNS {t} LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp "
                    f"AS $b$BEGIN PERFORM {schema}.__trip('cast {src} -> {schema}.{name}'); RETURN ROW($1::{base})::{t}; END$b$;\n"
                    f"CREATE CAST ({src} AS {t}) WITH FUNCTION {f}({src}) AS IMPLICIT;\n")
    return sql


def temp_views_sql(columns):
    """Temp views named like auth's tables (same columns), recording reads and writes."""
    sql = ("CREATE FUNCTION pg_temp.__trip_dml() RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp "
           "AS $b$BEGIN PERFORM pg_temp.__trip('relation pg_temp.' || TG_TABLE_NAME || ' ' || TG_OP); RETURN NULL; END$b$;\n")
    for rel, cols in columns.items():
        select = ", ".join(f"NULL::{typ} AS {json.dumps(col)}" for col, typ in cols)
        sql += (f'CREATE TEMP VIEW "{rel}" AS SELECT {select} WHERE NOT pg_temp.__trip(\'relation pg_temp.{rel} read\');\n'
                f'CREATE TRIGGER trip INSTEAD OF INSERT OR UPDATE OR DELETE ON pg_temp."{rel}" '
                f"FOR EACH ROW EXECUTE FUNCTION pg_temp.__trip_dml();\n")
    return sql


# --------------------------------------------------------------------------------------------
# The world: a cluster of our own (RUST_BACKTRACE=1 in the server's environment), two databases,
# four attackers with their shadows planted.

ERRORS_SEEN = []  # (scenario, psycopg error) of every error an attacker got, for the leak check


class World:
    def __init__(self, directory, port):
        self.dir, self.port = directory, port
        self.log = f"{directory}/server.log"
        self.signer = Signer()
        self.builtin = {}
        self.temp_sql = {}
        self.planted = {}

    def connect(self, user="postgres", dbname="postgres", autocommit=False, options=None):
        kw = {"options": options} if options else {}
        return psycopg.connect(host="127.0.0.1", port=self.port, dbname=dbname, user=user,
                               autocommit=autocommit, connect_timeout=10, **kw)

    def admin(self, db):
        """A superuser connection whose search_path no database setting can change."""
        return self.connect(dbname=db, autocommit=True, options=SAFE)

    def attacker(self, kind):
        a = ATTACKERS[kind]
        conn = self.connect(user=a.role, dbname=a.db)
        if a.temp_types:
            conn.execute(self.temp_sql[kind])
            conn.commit()
        return conn

    def log_offset(self):
        return os.path.getsize(self.log)

    def log_since(self, offset):
        with open(self.log, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")

    # -- setup ---------------------------------------------------------------------------------

    def setup(self):
        with self.connect(autocommit=True) as c:
            for a in ATTACKERS.values():
                c.execute(f"CREATE ROLE {a.role} LOGIN")
            c.execute(f"CREATE ROLE {PLAIN} LOGIN")  # no shadows: the error-leak checks
            c.execute("CREATE DATABASE hostile")
            c.execute("CREATE DATABASE hostile_db OWNER hostile_dbowner")
        for db in ("hostile", "hostile_db"):
            with self.admin(db) as c:
                c.execute("CREATE EXTENSION auth_ext")
                for k, v in DB_SETTINGS.items():
                    c.execute(f"ALTER DATABASE {db} SET {k} = {v}")
                c.execute("SELECT auth.generate_signing_key('ES256')")
                c.execute("SELECT auth.add_key(%s, %s, ARRAY[%s])", (Jsonb(self.signer.public_jwk("ES256")), ISSUER, AUDIENCE))
                c.execute("""
                    CREATE TABLE public.tripwire (
                        id serial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp(),
                        current_role_name name, session_role_name name, what text);
                    GRANT INSERT ON public.tripwire TO PUBLIC;
                    GRANT USAGE ON SEQUENCE public.tripwire_id_seq TO PUBLIC;
                    CREATE TABLE public.grants (user_id uuid, role text);
                """)
                c.execute("SELECT auth.enable_role_sync('public.grants', '=role')")
                writer = "hostile_granter" if db == "hostile" else "hostile_dbowner"
                c.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON public.grants TO {writer}, {PLAIN}")
            with self.admin(db) as c:
                self.builtin = {n: c.execute("SELECT typname FROM pg_type WHERE oid = to_regtype(%s)", (n,)).fetchone()[0]
                                for n in SHADOW_TYPES}
                columns = {}
                for rel, col, typ in c.execute("""
                        SELECT c.relname, a.attname, quote_ident(tn.nspname) || '.' || quote_ident(t.typname)
                          FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                          JOIN pg_type t ON t.oid = a.atttypid JOIN pg_namespace tn ON tn.oid = t.typnamespace
                         WHERE c.relnamespace = 'auth'::regnamespace AND c.relkind IN ('r', 'v', 'p')
                         ORDER BY c.relname, a.attnum"""):
                    columns.setdefault(rel, []).append((col, typ))
        with self.admin("hostile") as c:
            c.execute("CREATE SCHEMA evil_schema AUTHORIZATION hostile_schema")
            c.execute("CREATE SCHEMA evil_granter AUTHORIZATION hostile_granter")
            c.execute(f"CREATE SCHEMA plain_own AUTHORIZATION {PLAIN}")
        for kind, a in ATTACKERS.items():
            with self.connect(user=a.role, dbname=a.db, autocommit=True, options="-c search_path=pg_catalog") as c:
                if a.schema:
                    if kind == "dbowner":
                        c.execute(f"CREATE SCHEMA {a.schema}")
                    c.execute(trip_sql(a.schema, a.role))
                    c.execute(functions_sql(a.schema))
                    c.execute(aggregates_sql(a.schema))
                    c.execute(operators_sql(a.schema))
                    if a.schema_types:
                        c.execute(types_sql(a.schema, a.schema_types, self.builtin))
                    self.planted[kind] = c.execute(
                        """SELECT (SELECT count(*) FROM pg_proc WHERE pronamespace = %s::regnamespace AND prokind = 'f' AND proname NOT LIKE '\\_\\_%%'),
                                  (SELECT count(*) FROM pg_proc WHERE pronamespace = %s::regnamespace AND prokind = 'a'),
                                  (SELECT count(*) FROM pg_operator WHERE oprnamespace = %s::regnamespace),
                                  (SELECT count(*) FROM pg_type WHERE typnamespace = %s::regnamespace AND typtype IN ('c', 'd')),
                                  (SELECT count(*) FROM pg_cast WHERE casttarget IN (SELECT oid FROM pg_type WHERE typnamespace = %s::regnamespace))""",
                        (a.schema,) * 5).fetchone()
                if kind == "schema":
                    c.execute("ALTER ROLE hostile_schema SET search_path = evil_schema, pg_catalog, public")
                elif kind == "granter":
                    c.execute("ALTER ROLE hostile_granter SET search_path = evil_granter, pg_catalog, public")
                elif kind == "dbowner":
                    c.execute("ALTER DATABASE hostile_db SET search_path = evil_dbowner, pg_catalog, public")
            if a.temp_types:
                self.temp_sql[kind] = (trip_sql("pg_temp", a.role) + temp_views_sql(columns)
                                       + types_sql("pg_temp", a.temp_types, self.builtin))

    # -- superuser helpers (never through a hostile search_path) ------------------------------

    def account(self, db, roles=()):
        email = f"h{uuid.uuid4().hex[:12]}@example.test"
        with self.admin(db) as c:
            uid = c.execute("SELECT auth.sign_up(%s, %s)", (email, PASSWORD)).fetchone()[0]
            if roles:
                c.execute("UPDATE auth.users SET raw_app_meta_data = raw_app_meta_data || %s WHERE id = %s",
                          (Jsonb({"roles": sorted(roles)}), uid))
        return Account(email, str(uid))

    def issue(self, db, acct):
        with self.admin(db) as c:
            return c.execute("SELECT auth.sign_in(%s, %s)", (acct.email, PASSWORD)).fetchone()[0]

    def roles_of(self, db, uid):
        with self.admin(db) as c:
            return c.execute("SELECT coalesce(raw_app_meta_data -> 'roles', '[]') FROM auth.users WHERE id = %s",
                             (uid,)).fetchone()[0]

    def one(self, db, sql, params=()):
        with self.admin(db) as c:
            row = c.execute(sql, params).fetchone()
            return row[0] if row else None

    def external_user(self, db, roles=()):
        """An external IdP's user, already linked (ensure_user by the superuser), whose row
        carries roles the token does not: seeing them proves the account lookup ran."""
        sub = str(uuid.uuid4())
        token = self.signer.token(sub=sub, email=f"{sub[:8]}@idp.example")
        with self.admin(db) as c:
            with c.transaction():
                c.execute("SELECT set_config('auth.jwt', %s, true)", (token,))
                assert str(c.execute("SELECT auth.ensure_user()").fetchone()[0]) == sub
            if roles:
                c.execute("UPDATE auth.users SET raw_app_meta_data = raw_app_meta_data || %s WHERE id = %s",
                          (Jsonb({"roles": sorted(roles)}), sub))
        return sub, token

    # -- the verdict ---------------------------------------------------------------------------

    def privileges(self, role):
        with self.connect(autocommit=True, options=SAFE) as c:
            attrs = c.execute("SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolreplication FROM pg_roles WHERE rolname = %s",
                              (role,)).fetchone()
            members = {r for (r,) in c.execute(
                "SELECT roleid::regrole::text FROM pg_auth_members WHERE member = %s::regrole", (role,))}
        return attrs, members

    def verdict(self, a, offset, before):
        """What ran and what was gained since `offset`; undoes any escalation."""
        findings = []
        with self.admin(a.db) as c:
            rows = c.execute("SELECT current_role_name, session_role_name, what FROM public.tripwire ORDER BY id").fetchall()
            c.execute("TRUNCATE public.tripwire")
        for cu, su, what in rows:
            findings.append(f"tripwire row: {what!r} ran as current_user={cu} (session_user={su})")
        lines = [ln for ln in self.log_since(offset).splitlines() if MARKER in ln]
        for ln in dict.fromkeys(ln.split("WARNING:", 1)[-1].strip() for ln in lines):
            findings.append(f"server log: {ln}")
        after = self.privileges(a.role)
        if after != before:
            findings.append(f"{a.role} privileges changed: (super, createrole, createdb, bypassrls, replication, "
                            f"memberships) {before} -> {after}")
            with self.connect(autocommit=True, options=SAFE) as c:
                c.execute(f"ALTER ROLE {a.role} NOSUPERUSER NOCREATEROLE NOCREATEDB NOBYPASSRLS NOREPLICATION")
                for r in after[1] - before[1]:
                    c.execute(f"REVOKE {r} FROM {a.role}")
        return findings


@dataclasses.dataclass(frozen=True)
class Account:
    email: str
    id: str


@pytest.fixture(scope="module")
def world():
    directory = f"/tmp/auth_ext_hostile_{os.getpid()}"
    env = dict(os.environ, RUST_BACKTRACE="1")
    script = str(ROOT / "scripts/cluster.sh")
    port = int(subprocess.run([script, "start", directory], check=True, capture_output=True, text=True, env=env).stdout.strip())
    try:
        w = World(directory, port)
        w.setup()
        yield w
    finally:
        subprocess.run([script, "stop", directory], check=False, capture_output=True, text=True)


@contextlib.contextmanager
def watched(world, kind, scenario):
    """Runs a scenario in a fresh session of attacker `kind` (pg_temp shadows planted), then
    fails it if any shadow ran (even in a rolled-back transaction or in the worker) or the
    attacker gained a privilege."""
    a = ATTACKERS[kind]
    with world.admin(a.db) as c:
        c.execute("TRUNCATE public.tripwire")
    before = world.privileges(a.role)
    offset = world.log_offset()
    conn = world.attacker(kind)
    try:
        yield Session(conn, f"{scenario}[{kind}]")
    finally:
        conn.close()
        findings = world.verdict(a, offset, before)
        if findings:
            raise AssertionError(f"{scenario} as {kind} ({a.how}): the owner's code ran attacker objects:\n  "
                                 + "\n  ".join(findings))


class Session:
    """The attacker's connection. Its own SQL is fully qualified (pg_catalog.set_config,
    OPERATOR(pg_catalog.=), typed parameters), so only the extension can pick a shadow up."""

    def __init__(self, conn, label):
        self.conn, self.label = conn, label

    def run(self, sql, params=()):
        """One statement in its own transaction; returns the first row."""
        try:
            cur = self.conn.execute(sql, params)
            row = cur.fetchone() if cur.description else None
            self.conn.commit()
            return row
        except psycopg.Error as e:
            ERRORS_SEEN.append((self.label, e))
            self.conn.rollback()
            raise

    def bound(self, token, sql, params=()):
        """One request: bind `token` for a transaction, run `sql`, commit."""
        try:
            with self.conn.transaction():
                self.conn.execute("SELECT pg_catalog.set_config('auth.jwt', %s, true)", (token,))
                return self.conn.execute(sql, params).fetchone()
        except psycopg.Error as e:
            ERRORS_SEEN.append((self.label, e))
            raise

    def error(self, sql, params=(), token=None):
        """The '<sqlstate> <CODE>' of the error `sql` must raise."""
        try:
            if token is None:
                self.run(sql, params)
            else:
                self.bound(token, sql, params)
        except psycopg.Error as e:
            return f"{e.sqlstate} {(e.diag.message_primary or '').split(':')[0]}"
        return "ok"


# --------------------------------------------------------------------------------------------
# Entry points. Each drives one path as the attacker and asserts it still works.


def ep_helpers_local_token(w, a, s):
    """set_config + every helper with a token we issued (user row + session: account lookup)."""
    acct = w.account(a.db, roles=["hostile-reader"])
    tok = w.issue(a.db, acct)["access_token"]
    row = s.bound(tok, "SELECT auth.uid(), auth.user_id(), auth.role(), auth.email(), auth.jwt(), "
                       "auth.claim('app_metadata.provider'), auth.roles(), auth.has_role('hostile-reader'), "
                       "auth.has_role('hostile-writer'), auth.require_role('hostile-reader')")
    uid, user_id, role, email, claims, provider, roles, reader, writer, _ = row
    assert (str(uid), user_id, role, email) == (acct.id, acct.id, "authenticated", acct.email)
    assert claims["sub"] == acct.id and claims["session_id"] and provider == "email"
    assert roles == ["hostile-reader"] and reader is True and writer is False
    assert s.error("SELECT auth.require_role('hostile-writer')", token=tok) == "42501 INSUFFICIENT_PERMISSIONS"


def ep_helpers_external_token(w, a, s):
    """Every helper with an external issuer's token (PyJWT), linked user: identity lookup."""
    sub, tok = w.external_user(a.db, roles=["hostile-ext"])
    uid, user_id, email, roles, has = s.bound(tok, "SELECT auth.uid(), auth.user_id(), auth.email(), auth.roles(), "
                                                   "auth.has_role('hostile-ext')")
    assert (str(uid), user_id, email) == (sub, sub, f"{sub[:8]}@idp.example")
    assert roles == ["hostile-ext"] and has is True, "roles come from the user row: the lookup ran"


def ep_verify(w, a, s):
    acct = w.account(a.db)
    tok = w.issue(a.db, acct)["access_token"]
    assert s.run("SELECT auth.verify(%s)", (tok,))[0]["sub"] == acct.id
    sub, ext = w.external_user(a.db)
    assert s.run("SELECT auth.verify(%s)", (ext,))[0]["sub"] == sub


def ep_authenticate(w, a, s):
    acct = w.account(a.db)
    tok = w.issue(a.db, acct)["access_token"]
    with s.conn.transaction():
        claims = s.conn.execute("SELECT auth.authenticate(%s)", (tok,)).fetchone()[0]
        uid = s.conn.execute("SELECT auth.uid()").fetchone()[0]
    assert claims["sub"] == acct.id and str(uid) == acct.id


def ep_verify_with_key(w, a, s):
    sub = str(uuid.uuid4())
    claims = s.run("SELECT auth.verify(%s, %s)", (w.signer.token(sub=sub), Jsonb(w.signer.public_jwk("ES256"))))[0]
    assert claims["sub"] == sub


def ep_verify_jws(w, a, s):
    sub = str(uuid.uuid4())
    payload = s.run("SELECT auth.verify_jws(%s, %s)", (w.signer.token(sub=sub), Jsonb({"keys": [w.signer.public_jwk("ES256")]})))[0]
    assert json.loads(bytes(payload))["sub"] == sub


def ep_sign_up(w, a, s):
    email = f"up{uuid.uuid4().hex[:10]}@example.test"
    uid = str(s.run("SELECT auth.sign_up(%s, %s)", (email, PASSWORD))[0])
    assert w.one(a.db, "SELECT count(*) FROM auth.identities WHERE user_id = %s AND provider = 'email'", (uid,)) == 1
    assert s.error("SELECT auth.sign_up(%s, %s)", (email.upper(), PASSWORD)) == "22023 INVALID_PARAMETER"


def ep_sign_in_success(w, a, s):
    acct = w.account(a.db)
    r = s.run("SELECT auth.sign_in(%s, %s)", (acct.email.upper(), PASSWORD))[0]
    assert r["user"]["id"] == acct.id and len(r["refresh_token"]) == 43
    assert w.one(a.db, "SELECT auth.verify(%s) ->> 'sub'", (r["access_token"],)) == acct.id


def failed_count(w, db, email):
    return w.one(db, "SELECT failed_count FROM auth.failed_sign_ins "
                     "WHERE email_hash = encode(sha256(convert_to(lower(%s), 'UTF8')), 'hex')", (email,)) or 0


def ep_sign_in_failure(w, a, s):
    """A failure is reserved by the bookkeeping worker before it is judged (recorded although
    the call rolls back); a success after it gives back only its own reservation."""
    acct = w.account(a.db)
    assert s.error("SELECT auth.sign_in(%s, %s)", (acct.email, "wrong password")) == "28P01 INVALID_CREDENTIALS"
    assert failed_count(w, a.db, acct.email) == 1, "the worker committed the failure"
    assert w.one(a.db, "SELECT count(*) FROM auth.audit_log WHERE user_id = %s AND event = 'sign_in_failed'", (acct.id,)) == 1
    assert s.run("SELECT auth.sign_in(%s, %s)", (acct.email, PASSWORD))[0]["user"]["id"] == acct.id
    assert failed_count(w, a.db, acct.email) == 1, "the success gave back only its own attempt"


def ep_sign_in_lockout(w, a, s):
    acct = w.account(a.db)
    for _ in range(5):
        assert s.error("SELECT auth.sign_in(%s, %s)", (acct.email, "wrong password")) == "28P01 INVALID_CREDENTIALS"
    assert s.error("SELECT auth.sign_in(%s, %s)", (acct.email, PASSWORD)) == "28000 ACCOUNT_LOCKED"
    assert w.one(a.db, "SELECT locked_until > now() FROM auth.failed_sign_ins "
                       "WHERE email_hash = encode(sha256(convert_to(lower(%s), 'UTF8')), 'hex')", (acct.email,)) is True
    events = w.one(a.db, "SELECT array_agg(DISTINCT event ORDER BY event) FROM auth.audit_log WHERE user_id = %s", (acct.id,))
    assert "account_locked" in events and "sign_in_failed" in events


def ep_refresh(w, a, s):
    acct = w.account(a.db)
    r = w.issue(a.db, acct)
    r2 = s.run("SELECT auth.refresh(%s)", (r["refresh_token"],))[0]
    assert r2["user"]["id"] == acct.id and r2["refresh_token"] != r["refresh_token"]
    assert w.one(a.db, "SELECT auth.verify(%s) ->> 'sub'", (r2["access_token"],)) == acct.id


def ep_refresh_reuse(w, a, s):
    """A rotated refresh token presented again (reuse interval 0): the worker revokes the session."""
    acct = w.account(a.db)
    r = w.issue(a.db, acct)
    w.one(a.db, "SELECT auth.refresh(%s) ->> 'refresh_token'", (r["refresh_token"],))
    assert s.error("SELECT auth.refresh(%s)", (r["refresh_token"],)) == "28000 TOKEN_REVOKED"
    session = jwt.decode(r["access_token"], options={"verify_signature": False})["session_id"]
    assert w.one(a.db, "SELECT revoked_reason FROM auth.sessions WHERE id = %s", (session,)) == "refresh_token_reused"


def ep_sign_out(w, a, s):
    acct = w.account(a.db)
    r = w.issue(a.db, acct)
    assert s.bound(r["access_token"], "SELECT auth.sign_out('local')")[0] == 1
    session = jwt.decode(r["access_token"], options={"verify_signature": False})["session_id"]
    assert w.one(a.db, "SELECT revoked_at IS NOT NULL FROM auth.sessions WHERE id = %s", (session,)) is True


def ep_ensure_user(w, a, s):
    sub = f"user_{uuid.uuid4().hex[:12]}"  # a Clerk-style id, first seen now
    tok = w.signer.token(sub=sub, email=f"{sub}@idp.example", user_metadata={"name": "x"})
    uid = s.bound(tok, "SELECT auth.ensure_user()")[0]
    assert uid is not None and s.bound(tok, "SELECT auth.ensure_user()")[0] == uid
    assert str(w.one(a.db, "SELECT user_id FROM auth.identities WHERE provider = %s AND provider_id = %s", (ISSUER, sub))) == str(uid)


def ep_jwks(w, a, s):
    keys = s.run("SELECT auth.jwks()")[0]["keys"]
    assert keys and all("kid" in k and "d" not in k for k in keys)
    tok = w.issue(a.db, w.account(a.db))["access_token"]
    assert jwt.get_unverified_header(tok)["kid"] in {k["kid"] for k in keys}


def ep_passwords(w, a, s):
    h = s.run("SELECT auth.hash_password(%s)", ("pässwörd ✓",))[0]
    assert h.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    assert s.run("SELECT auth.verify_password(%s, %s), auth.verify_password(%s, %s), auth.password_needs_rehash(%s)",
                 ("pässwörd ✓", h, "password", h, h)) == (True, False, False)
    assert s.error("SELECT auth.verify_password('x', 'not a hash')") == "22023 INVALID_PARAMETER"


def ep_role_sync_insert(w, a, s):
    acct = w.account(a.db)
    s.run("INSERT INTO public.grants (user_id, role) VALUES (%s, %s)", (uuid.UUID(acct.id), "hostile-editor"))
    assert w.roles_of(a.db, acct.id) == ["hostile-editor"]


def ep_role_sync_update(w, a, s):
    acct = w.account(a.db)
    w.one(a.db, "INSERT INTO public.grants (user_id, role) VALUES (%s, 'hostile-editor') RETURNING 1", (acct.id,))
    assert w.roles_of(a.db, acct.id) == ["hostile-editor"]
    s.run("UPDATE public.grants SET role = %s WHERE user_id OPERATOR(pg_catalog.=) %s", ("hostile-author", uuid.UUID(acct.id)))
    assert w.roles_of(a.db, acct.id) == ["hostile-author"]


def ep_role_sync_delete(w, a, s):
    acct = w.account(a.db)
    w.one(a.db, "INSERT INTO public.grants (user_id, role) VALUES (%s, 'hostile-editor') RETURNING 1", (acct.id,))
    s.run("DELETE FROM public.grants WHERE user_id OPERATOR(pg_catalog.=) %s", (uuid.UUID(acct.id),))
    assert w.roles_of(a.db, acct.id) == []


def ep_role_sync_truncate(w, a, s):
    acct = w.account(a.db)
    w.one(a.db, "INSERT INTO public.grants (user_id, role) VALUES (%s, 'hostile-editor') RETURNING 1", (acct.id,))
    s.run("TRUNCATE public.grants")
    assert w.roles_of(a.db, acct.id) == []


def ep_drop_own_table(w, a, s):
    """Every non-superuser DROP TABLE must work with the extension installed (sql_drop trigger)."""
    table = "pg_temp.hostile_scratch" if a.schema is None else f"{a.schema}.hostile_scratch"
    create = "CREATE TEMP TABLE hostile_scratch" if a.schema is None else f"CREATE TABLE {table}"
    s.run(f"{create} (id pg_catalog.int4)")
    s.run(f"DROP TABLE {table}")
    assert s.run("SELECT pg_catalog.to_regclass(%s) IS NULL", (table,))[0] is True


def ep_drop_registered_grant_table(w, a, s):
    """The (non-superuser) owner of a registered grant table drops it: unregistered, roles gone."""
    acct = w.account(a.db)
    table, oid, _ = owned_grant_table(w, a)
    with w.admin(a.db) as c:
        c.execute(f"INSERT INTO {table} VALUES (%s, 'hostile-owned')", (acct.id,))
    assert w.roles_of(a.db, acct.id) == ["hostile-owned"]
    s.run(f"DROP TABLE {table}")
    assert w.one(a.db, "SELECT count(*) FROM auth.role_sync_sources WHERE grant_table::oid = %s", (oid,)) == 0
    assert w.roles_of(a.db, acct.id) == []


# -- what the owner of a registered grant table can do to it ----------------------------------


def owned_grant_table(w, a):
    """A grant table in the attacker's schema, owned by the attacker, registered by the superuser."""
    table = f"{a.schema}.owned_{uuid.uuid4().hex[:8]}"
    with w.admin(a.db) as c:
        c.execute(f"CREATE TABLE {table} (user_id uuid, role text)")
        c.execute(f"ALTER TABLE {table} OWNER TO {a.role}")
        c.execute("SELECT auth.enable_role_sync(%s, '=role')", (table,))
        oid = c.execute("SELECT %s::regclass::oid", (table,)).fetchone()[0]
        triggers = [t for (t,) in c.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = %s AND NOT tgisinternal", (oid,))]
    return table, oid, triggers


def unregister(w, a, table, oid):
    """Superuser cleanup: unregister first (no resync reads it again), then drop."""
    with w.admin(a.db) as c:
        c.execute("DELETE FROM auth.role_sync_sources WHERE grant_table::oid = %s", (oid,))
        kind = c.execute("SELECT relkind FROM pg_class WHERE oid = %s", (oid,)).fetchone()
        if kind:
            c.execute(f"DROP {'VIEW' if kind[0] == 'v' else 'TABLE'} {table}")


def ep_grant_table_becomes_view(w, a, s):
    """PostgreSQL 15 still turns an empty table without triggers into a view (CREATE RULE
    "_RETURN"). The table's owner drops the sync triggers, VACUUMs (clears relhastriggers) and
    makes its registered grant table a view that calls its function; then any role sync — its
    own auth.sign_up syncs the new user — reads every registered source as the owner. Either the
    sync skips/refuses such a source (22023) or works; the function must not run."""
    table, oid, triggers = owned_grant_table(w, a)
    try:
        for t in triggers:
            s.run(f'DROP TRIGGER "{t}" ON {table}')
        s.conn.autocommit = True
        s.conn.execute(f"VACUUM {table}")
        s.conn.autocommit = False
        s.run(f"""CREATE RULE "_RETURN" AS ON SELECT TO {table} DO INSTEAD
                  SELECT v.id AS user_id, v.r AS role
                    FROM (VALUES (pg_catalog.gen_random_uuid(), pg_catalog.random()::pg_catalog.text)) v(id, r)
                   WHERE {a.schema}.__trip('relation {table}: a registered grant table turned into a view by its owner')""")
        email = f"v{uuid.uuid4().hex[:10]}@example.test"
        try:
            assert s.run("SELECT auth.sign_up(%s, %s)", (email, PASSWORD))[0] is not None
        except psycopg.Error as e:
            assert e.sqlstate == "22023", f"sign_up failed with {e.sqlstate}: {e}"
    finally:
        unregister(w, a, table, oid)


def ep_grant_column_retyped(w, a, s):
    """The owner of a registered grant table retypes the role column to its own composite type
    whose cast to text records: a sync that casts the column would run that cast as the owner."""
    table, oid, _ = owned_grant_table(w, a)
    acct = w.account(a.db)
    t = f"{a.schema}.sneaky_{uuid.uuid4().hex[:8]}"
    try:
        s.run(f"CREATE TYPE {t} AS (v pg_catalog.text)")
        s.run(f"CREATE FUNCTION {t}_text({t}) RETURNS pg_catalog.text LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp "
              f"AS $b$BEGIN PERFORM {a.schema}.__trip('cast {t} -> text: a grant column retyped by its owner'); RETURN ($1).v; END$b$")
        s.run(f"CREATE CAST ({t} AS pg_catalog.text) WITH FUNCTION {t}_text({t}) AS IMPLICIT")
        s.run(f"ALTER TABLE {table} ALTER COLUMN role TYPE {t} USING ROW(role)::{t}")
        try:
            s.run(f"INSERT INTO {table} (user_id, role) VALUES (%s, ROW(%s::pg_catalog.text)::{t})",
                  (uuid.UUID(acct.id), "hostile-sneaky"))
        except psycopg.Error as e:
            assert e.sqlstate == "22023", f"the insert failed with {e.sqlstate}: {e}"
    finally:
        unregister(w, a, table, oid)


# -- what a database owner's ALTER DATABASE … SET does to the bookkeeping worker ----------------


def with_db_setting(s, a, setting, action):
    """Runs `action` while the database has `setting` (set by the attacker, its owner); the
    attacker's own session was opened before, so only new sessions (the worker's) inherit it."""
    name = setting.split("=")[0].strip()
    s.run(f"ALTER DATABASE {a.db} SET {setting}")
    try:
        return action()
    finally:
        s.run(f"ALTER DATABASE {a.db} RESET {name}")


def lockout_under(setting):
    def ep(w, a, s):
        acct = w.account(a.db)

        def attempts():
            failures = [s.error("SELECT auth.sign_in(%s, %s)", (acct.email, "wrong password")) for _ in range(5)]
            return failures, s.error("SELECT auth.sign_in(%s, %s)", (acct.email, PASSWORD))

        failures, final = with_db_setting(s, a, setting, attempts)
        assert all(f != "ok" for f in failures), failures
        assert final != "ok", (f"with `ALTER DATABASE … SET {setting}` the worker recorded none of 5 failed sign-ins "
                               f"({failures}) and the right password then signed in: lockout bypassed (DESIGN §8 fail closed)")
    ep.__doc__ = f"Lockout holds although the database owner set {setting} (the worker inherits it)."
    ep.__name__ = "ep_lockout_with_db_" + setting.split("=")[0].strip()
    return ep


def ep_reuse_detection_with_db_read_only(w, a, s):
    """Refresh-token reuse must end the session although the worker inherits a read-only database."""
    acct = w.account(a.db)
    r = w.issue(a.db, acct)
    r2 = w.one(a.db, "SELECT auth.refresh(%s)", (r["refresh_token"],))
    reuse = with_db_setting(s, a, "default_transaction_read_only = on",
                            lambda: s.error("SELECT auth.refresh(%s)", (r["refresh_token"],)))
    assert reuse != "ok"
    assert s.error("SELECT auth.refresh(%s)", (r2["refresh_token"],)) == "28000 TOKEN_REVOKED", \
        "after reuse was detected, the successor chain still refreshes: the revocation was never recorded"


# -- what a caller's own settings do to the owner's account lookup ----------------------------


def precision_that_moves(t, beyond):
    """The float precision p (extra_float_digits = p - 15) that prints epoch `t` past `beyond`."""
    for p in range(9, 0, -1):
        v = float(f"{t:.{p}g}")
        if (beyond > t and v > beyond) or (beyond < t and v < beyond):
            return p
    pytest.skip(f"no float precision moves {t} past {beyond}")


def ep_timebox_with_low_float_precision(w, a, s):
    """A session whose timebox (not_after) passed is TOKEN_REVOKED, whatever extra_float_digits
    the caller set (the lookup must not round times through the caller's float output)."""
    acct = w.account(a.db)
    r = w.issue(a.db, acct)
    sid = jwt.decode(r["access_token"], options={"verify_signature": False})["session_id"]
    with w.admin(a.db) as c:
        t, now = c.execute("UPDATE auth.sessions SET not_after = now() - interval '1 minute' WHERE id = %s "
                           "RETURNING date_part('epoch', not_after), date_part('epoch', now())", (sid,)).fetchone()
    p = precision_that_moves(t, now + 120)
    s.run(f"SET extra_float_digits = {p - 15}")
    assert s.error("SELECT auth.uid()", token=r["access_token"]) == "28000 TOKEN_REVOKED", \
        f"with extra_float_digits = {p - 15} the ended session's token still authenticates"


def ep_ban_with_low_float_precision(w, a, s):
    """A banned user's token is TOKEN_REVOKED, whatever extra_float_digits the caller set."""
    acct = w.account(a.db)
    r = w.issue(a.db, acct)
    with w.admin(a.db) as c:
        t, now = c.execute("UPDATE auth.users SET banned_until = now() + interval '1 hour' WHERE id = %s "
                           "RETURNING date_part('epoch', banned_until), date_part('epoch', now())", (acct.id,)).fetchone()
    p = precision_that_moves(t, now - 120)
    s.run(f"SET extra_float_digits = {p - 15}")
    assert s.error("SELECT auth.uid()", token=r["access_token"]) == "28000 TOKEN_REVOKED", \
        f"with extra_float_digits = {p - 15} the banned user's token still authenticates"


ALL = tuple(KINDS)
ENTRY_POINTS = [
    (ep_helpers_local_token, ALL),
    (ep_helpers_external_token, ALL),
    (ep_verify, ALL),
    (ep_authenticate, ALL),
    (ep_verify_with_key, ALL),
    (ep_verify_jws, ALL),
    (ep_sign_up, ALL),
    (ep_sign_in_success, ALL),
    (ep_sign_in_failure, ALL),
    (ep_sign_in_lockout, ALL),
    (ep_refresh, ALL),
    (ep_refresh_reuse, ALL),
    (ep_sign_out, ALL),
    (ep_ensure_user, ALL),
    (ep_jwks, ALL),
    (ep_passwords, ALL),
    (ep_role_sync_insert, ("granter", "dbowner")),
    (ep_role_sync_update, ("granter", "dbowner")),
    (ep_role_sync_delete, ("granter", "dbowner")),
    (ep_role_sync_truncate, ("granter", "dbowner")),
    (ep_drop_own_table, ALL),
    (ep_drop_registered_grant_table, ("schema", "dbowner", "granter")),
    (ep_grant_table_becomes_view, ("schema", "dbowner", "granter")),
    (ep_grant_column_retyped, ("schema", "dbowner", "granter")),
    (lockout_under("default_transaction_read_only = on"), ("dbowner",)),
    (lockout_under("role = hostile_dbowner"), ("dbowner",)),
    (ep_reuse_detection_with_db_read_only, ("dbowner",)),
    (ep_timebox_with_low_float_precision, ALL),
    (ep_ban_with_low_float_precision, ALL),
]
MATRIX = [(fn, kind) for fn, kinds in ENTRY_POINTS for kind in kinds]
SCENARIOS = len(MATRIX)


def test_threat_matrix(world):
    """The matrix this module runs (print with -s), and that each attacker's shadows are live:
    positive controls, so that 'nothing ran' below means something."""
    width = max(len(fn.__name__) for fn, _ in ENTRY_POINTS) - 3
    lines = [f"{'entry point':<{width}} " + " ".join(f"{k:>8}" for k in KINDS)]
    for fn, kinds in ENTRY_POINTS:
        lines.append(f"{fn.__name__[3:]:<{width}} " + " ".join(f"{'x' if k in kinds else '-':>8}" for k in KINDS))
    print(f"\n{SCENARIOS} scenarios (entry point x attacker):\n" + "\n".join(lines))
    print("planted per schema (functions, aggregates, operators, types, casts):", world.planted)
    for kind in KINDS:
        assert sum(k == kind for _, k in MATRIX) >= 17, kind
    controls = {
        # each statement resolves unqualified names through the attacker's own path
        "temp": "SELECT pg_catalog.gen_random_uuid()::uuid, 'x'::pg_catalog.text::text",
        "schema": "SELECT now(), lower('X'), pg_catalog.gen_random_uuid()::uuid, 1 + 1, 'a' = 'a'",
        "dbowner": "SELECT now(), '{}'::jsonb, pg_catalog.gen_random_uuid() = pg_catalog.gen_random_uuid()",
        "granter": "SELECT now(), '{}'::jsonb, pg_catalog.gen_random_uuid()::uuid",
    }
    for kind, sql in controls.items():
        a = ATTACKERS[kind]
        with world.attacker(kind) as conn:
            conn.execute(sql)
            conn.commit()
        with world.admin(a.db) as c:
            ran = c.execute("SELECT DISTINCT current_role_name::text FROM public.tripwire").fetchall()
            c.execute("TRUNCATE public.tripwire")
        assert ran == [(a.role,)], f"{kind}: the shadows must be live in the attacker's own session"
    # The database setting reaches every new session of hostile_db (and so the worker's)…
    with world.connect(user=PLAIN, dbname="hostile_db", autocommit=True) as c:
        assert c.execute("SHOW search_path").fetchone()[0].startswith("evil_dbowner")
    # …and what the verdict sees when a superuser session takes it (what the worker is): the
    # shadow ran as superuser and made the attacker one (undone by the verdict).
    a = ATTACKERS["dbowner"]
    before, offset = world.privileges(a.role), world.log_offset()
    with world.connect(dbname="hostile_db", autocommit=True) as c:
        c.execute("SELECT now()")
    findings = world.verdict(a, offset, before)
    assert any("current_user=postgres" in f for f in findings) and any("privileges changed" in f for f in findings), findings
    assert world.privileges(a.role) == before


@pytest.mark.parametrize("entry,kind", MATRIX, ids=[f"{fn.__name__[3:]}-{k}" for fn, k in MATRIX])
def test_hostile(world, entry, kind):
    with watched(world, kind, entry.__name__[3:]) as s:
        entry(world, ATTACKERS[kind], s)


# --------------------------------------------------------------------------------------------
# Clients see codes, not internals.

LEAKS = ["src/", ".rs:", "backtrace", "panicked", "/root/", ".cargo/", "rustc/"]


def leaks(e):
    """Fields of a client-visible error that carry a backtrace or a source path (the protocol's
    file field may name a file, as PostgreSQL's own 'postgres.c' does, but not a path)."""
    d = e.diag
    fields = {"message": d.message_primary, "detail": d.message_detail, "hint": d.message_hint, "context": d.context}
    found = {k: v for k, v in fields.items() if v and any(m in v for m in LEAKS)}
    if d.source_file and "/" in d.source_file:
        found["file"] = d.source_file
    return found


def _lock_timeout_in_refresh(w, s):
    """A PostgreSQL error raised inside the extension's own SPI call (lock timeout)."""
    r = w.issue("hostile", w.account("hostile"))
    session = jwt.decode(r["access_token"], options={"verify_signature": False})["session_id"]
    with w.admin("hostile") as holder:
        with holder.transaction():
            assert holder.execute("SELECT count(*) FROM (SELECT 1 FROM auth.refresh_tokens WHERE session_id = %s FOR UPDATE) x",
                                  (session,)).fetchone()[0] == 1
            s.conn.execute("SET lock_timeout = '200ms'")
            s.conn.commit()
            return s.error("SELECT auth.refresh(%s)", (r["refresh_token"],))


def _lock_timeout_in_role_sync(w, s):
    """A PostgreSQL error inside the role-sync trigger (the user row is locked elsewhere)."""
    acct = w.account("hostile")
    with w.admin("hostile") as holder:
        with holder.transaction():
            holder.execute("SELECT 1 FROM auth.users WHERE id = %s FOR UPDATE", (acct.id,))
            s.conn.execute("SET lock_timeout = '200ms'")
            s.conn.commit()
            return s.error("INSERT INTO public.grants (user_id, role) VALUES (%s, 'x')", (uuid.UUID(acct.id),))


def _unregistered_trigger(w, s):
    """A table owner attaches the sync trigger to its own table to grant itself admin."""
    s.run("CREATE TABLE plain_own.mine (user_id pg_catalog.uuid)")
    s.run("CREATE TRIGGER t AFTER INSERT ON plain_own.mine FOR EACH ROW EXECUTE FUNCTION auth.sync_role_claim('admin')")
    return s.error("INSERT INTO plain_own.mine VALUES (%s)", (uuid.uuid4(),))


ERROR_CASES = {
    "malformed token": (lambda w, s: s.error("SELECT auth.verify('not.a.token')"), "28000 INVALID_TOKEN"),
    "bad bound token": (lambda w, s: s.error("SELECT auth.uid()", token="x.y.z"), "28000 INVALID_TOKEN"),
    "forged signature": (lambda w, s: s.error("SELECT auth.verify(%s)", (Signer().token(),)), "28000 INVALID_TOKEN"),
    "bad jwk": (lambda w, s: s.error("SELECT auth.verify(%s, %s)", (w.signer.token(), Jsonb({"kty": "oct"}))), "22023 INVALID_PARAMETER"),
    "bad hash": (lambda w, s: s.error("SELECT auth.verify_password('x', '$argon2id$v=19$garbage')"), "22023 INVALID_PARAMETER"),
    "short password": (lambda w, s: s.error("SELECT auth.sign_up('short@example.test', 'x')"), "22023 INVALID_PARAMETER"),
    "unknown email": (lambda w, s: s.error("SELECT auth.sign_in('nobody@example.test', 'whatever pw')"), "28P01 INVALID_CREDENTIALS"),
    "unknown refresh token": (lambda w, s: s.error("SELECT auth.refresh('nope')"), "28000 INVALID_TOKEN"),
    "sign_out anonymous": (lambda w, s: s.error("SELECT auth.sign_out()"), "28000 INVALID_TOKEN"),
    "require_role": (lambda w, s: s.error("SELECT auth.require_role('admin')", token=w.signer.token()), "42501 INSUFFICIENT_PERMISSIONS"),
    "owner-only function": (lambda w, s: s.error("SELECT auth.sign('{}')"), "42501 permission denied for function sign"),
    "unregistered grant trigger": (_unregistered_trigger, "42501 INSUFFICIENT_PERMISSIONS"),
    "lock timeout inside refresh": (_lock_timeout_in_refresh, "55P03 canceling statement due to lock timeout"),
    "lock timeout inside role sync": (_lock_timeout_in_role_sync, "55P03 canceling statement due to lock timeout"),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_client_errors_carry_no_internals(world, case):
    fn, expected = ERROR_CASES[case]
    conn = world.connect(user=PLAIN, dbname="hostile")
    try:
        s = Session(conn, f"errors:{case}")
        n = len(ERRORS_SEEN)
        assert fn(world, s) == expected
        got = [e for _, e in ERRORS_SEEN[n:]]
    finally:
        conn.close()
    assert got, "the case raised an error"
    for e in got:
        assert not leaks(e), f"{case}: {e.sqlstate} leaks internals to the client: {leaks(e)}"


def test_errors_caught_in_sql_carry_no_internals(world):
    """An error raised through the extension's Rust frames is readable in SQL before any log
    hook sees it (PL/pgSQL's GET STACKED DIAGNOSTICS): it too carries no backtrace or path."""
    w = world
    r = w.issue("hostile", w.account("hostile"))
    session = jwt.decode(r["access_token"], options={"verify_signature": False})["session_id"]
    conn = w.connect(user=PLAIN, dbname="hostile")
    heard = []
    conn.add_notice_handler(lambda d: heard.append(d.message_primary or ""))
    block = psycopg.sql.SQL("""DO $do$ DECLARE m text; d text; h text; c text; BEGIN
        PERFORM auth.refresh({});
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS m = MESSAGE_TEXT, d = PG_EXCEPTION_DETAIL, h = PG_EXCEPTION_HINT,
                                c = PG_EXCEPTION_CONTEXT;
        RAISE NOTICE 'caught: % | % | % | %', m, d, h, c;
    END $do$""").format(psycopg.sql.Literal(r["refresh_token"]))
    try:
        with w.admin("hostile") as holder:
            with holder.transaction():
                holder.execute("SELECT 1 FROM auth.refresh_tokens WHERE session_id = %s FOR UPDATE", (session,))
                conn.execute("SET lock_timeout = '200ms'")
                conn.execute(block)
                conn.rollback()
    finally:
        conn.close()
    caught = [h for h in heard if h.startswith("caught: ")]
    assert caught and "lock timeout" in caught[0], heard
    assert not any(m in caught[0] for m in LEAKS), caught[0]


def test_errors_met_by_attackers_carry_no_internals(world):
    """Every error the attackers met in the matrix above (runs last)."""
    bad = [(label, e.sqlstate, leaks(e)) for label, e in ERRORS_SEEN if leaks(e)]
    assert not bad, bad
