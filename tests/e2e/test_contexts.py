"""Issue "Nothing a caller sends may crash the server", end to end.

The identity helpers (auth.uid(), auth.user_id(), auth.role(), auth.email(), auth.jwt(),
auth.claim(path), auth.roles(), auth.has_role(role), auth.require_role(role)) must answer with
the bound identity in every place SQL allows an expression, and no statement a LOGIN role can
send may crash the server. Before the fix, a planner support function turned helper calls with
constant arguments into an initPlan output Param; PL/pgSQL evaluates "simple" expressions
without running initPlans, so `x := auth.uid()` in any PL/pgSQL code (DO blocks, functions,
trigger functions, policies calling them) dereferenced a missing parameter array: SIGSEGV, and
the postmaster restarted every connection.

Every context below is one parametrized case, run twice as the non-superuser app_user: with a
token bound by `SELECT set_config('auth.jwt', %s, true)` in the transaction (user A: sub,
role, email, app_metadata.roles = [editor, admin], app_metadata.tenant) and anonymously (NULL,
false, '{}'). Contexts that change the token use a second user B (roles [viewer]).

Each case opens its own connections: a crashing backend takes every other connection down with
it (crash restart), and the next case reconnects once the server accepts connections again. A
failing case quotes the server log lines written while it ran. The last two tests cover the
whole module: no crash line in the server log since the module started, and a connection
opened at the start is still served by the same backend.
"""
import dataclasses
import json
import os
import re
import time
import uuid
from typing import Optional

import psycopg
import pytest

A_UID = "5f0c2b8e-6a1d-4c3e-9b7a-1d2e3f4a5b6c"
B_UID = "a3b4c5d6-e7f8-4a9b-8c0d-1e2f3a4b5c6d"
C_UID = "0c0c0c0c-1d1d-4e2e-8f3f-404040404040"  # owns rows, never has a token
OWNER = {"A": A_UID, "B": B_UID, "C": C_UID}

# ctx.docs (no RLS) and ctx.rls_docs (RLS): id, owner, title, required_role
DOCS = [(1, "A", "a1", "editor"), (2, "A", "a2", "admin"), (3, "A", "a3", "viewer"),
        (4, "B", "b1", "editor"), (5, "B", "b2", None), (6, "C", "c1", "nobody")]

BIG_ROWS = 100_000
BIG_TAGS = ["editor", "admin", "viewer", "x"]  # tag of row g: BIG_TAGS[g % 4]


def big_owner(g):
    return "A" if g % 10 < 3 else "B" if g % 10 < 5 else "C"


# The lines the module-level check looks for, and what a failing case quotes.
CRASH = re.compile(r"terminated by signal|server process|was terminated|PANIC|TRAP")
CRASH_CONTEXT = re.compile(r"Failed process was running|terminating connection because of crash")

# Every helper at once, as one text value (a NULL from has_role/roles would drop a field).
PROBE = ("concat_ws('|', coalesce(auth.uid()::text, '-'), coalesce(auth.user_id(), '-'), "
         "coalesce(auth.role(), '-'), coalesce(auth.email(), '-'), auth.has_role('editor')::text, "
         "coalesce(auth.claim('app_metadata.tenant')::text, '-'), coalesce(auth.jwt() ->> 'sub', '-'), "
         "auth.roles()::text)")


@dataclasses.dataclass(frozen=True)
class Who:
    name: str
    uid: Optional[str] = None
    email: Optional[str] = None
    tenant: Optional[str] = None
    roles: tuple = ()  # sorted, as auth.roles() returns them
    role: Optional[str] = None
    token: Optional[str] = None

    @property
    def anon(self):
        return self.token is None

    @property
    def editor(self):
        return "editor" in self.roles

    def has(self, role):  # auth.has_role is STRICT
        return None if role is None else role in self.roles

    def probe(self):
        return "|".join([self.uid or "-", self.uid or "-", self.role or "-", self.email or "-",
                         str(self.editor).lower(), json.dumps(self.tenant) if self.tenant else "-",
                         self.uid or "-", "{" + ",".join(self.roles) + "}"])

    def own(self):
        """ids of ctx.docs / ctx.rls_docs rows owned by this identity"""
        return [i for i, o, _, _ in DOCS if OWNER[o] == self.uid]

    def own_titles(self):
        return [t for _, o, t, _ in DOCS if OWNER[o] == self.uid]

    def big_count(self, editor_tags=False):
        return sum(1 for g in range(1, BIG_ROWS + 1)
                   if OWNER[big_owner(g)] == self.uid and (not editor_tags or self.has(BIG_TAGS[g % 4])))

    def u(self):
        """auth.uid()::text, or 'anon' where the SQL says coalesce(…, 'anon')"""
        return self.uid or "anon"

    def b(self):
        return str(self.editor).lower()


@dataclasses.dataclass(frozen=True)
class Err:
    sqlstate: str


def norm(v):
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, (list, tuple)):
        return type(v)(norm(x) for x in v)
    if isinstance(v, dict):
        return {k: norm(x) for k, x in v.items()}
    return v


def same(got, want, what):
    assert got == want, f"{what}:\n  got  {got!r}\n  want {want!r}"


# --------------------------------------------------------------------------------------------
# PL/pgSQL functions, one case each: (name, parameters, returns, attributes, body, call, expect)
# `call` is the SELECT list calling ctx.plp_case_<name> as {f}; expect(who) is the value or an Err.
# --------------------------------------------------------------------------------------------
PLPGSQL = [
    ("issue_assign", "", "uuid", "", "DECLARE x uuid; BEGIN x := auth.uid(); RETURN x; END",
     "{f}()", lambda w: w.uid),
    ("return_uid", "", "uuid", "", "BEGIN RETURN auth.uid(); END", "{f}()", lambda w: w.uid),
    ("declare_default", "", "uuid", "", "DECLARE x uuid := auth.uid(); BEGIN RETURN x; END",
     "{f}()", lambda w: w.uid),
    ("if_is_null", "", "text", "",
     "BEGIN IF auth.uid() IS NULL THEN RETURN 'anon'; ELSE RETURN 'user'; END IF; END",
     "{f}()", lambda w: "anon" if w.anon else "user"),
    ("elsif_has_role", "", "text", "",
     "BEGIN IF auth.has_role('nope') THEN RETURN 'nope'; ELSIF auth.has_role('editor') THEN RETURN 'editor'; "
     "ELSE RETURN 'none'; END IF; END", "{f}()", lambda w: "editor" if w.editor else "none"),
    ("has_role", "", "boolean", "", "BEGIN RETURN auth.has_role('admin'); END", "{f}()",
     lambda w: w.has("admin")),
    ("has_role_missing", "", "boolean", "", "BEGIN RETURN auth.has_role('nope'); END", "{f}()",
     lambda w: False),
    ("has_role_parameter", "p text", "boolean", "", "BEGIN RETURN auth.has_role(p); END",
     "{f}('editor')", lambda w: w.editor),
    ("claim", "", "jsonb", "", "BEGIN RETURN auth.claim('app_metadata.tenant'); END", "{f}()",
     lambda w: w.tenant),
    ("claim_parameter", "p text", "jsonb", "", "BEGIN RETURN auth.claim(p); END", "{f}('email')",
     lambda w: w.email),
    ("jwt", "", "jsonb", "", "BEGIN RETURN auth.jwt(); END", "{f}() ->> 'sub'", lambda w: w.uid),
    ("jwt_path", "", "text", "", "BEGIN RETURN auth.jwt() -> 'app_metadata' ->> 'tenant'; END",
     "{f}()", lambda w: w.tenant),
    ("roles", "", "text[]", "", "BEGIN RETURN auth.roles(); END", "{f}()", lambda w: list(w.roles)),
    ("text_helpers", "", "text", "", "BEGIN RETURN concat_ws('|', auth.user_id(), auth.role(), auth.email()); END",
     "{f}()", lambda w: "|".join(x for x in (w.uid, w.role, w.email) if x)),
    ("case_coalesce", "", "text", "",
     "BEGIN RETURN CASE WHEN auth.has_role('editor') THEN 'editor:' ELSE 'plain:' END "
     "|| coalesce(auth.uid()::text, 'anon'); END", "{f}()",
     lambda w: ("editor:" if w.editor else "plain:") + w.u()),
    ("case_statement", "", "text", "",
     "BEGIN CASE auth.role() WHEN 'authenticated' THEN RETURN 'authenticated'; "
     "ELSE RETURN coalesce(auth.role(), 'no role'); END CASE; END", "{f}()",
     lambda w: w.role or "no role"),
    ("probe", "", "text", "", "BEGIN RETURN @PROBE@; END", "{f}()", lambda w: w.probe()),
    ("perform_require_role", "", "boolean", "", "BEGIN PERFORM auth.require_role('editor'); RETURN true; END",
     "{f}()", lambda w: True if w.editor else Err("42501")),
    ("require_role_handled", "", "text", "",
     "BEGIN BEGIN PERFORM auth.require_role('editor'); RETURN 'allowed'; "
     "EXCEPTION WHEN insufficient_privilege THEN RETURN 'denied:' || coalesce(auth.uid()::text, 'anon'); END; END",
     "{f}()", lambda w: "allowed" if w.editor else "denied:" + w.u()),
    ("raise_using", "", "text", "",
     "BEGIN RAISE EXCEPTION USING MESSAGE = coalesce(auth.uid()::text, 'anon'), DETAIL = auth.has_role('editor')::text; "
     "EXCEPTION WHEN raise_exception THEN RETURN SQLERRM; END", "{f}()", lambda w: w.u()),
    ("raise_notice", "", "boolean", "",
     "BEGIN RAISE NOTICE 'uid=% editor=% roles=%', auth.uid(), auth.has_role('editor'), auth.roles(); RETURN true; END",
     "{f}()", lambda w: True),
    ("assert", "", "boolean", "",
     "BEGIN ASSERT (auth.uid() IS NULL) = (auth.jwt() IS NULL), 'uid and jwt disagree'; "
     "ASSERT auth.has_role('editor') IS NOT NULL, 'has_role returned NULL'; RETURN auth.uid() IS NOT NULL; END",
     "{f}()", lambda w: not w.anon),
    ("while_loop", "", "int", "",
     "DECLARE n int := 0; BEGIN WHILE n < 3 AND auth.uid() IS NOT NULL LOOP n := n + 1; END LOOP; RETURN n; END",
     "{f}()", lambda w: 0 if w.anon else 3),
    ("exit_when", "", "int", "",
     "DECLARE n int := 0; BEGIN LOOP n := n + 1; EXIT WHEN n >= 5 OR NOT auth.has_role('editor'); END LOOP; "
     "RETURN n; END", "{f}()", lambda w: 5 if w.editor else 1),
    ("foreach_roles", "", "text", "",
     "DECLARE r text; s text := ''; BEGIN FOREACH r IN ARRAY auth.roles() LOOP s := s || r || ','; END LOOP; "
     "RETURN s; END", "{f}()", lambda w: "".join(r + "," for r in w.roles)),
    ("for_range_bound", "", "int", "",
     "DECLARE n int := 0; BEGIN FOR i IN 1..coalesce(array_length(auth.roles(), 1), 0) LOOP n := n + 1; "
     "END LOOP; RETURN n; END", "{f}()", lambda w: len(w.roles)),
    ("return_next", "", "SETOF text", "",
     "BEGIN RETURN NEXT coalesce(auth.uid()::text, 'anon'); RETURN NEXT auth.has_role('editor')::text; END",
     "array(SELECT {f}())", lambda w: [w.u(), w.b()]),
    ("return_query", "", "SETOF uuid", "", "BEGIN RETURN QUERY SELECT auth.uid() FROM generate_series(1, 2); END",
     "array(SELECT {f}())", lambda w: [w.uid, w.uid]),
    ("return_query_execute_using", "", "SETOF text", "",
     "BEGIN RETURN QUERY EXECUTE 'SELECT coalesce($1::text, ''anon'') FROM generate_series(1, 2)' "
     "USING auth.uid(); END", "array(SELECT {f}())", lambda w: [w.u(), w.u()]),
    ("select_into", "", "bigint", "",
     "DECLARE n bigint; BEGIN SELECT count(*) INTO n FROM ctx.docs WHERE owner = auth.uid(); RETURN n; END",
     "{f}()", lambda w: len(w.own())),
    ("select_into_rls", "", "bigint", "",
     "DECLARE n bigint; BEGIN SELECT count(*) INTO n FROM ctx.rls_docs; RETURN n; END",
     "{f}()", lambda w: len(w.own())),
    ("execute_into", "", "uuid", "", "DECLARE x uuid; BEGIN EXECUTE 'SELECT auth.uid()' INTO x; RETURN x; END",
     "{f}()", lambda w: w.uid),
    ("execute_using", "", "uuid", "",
     "DECLARE x uuid; BEGIN EXECUTE 'SELECT $1' INTO x USING auth.uid(); RETURN x; END",
     "{f}()", lambda w: w.uid),
    ("domain_variable", "", "uuid", "",
     "DECLARE x ctx.mine_strict := auth.uid(); BEGIN x := auth.uid(); RETURN x; END", "{f}()", lambda w: w.uid),
    ("domain_variable_refuses", "p uuid", "text", "",
     "DECLARE x ctx.mine_strict := auth.uid(); BEGIN BEGIN x := p; RETURN 'accepted'; "
     "EXCEPTION WHEN check_violation THEN RETURN 'refused'; END; END", "{f}('@C@')", lambda w: "refused"),
    ("call_procedure", "", "text", "",
     "DECLARE u uuid; e boolean; BEGIN CALL ctx.proc_out(u, e); RETURN coalesce(u::text, 'anon') || '/' || e::text; END",
     "{f}()", lambda w: w.u() + "/" + w.b()),
    ("call_with_helper_argument", "", "text", "",
     "DECLARE r text; BEGIN CALL ctx.proc_arg(auth.uid(), r); RETURN r; END", "{f}()", lambda w: w.u()),
    ("inlined_sql_function", "", "text", "", "BEGIN RETURN ctx.sql_probe(); END", "{f}()", lambda w: w.probe()),
    ("sql_default_argument", "", "uuid", "", "BEGIN RETURN ctx.sql_default_arg(); END", "{f}()", lambda w: w.uid),
    ("plpgsql_default_argument", "", "uuid", "", "BEGIN RETURN ctx.plp_default_param(); END", "{f}()",
     lambda w: w.uid),
    ("nested_plpgsql", "", "boolean", "", "BEGIN RETURN ctx.plp_is_mine(auth.uid()); END", "{f}()",
     lambda w: None if w.anon else True),
    ("array_constructor", "", "text", "",
     "DECLARE a uuid[]; BEGIN a := ARRAY[auth.uid(), auth.uid()]; "
     "RETURN array_length(a, 1)::text || ':' || coalesce(a[2]::text, 'anon'); END", "{f}()",
     lambda w: "2:" + w.u()),
    ("any_roles", "", "boolean", "", "BEGIN RETURN 'admin' = ANY (auth.roles()); END", "{f}()",
     lambda w: "admin" in w.roles),
    ("claim_to_text", "", "text", "",
     "BEGIN RETURN 'tenant ' || coalesce(auth.claim('app_metadata.tenant') #>> '{}', 'none'); END", "{f}()",
     lambda w: "tenant " + (w.tenant or "none")),
    ("security_definer", "", "uuid", "SECURITY DEFINER SET search_path = pg_catalog, pg_temp",
     "BEGIN RETURN auth.uid(); END", "{f}()", lambda w: w.uid),
    ("strict_stable", "p int", "text", "STRICT STABLE", "BEGIN RETURN @PROBE@; END", "{f}(1)",
     lambda w: w.probe()),
]

SETUP = r"""
DROP SCHEMA IF EXISTS ctx CASCADE;
CREATE SCHEMA ctx;

CREATE DOMAIN ctx.mine AS uuid CHECK (VALUE = auth.uid());
CREATE DOMAIN ctx.mine_strict AS uuid CHECK (VALUE IS NOT DISTINCT FROM auth.uid());

-- Read-only data
CREATE TABLE ctx.docs (id int PRIMARY KEY, owner uuid NOT NULL, title text NOT NULL, required_role text);
CREATE TABLE ctx.rls_docs (id serial PRIMARY KEY, owner uuid, title text NOT NULL);
ALTER TABLE ctx.rls_docs ENABLE ROW LEVEL SECURITY;
CREATE POLICY p_select ON ctx.rls_docs FOR SELECT USING (owner = auth.uid());
CREATE POLICY p_insert ON ctx.rls_docs FOR INSERT WITH CHECK (owner = auth.uid());
CREATE POLICY p_update ON ctx.rls_docs FOR UPDATE USING (owner = auth.uid())
    WITH CHECK (owner = auth.uid() AND auth.has_role('editor'));
CREATE POLICY p_delete ON ctx.rls_docs FOR DELETE USING (owner = auth.uid() AND auth.has_role('editor'));

-- SQL-language functions: inlinable and not
CREATE FUNCTION ctx.sql_uid() RETURNS uuid LANGUAGE sql STABLE AS $$ SELECT auth.uid() $$;
CREATE FUNCTION ctx.sql_probe() RETURNS text LANGUAGE sql STABLE AS $$ SELECT @PROBE@ $$;
CREATE FUNCTION ctx.sql_probe_strict(p int) RETURNS text LANGUAGE sql STABLE STRICT AS $$ SELECT @PROBE@ $$;
CREATE FUNCTION ctx.sql_probe_secdef() RETURNS text LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $$ SELECT @PROBE@ $$;
CREATE FUNCTION ctx.sql_probe_multi() RETURNS text LANGUAGE sql VOLATILE AS $$ SELECT 1; SELECT @PROBE@ $$;
CREATE FUNCTION ctx.sql_probe_atomic() RETURNS text LANGUAGE sql STABLE BEGIN ATOMIC SELECT @PROBE@; END;
CREATE FUNCTION ctx.sql_probe_setof() RETURNS SETOF text LANGUAGE sql STABLE
    AS $$ SELECT @PROBE@ FROM generate_series(1, 2) $$;
CREATE FUNCTION ctx.sql_uid_return() RETURNS uuid LANGUAGE sql STABLE RETURN auth.uid();
CREATE FUNCTION ctx.sql_is_mine(p uuid) RETURNS boolean LANGUAGE sql STABLE AS $$ SELECT p = auth.uid() $$;
CREATE FUNCTION ctx.sql_default_arg(u uuid DEFAULT auth.uid()) RETURNS uuid LANGUAGE sql STABLE AS $$ SELECT u $$;
CREATE FUNCTION ctx.sql_count_mine() RETURNS bigint LANGUAGE sql STABLE
    AS $$ SELECT count(*) FROM ctx.docs WHERE owner = auth.uid() $$;
CREATE FUNCTION ctx.sql_require_editor() RETURNS boolean LANGUAGE sql VOLATILE
    AS $$ SELECT auth.require_role('editor'); SELECT true $$;

-- PL/pgSQL helpers used by several contexts
CREATE FUNCTION ctx.plp_uid() RETURNS uuid LANGUAGE plpgsql STABLE AS $$ BEGIN RETURN auth.uid(); END $$;
CREATE FUNCTION ctx.plp_is_mine(p uuid) RETURNS boolean LANGUAGE plpgsql STABLE
    AS $$ BEGIN RETURN p = auth.uid(); END $$;
CREATE FUNCTION ctx.plp_is_mine_secdef(p uuid) RETURNS boolean LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $$ BEGIN RETURN p = auth.uid(); END $$;
CREATE FUNCTION ctx.plp_probe() RETURNS text LANGUAGE plpgsql AS $$ BEGIN RETURN @PROBE@; END $$;
CREATE FUNCTION ctx.plp_rls_count() RETURNS bigint LANGUAGE plpgsql
    AS $$ DECLARE n bigint; BEGIN SELECT count(*) INTO n FROM ctx.rls_docs; RETURN n; END $$;
CREATE FUNCTION ctx.plp_default_param(u uuid DEFAULT auth.uid()) RETURNS uuid LANGUAGE plpgsql
    AS $$ BEGIN RETURN u; END $$;
CREATE FUNCTION ctx.plp_switch(tok text) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE a uuid; b uuid; c uuid; ea boolean; eb boolean;
BEGIN
    a := auth.uid();
    ea := auth.has_role('editor');
    PERFORM set_config('auth.jwt', tok, true);
    b := auth.uid();
    eb := auth.has_role('editor');
    PERFORM set_config('auth.jwt', '', true);
    c := auth.uid();
    RETURN ARRAY[a::text, b::text, c::text, ea::text, eb::text];
END $$;
CREATE FUNCTION ctx.plp_cursors() RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
    r record;
    acc text[] := '{}';
    c refcursor;
    u uuid;
    bc CURSOR (p text) FOR SELECT auth.has_role(p) AS h, auth.uid() AS u FROM generate_series(1, 2);
BEGIN
    FOR r IN SELECT auth.uid() AS u FROM generate_series(1, 2) LOOP
        acc := acc || coalesce(r.u::text, 'anon');
    END LOOP;
    OPEN c FOR SELECT auth.uid() FROM generate_series(1, 2);
    LOOP
        FETCH c INTO u;
        EXIT WHEN NOT FOUND;
        acc := acc || coalesce(u::text, 'anon');
    END LOOP;
    CLOSE c;
    FOR r IN bc('editor') LOOP
        acc := acc || (coalesce(r.u::text, 'anon') || ':' || r.h::text);
    END LOOP;
    OPEN c FOR EXECUTE 'SELECT auth.uid() FROM generate_series(1, 2)';
    LOOP
        FETCH c INTO u;
        EXIT WHEN NOT FOUND;
        acc := acc || coalesce(u::text, 'anon');
    END LOOP;
    CLOSE c;
    FOR r IN EXECUTE 'SELECT auth.has_role($1) AS h' USING 'editor' LOOP
        acc := acc || r.h::text;
    END LOOP;
    RETURN acc;
END $$;
CREATE FUNCTION ctx.plp_refcursor() RETURNS refcursor LANGUAGE plpgsql AS $$
DECLARE c refcursor := 'ctx_refcursor';
BEGIN
    OPEN c FOR SELECT g, coalesce(auth.uid()::text, 'anon') FROM generate_series(1, 3) g ORDER BY g;
    RETURN c;
END $$;
CREATE FUNCTION ctx.leaky(text) RETURNS boolean LANGUAGE plpgsql COST 0.0000001
    AS $$ BEGIN RAISE NOTICE 'leaky saw %', $1; RETURN true; END $$;
CREATE PROCEDURE ctx.proc_out(INOUT u uuid, INOUT e boolean) LANGUAGE plpgsql
    AS $$ BEGIN u := auth.uid(); e := auth.has_role('editor'); END $$;
CREATE PROCEDURE ctx.proc_arg(p uuid, INOUT r text) LANGUAGE plpgsql
    AS $$ BEGIN r := coalesce(p::text, 'anon'); END $$;

-- An RLS policy calling PL/pgSQL (plain and SECURITY DEFINER) and SQL functions
CREATE TABLE ctx.rls_fn (id int PRIMARY KEY, owner uuid NOT NULL);
ALTER TABLE ctx.rls_fn ENABLE ROW LEVEL SECURITY;
CREATE POLICY fn_select ON ctx.rls_fn FOR SELECT USING (ctx.plp_is_mine(owner) AND ctx.plp_is_mine_secdef(owner));
CREATE POLICY fn_sql ON ctx.rls_fn AS RESTRICTIVE FOR SELECT USING (ctx.sql_is_mine(owner));

-- Written by the cases, always rolled back
CREATE TABLE ctx.rows (id serial PRIMARY KEY, k text NOT NULL, owner uuid, body text);
CREATE TABLE ctx.upserts (k text PRIMARY KEY, owner uuid, hits int NOT NULL DEFAULT 0);
CREATE TABLE ctx.merge_t (k text PRIMARY KEY, owner uuid, note text);
CREATE TABLE ctx.chk (k text NOT NULL, owner uuid,
    CONSTRAINT chk_mine CHECK (owner IS NOT DISTINCT FROM auth.uid()),
    CONSTRAINT chk_editor_or_anon CHECK (auth.has_role('editor') OR auth.uid() IS NULL),
    CONSTRAINT chk_plpgsql CHECK (ctx.plp_is_mine(owner) IS NOT FALSE));
CREATE TABLE ctx.dom_rows (k text NOT NULL, owner ctx.mine, strict_owner ctx.mine_strict);
CREATE TABLE ctx.def_rows (id serial PRIMARY KEY, k text NOT NULL,
    owner uuid DEFAULT auth.uid(),
    editor boolean DEFAULT auth.has_role('editor'),
    tenant jsonb DEFAULT auth.claim('app_metadata.tenant'),
    roles text[] DEFAULT auth.roles(),
    plp_owner uuid DEFAULT ctx.plp_uid(),
    sql_owner uuid DEFAULT ctx.sql_uid());

-- Triggers: BEFORE INSERT stamping, WHEN clauses, BEFORE UPDATE, AFTER row and statement (audit)
CREATE TABLE ctx.trig_rows (id serial PRIMARY KEY, k text NOT NULL, owner uuid, editor boolean,
    when_uid boolean NOT NULL DEFAULT false, when_editor boolean NOT NULL DEFAULT false,
    updated_by uuid, body text);
CREATE TABLE ctx.trig_audit (k text, row_id int, actor uuid, actor_editor boolean, source text);
CREATE FUNCTION ctx.trg_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.owner := auth.uid();
    NEW.editor := auth.has_role('editor');
    RETURN NEW;
END $$;
CREATE FUNCTION ctx.trg_when_uid() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.when_uid := true; RETURN NEW; END $$;
CREATE FUNCTION ctx.trg_when_editor() RETURNS trigger LANGUAGE plpgsql
    AS $$ BEGIN NEW.when_editor := true; RETURN NEW; END $$;
CREATE FUNCTION ctx.trg_touch() RETURNS trigger LANGUAGE plpgsql
    AS $$ BEGIN NEW.updated_by := auth.uid(); RETURN NEW; END $$;
CREATE FUNCTION ctx.trg_audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ctx.trig_audit VALUES (NEW.k, NEW.id, auth.uid(), auth.has_role('editor'), 'row');
    RETURN NULL;
END $$;
CREATE FUNCTION ctx.trg_audit_stmt() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ctx.trig_audit SELECT k, id, auth.uid(), auth.has_role('editor'), 'statement' FROM new_rows;
    RETURN NULL;
END $$;
CREATE TRIGGER a_stamp BEFORE INSERT ON ctx.trig_rows FOR EACH ROW EXECUTE FUNCTION ctx.trg_stamp();
CREATE TRIGGER b_when_uid BEFORE INSERT ON ctx.trig_rows FOR EACH ROW WHEN (auth.uid() IS NOT NULL)
    EXECUTE FUNCTION ctx.trg_when_uid();
CREATE TRIGGER c_when_editor BEFORE INSERT ON ctx.trig_rows FOR EACH ROW
    WHEN (auth.has_role('editor') AND NEW.k IS NOT NULL) EXECUTE FUNCTION ctx.trg_when_editor();
CREATE TRIGGER d_touch BEFORE UPDATE ON ctx.trig_rows FOR EACH ROW WHEN (OLD.body IS DISTINCT FROM NEW.body)
    EXECUTE FUNCTION ctx.trg_touch();
CREATE TRIGGER e_audit_row AFTER INSERT ON ctx.trig_rows FOR EACH ROW
    WHEN (auth.uid() IS NOT DISTINCT FROM NEW.owner) EXECUTE FUNCTION ctx.trg_audit_row();
CREATE TRIGGER f_audit_stmt AFTER INSERT ON ctx.trig_rows REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ctx.trg_audit_stmt();

-- INSTEAD OF trigger and rule on views
CREATE VIEW ctx.trig_view AS SELECT k, owner, body FROM ctx.rows;
CREATE FUNCTION ctx.trg_instead() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.owner := auth.uid();
    INSERT INTO ctx.rows (k, owner, body) VALUES (NEW.k, NEW.owner, 'instead:' || coalesce(auth.uid()::text, 'anon'));
    RETURN NEW;
END $$;
CREATE TRIGGER instead_ins INSTEAD OF INSERT ON ctx.trig_view FOR EACH ROW EXECUTE FUNCTION ctx.trg_instead();
CREATE VIEW ctx.rule_view AS SELECT k, owner FROM ctx.rows;
CREATE RULE rule_ins AS ON INSERT TO ctx.rule_view DO INSTEAD
    INSERT INTO ctx.rows (k, owner, body) VALUES (NEW.k, auth.uid(), 'rule');

-- Views
CREATE VIEW ctx.v_mine WITH (security_barrier) AS SELECT id, title FROM ctx.docs WHERE owner = auth.uid();
CREATE VIEW ctx.v_who WITH (security_barrier) AS
    SELECT auth.uid() AS uid, auth.has_role('editor') AS editor, auth.claim('app_metadata.tenant') AS tenant,
           auth.roles() AS roles;
CREATE VIEW ctx.v_rls WITH (security_invoker) AS SELECT id FROM ctx.rls_docs;
CREATE VIEW ctx.v_rows_mine WITH (security_barrier) AS
    SELECT id, k, owner, body FROM ctx.rows WHERE owner = auth.uid() WITH LOCAL CHECK OPTION;

-- Partitioned by list and by hash on the owner
CREATE TABLE ctx.plist (id int, owner uuid NOT NULL) PARTITION BY LIST (owner);
CREATE TABLE ctx.plist_a PARTITION OF ctx.plist FOR VALUES IN ('@A@');
CREATE TABLE ctx.plist_b PARTITION OF ctx.plist FOR VALUES IN ('@B@');
CREATE TABLE ctx.plist_other PARTITION OF ctx.plist DEFAULT;
CREATE TABLE ctx.phash (id int, owner uuid NOT NULL) PARTITION BY HASH (owner);
CREATE TABLE ctx.phash_0 PARTITION OF ctx.phash FOR VALUES WITH (MODULUS 4, REMAINDER 0);
CREATE TABLE ctx.phash_1 PARTITION OF ctx.phash FOR VALUES WITH (MODULUS 4, REMAINDER 1);
CREATE TABLE ctx.phash_2 PARTITION OF ctx.phash FOR VALUES WITH (MODULUS 4, REMAINDER 2);
CREATE TABLE ctx.phash_3 PARTITION OF ctx.phash FOR VALUES WITH (MODULUS 4, REMAINDER 3);
INSERT INTO ctx.plist SELECT g, (ARRAY['@A@', '@B@', '@C@']::uuid[])[(g - 1) / 40 + 1] FROM generate_series(1, 120) g;
INSERT INTO ctx.phash SELECT * FROM ctx.plist;

-- ~100k rows under an owner = auth.uid() policy, for parallel query
CREATE TABLE ctx.big (id int NOT NULL, owner uuid NOT NULL, tag text NOT NULL) WITH (parallel_workers = 2);
INSERT INTO ctx.big SELECT g,
    CASE WHEN g % 10 < 3 THEN '@A@' WHEN g % 10 < 5 THEN '@B@' ELSE '@C@' END::uuid,
    (ARRAY['editor', 'admin', 'viewer', 'x'])[g % 4 + 1]
  FROM generate_series(1, @BIG@) g;
ALTER TABLE ctx.big ENABLE ROW LEVEL SECURITY;
CREATE POLICY big_own ON ctx.big USING (owner = auth.uid());

-- DDL by app_user fires this (only while ctx.evt_key is set)
CREATE TABLE ctx.evt_log (k text, owner uuid, editor boolean, tag text);
CREATE FUNCTION ctx.evt_fn() RETURNS event_trigger LANGUAGE plpgsql AS $$
DECLARE u uuid;
BEGIN
    IF coalesce(current_setting('ctx.evt_key', true), '') = '' THEN
        RETURN;
    END IF;
    u := auth.uid();
    INSERT INTO ctx.evt_log VALUES (current_setting('ctx.evt_key'), u, auth.has_role('editor'), tg_tag);
END $$;

GRANT USAGE, CREATE ON SCHEMA ctx TO app_user;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA ctx TO app_user;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA ctx TO app_user;
"""


def fill(sql):
    return (sql.replace("@PROBE@", PROBE).replace("@A@", A_UID).replace("@B@", B_UID)
            .replace("@C@", C_UID).replace("@BIG@", str(BIG_ROWS)))


class Env:
    def __init__(self, cluster, A, B):
        self.cluster = cluster
        self.A, self.B, self.ANON = A, B, Who("anon")
        self.log = os.path.join(cluster.dir, "server.log")
        self.log_start = self.log_size()
        self.partition_of = {}
        self.long_conn = None
        self.long_pid = None

    def log_size(self):
        return os.path.getsize(self.log)

    def log_since(self, offset):
        with open(self.log, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")

    def crash_lines(self, offset, wait=0.0, context=True):
        deadline = time.monotonic() + wait
        while True:
            lines = [ln for ln in self.log_since(offset).splitlines()
                     if CRASH.search(ln) or (context and CRASH_CONTEXT.search(ln))]
            if lines or time.monotonic() >= deadline:
                return lines
            time.sleep(0.2)

    def connect(self, user="app_user", autocommit=False):
        """Connects, waiting through a crash restart (recovery mode, refused connections)."""
        deadline = time.monotonic() + 90
        while True:
            try:
                return self.cluster.connect(user=user, autocommit=autocommit)
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)


@pytest.fixture(scope="module")
def env(cluster, signer):
    ttl = 6 * 3600
    A = Who("A", A_UID, "a@ctx.test", "t-A", ("admin", "editor"), "authenticated",
            signer.token(A_UID, ttl=ttl, email="a@ctx.test", app_metadata={"roles": ["editor", "admin"], "tenant": "t-A"}))
    B = Who("B", B_UID, "b@ctx.test", "t-B", ("viewer",), "authenticated",
            signer.token(B_UID, alg="RS256", ttl=ttl, email="b@ctx.test",
                         app_metadata={"roles": ["viewer"], "tenant": "t-B"}))
    e = Env(cluster, A, B)
    with e.connect(user="postgres", autocommit=True) as admin:
        admin.execute(fill(SETUP))
        for name, params, returns, attrs, body, _, _ in PLPGSQL:
            admin.execute(fill(f"CREATE FUNCTION ctx.plp_case_{name}({params}) RETURNS {returns} "
                               f"LANGUAGE plpgsql {attrs} AS $fn$ {body} $fn$"))
        with admin.cursor() as cur:
            cur.executemany("INSERT INTO ctx.docs VALUES (%s, %s, %s, %s)",
                            [(i, OWNER[o], t, r) for i, o, t, r in DOCS])
            cur.executemany("INSERT INTO ctx.rls_docs (id, owner, title) VALUES (%s, %s, %s)",
                            [(i, OWNER[o], t) for i, o, t, _ in DOCS])
            cur.executemany("INSERT INTO ctx.rls_fn VALUES (%s, %s)", [(i, OWNER[o]) for i, o, _, _ in DOCS])
        admin.execute("SELECT setval('ctx.rls_docs_id_seq', 100)")
        admin.execute("ANALYZE ctx.docs, ctx.rls_docs, ctx.plist, ctx.phash, ctx.big")
        for table in ("plist", "phash"):
            e.partition_of[table] = {
                u: part for u, part in admin.execute(
                    f"SELECT DISTINCT p.owner::text, c.relname::text FROM ctx.{table} p JOIN pg_class c ON c.oid = p.tableoid")}
        admin.execute("CREATE EVENT TRIGGER ctx_evt ON ddl_command_end EXECUTE FUNCTION ctx.evt_fn()")
    e.long_conn = e.connect(autocommit=True)
    e.long_pid = e.long_conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    yield e
    try:
        e.long_conn.close()
        with e.connect(user="postgres", autocommit=True) as admin:
            admin.execute("DROP EVENT TRIGGER IF EXISTS ctx_evt")
            admin.execute("DROP SCHEMA IF EXISTS ctx CASCADE")
    except psycopg.Error:
        pass


class T:
    """What one case sees: its identity (A, or anonymous), the other identity, fresh connections."""

    def __init__(self, env, mode):
        self.env = env
        self.mode = mode
        self.A, self.B, self.ANON = env.A, env.B, env.ANON
        self.who = env.A if mode == "token" else env.ANON
        self.other = env.B if mode == "token" else env.A
        self.key = f"{mode}-{uuid.uuid4().hex[:12]}"
        self.conns = []

    def connect(self, **kw):
        c = self.env.connect(**kw)
        self.conns.append(c)
        return c

    def close(self):
        for c in self.conns:
            try:
                c.close()
            except Exception:  # noqa: BLE001 - a crashed connection may not close cleanly
                pass

    def seq(self):
        """Identities one session goes through, one transaction each."""
        A, B, N = self.A, self.B, self.ANON
        return [A, B, N, A, B, A] if self.mode == "token" else [N, A, N, B, N, A]

    @staticmethod
    def bind(conn, who):
        if who.token is not None:
            conn.execute("SELECT set_config('auth.jwt', %s, true)", (who.token,))

    @staticmethod
    def switch(conn, who):
        """Changes the token inside the open transaction ('' = anonymous)."""
        conn.execute("SELECT set_config('auth.jwt', %s, true)", (who.token or "",))


def val(conn, sql, params=None, prepare=None):
    r = conn.execute(sql, params, prepare=prepare).fetchone()
    assert r is not None, f"no row from {sql}"
    return norm(r[0])


def row(conn, sql, params=None, prepare=None):
    r = conn.execute(sql, params, prepare=prepare).fetchone()
    return None if r is None else norm(tuple(r))


def rows(conn, sql, params=None, prepare=None):
    return [norm(tuple(r)) for r in conn.execute(sql, params, prepare=prepare).fetchall()]


def sqlstate(conn, action, params=None):
    """Runs `action` (SQL or a callable taking the connection) under a savepoint; returns the
    SQLSTATE of its error, or None. A lost connection (sqlstate None) propagates."""
    conn.execute("SAVEPOINT ctx_sp")
    try:
        if callable(action):
            action(conn)
        else:
            conn.execute(action, params)
    except psycopg.Error as e:
        if e.sqlstate is None:
            raise
        conn.execute("ROLLBACK TO SAVEPOINT ctx_sp")
        return e.sqlstate
    conn.execute("RELEASE SAVEPOINT ctx_sp")
    return None


def check(conn, sql, want, params=None, prepare=None):
    """`want` is the first column's value, or an Err."""
    if isinstance(want, Err):
        same(sqlstate(conn, sql, params), want.sqlstate, sql)
    else:
        same(val(conn, sql, params, prepare), want, sql)


def copy_out(conn, sql):
    with conn.cursor() as cur:
        with cur.copy(sql) as cp:
            data = b"".join(bytes(chunk) for chunk in cp)
    return [tuple(None if f == r"\N" else f for f in line.split("\t")) for line in data.decode().splitlines()]


def copy_in(conn, sql, records):
    with conn.cursor() as cur:
        with cur.copy(sql) as cp:
            for r in records:
                cp.write_row(r)


def plan_text(conn, sql, params=None):
    return "\n".join(r[0] for r in conn.execute(sql, params).fetchall())


CASES: dict = {}


def case(fn):
    CASES[fn.__name__] = fn
    return fn


def plpgsql_case(spec):
    name, _, _, _, _, call, expect = spec

    def run(t):
        conn = t.connect()
        sql = "SELECT " + fill(call.replace("{f}", f"ctx.plp_case_{name}"))
        for _ in range(3):  # compiles, then reuses the function's cached expression plans
            t.bind(conn, t.who)
            check(conn, sql, expect(t.who))
            conn.commit()
        # and in a statement that reads a table, once per row
        t.bind(conn, t.who)
        want = expect(t.who)
        if not isinstance(want, Err):
            same(rows(conn, sql.replace("SELECT ", "SELECT d.id, ", 1) + " FROM ctx.docs d ORDER BY d.id"),
                 [(i, want) for i, _, _, _ in DOCS], f"{sql} per row")
        conn.commit()

    run.__name__ = f"plpgsql_{name}"
    return run


for _spec in PLPGSQL:
    case(plpgsql_case(_spec))


# ------------------------------------------------------------------ PL/pgSQL across statements
@case
def plpgsql_across_tokens(t):
    """PL/pgSQL functions called repeatedly in one session while the token changes between
    transactions: the functions' cached plans must not serve a previous token's value."""
    conn = t.connect()
    sql = ("SELECT ctx.plp_probe(), ctx.plp_rls_count(), ctx.plp_case_issue_assign()::text, "
           "ctx.plp_case_has_role(), ctx.plp_case_select_into(), ctx.plp_is_mine(%s::uuid), "
           "ctx.plp_case_if_is_null(), ctx.plp_case_roles()")
    for step, who in enumerate(t.seq()):
        t.bind(conn, who)
        want = (who.probe(), len(who.own()), who.uid, who.has("admin"), len(who.own()),
                None if who.anon else who.uid == A_UID, "anon" if who.anon else "user", list(who.roles))
        for n in range(3):
            same(row(conn, sql, (A_UID,), prepare=(n > 0)), want, f"step {step} ({who.name}) call {n}")
        conn.commit()


@case
def plpgsql_token_change_inside_function(t):
    """set_config changes the token between two `x := auth.uid()` assignments of one function."""
    conn = t.connect()
    w, o = t.who, t.other
    for _ in range(3):
        t.bind(conn, w)
        same(val(conn, "SELECT ctx.plp_switch(%s)", (o.token,)),
             [w.uid, o.uid, None, w.b(), o.b()], "a, b, c, editor before, editor after")
        same(val(conn, "SELECT auth.uid()"), None, "after the function reset the token")
        conn.commit()


@case
def plpgsql_cursor_loops(t):
    """FOR over a query, OPEN/FETCH, a bound cursor with an argument, OPEN FOR EXECUTE, FOR IN EXECUTE USING."""
    conn = t.connect()
    w = t.who
    for _ in range(2):
        t.bind(conn, w)
        u, e = w.u(), w.b()
        same(val(conn, "SELECT ctx.plp_cursors()"), [u, u, u, u, f"{u}:{e}", f"{u}:{e}", u, u, e], "cursor loops")
        conn.commit()


@case
def plpgsql_refcursor(t):
    """A refcursor opened in PL/pgSQL and fetched by the caller."""
    conn = t.connect()
    t.bind(conn, t.who)
    same(val(conn, "SELECT ctx.plp_refcursor()::text"), "ctx_refcursor", "cursor name")
    same(rows(conn, "FETCH ALL FROM ctx_refcursor"), [(g, t.who.u()) for g in (1, 2, 3)], "refcursor rows")
    conn.commit()


# ------------------------------------------------------------------------------ DO blocks
@case
def do_issue_repro(t):
    """The statement of the issue."""
    conn = t.connect()
    t.bind(conn, t.who)
    conn.execute("DO $$ declare x uuid; begin x := auth.uid(); end $$")
    conn.commit()
    conn.autocommit = True  # no surrounding transaction either
    conn.execute("DO $$ declare x uuid; begin x := auth.uid(); end $$")
    conn.execute("DO $$ begin if auth.uid() is null then perform 1; end if; end $$")


@case
def do_notices(t):
    """Results of a DO block through RAISE NOTICE."""
    conn = t.connect()
    notices = []
    conn.add_notice_handler(lambda d: notices.append(d.message_primary))
    t.bind(conn, t.who)
    conn.execute(fill("""DO $$
        DECLARE x uuid;
        BEGIN
            x := auth.uid();
            RAISE NOTICE 'uid=%', coalesce(x::text, 'anon');
            RAISE NOTICE 'editor=%', auth.has_role('editor');
            RAISE NOTICE 'tenant=%', coalesce(auth.claim('app_metadata.tenant') #>> '{}', 'none');
            RAISE NOTICE 'roles=%', auth.roles();
            RAISE NOTICE 'sub=%', coalesce(auth.jwt() ->> 'sub', 'none');
            RAISE NOTICE 'probe=%', @PROBE@;
        END $$"""))
    conn.commit()
    w = t.who
    same(notices, [f"uid={w.u()}", f"editor={'t' if w.editor else 'f'}", f"tenant={w.tenant or 'none'}",
                   "roles={" + ",".join(w.roles) + "}", f"sub={w.uid or 'none'}", f"probe={w.probe()}"], "notices")


@case
def do_temp_table(t):
    """Results of a DO block through a temp table."""
    conn = t.connect()
    t.bind(conn, t.who)
    conn.execute("CREATE TEMP TABLE do_out (k text, v text) ON COMMIT DROP")
    conn.execute(fill("""DO $$
        DECLARE x uuid; r record;
        BEGIN
            x := auth.uid();
            INSERT INTO do_out VALUES ('assign', coalesce(x::text, 'anon'));
            IF auth.uid() IS NULL THEN
                INSERT INTO do_out VALUES ('if', 'anon');
            ELSE
                INSERT INTO do_out VALUES ('if', 'user');
            END IF;
            INSERT INTO do_out VALUES ('has_role', auth.has_role('editor')::text);
            INSERT INTO do_out SELECT 'claim', coalesce(auth.claim('app_metadata.tenant') #>> '{}', 'none');
            FOR r IN SELECT unnest(auth.roles()) AS role LOOP
                INSERT INTO do_out VALUES ('role', r.role);
            END LOOP;
            INSERT INTO do_out VALUES ('probe', @PROBE@);
        END $$"""))
    w = t.who
    want = sorted([("assign", w.u()), ("if", "anon" if w.anon else "user"), ("has_role", w.b()),
                   ("claim", w.tenant or "none"), ("probe", w.probe())] + [("role", r) for r in w.roles])
    same(rows(conn, "SELECT k, v FROM do_out ORDER BY k, v"), want, "do_out")
    conn.commit()


@case
def require_role_everywhere(t):
    """auth.require_role in SQL, an SQL function, a DO block, per row: raises 42501 unless has_role."""
    conn = t.connect()
    want = None if t.who.editor else "42501"
    t.bind(conn, t.who)
    for sql in ("SELECT auth.require_role('editor')",
                "SELECT auth.require_role('editor') FROM generate_series(1, 3)",
                "SELECT ctx.sql_require_editor()",
                "DO $$ BEGIN PERFORM auth.require_role('editor'); END $$",
                "SELECT count(*) FROM ctx.docs WHERE auth.require_role('editor') IS NULL"):
        same(sqlstate(conn, sql), want, sql)
    same(sqlstate(conn, "SELECT auth.require_role('nope')"), "42501", "a role nobody has")
    conn.commit()


# ------------------------------------------------------------------------- SQL functions
SQL_FUNCS = ("SELECT ctx.sql_probe(), ctx.sql_probe_strict(1), ctx.sql_probe_secdef(), ctx.sql_probe_multi(), "
             "ctx.sql_probe_atomic(), array(SELECT ctx.sql_probe_setof()), ctx.sql_default_arg()::text, "
             "ctx.sql_count_mine(), (SELECT count(*) FROM ctx.docs WHERE ctx.sql_is_mine(owner)), "
             "(SELECT array_agg(p) FROM ctx.sql_probe_setof() p), ctx.sql_uid_return()::text")


def sql_funcs_want(w):
    p = w.probe()
    n = len(w.own())
    return (p, p, p, p, p, [p, p], w.uid, n, n, [p, p], w.uid)


@case
def sql_functions(t):
    """SQL-language functions: inlinable, STRICT (not inlined), SECURITY DEFINER, multi-statement,
    BEGIN ATOMIC, RETURN body, set-returning, default argument, in WHERE; repeatedly in one transaction."""
    conn = t.connect()
    t.bind(conn, t.who)
    plan = plan_text(conn, "EXPLAIN (VERBOSE, COSTS OFF) " + SQL_FUNCS)
    for called in ("sql_probe_strict(1)", "sql_probe_secdef()", "sql_probe_multi()"):
        assert called in plan, f"{called} should stay a call:\n{plan}"
    for inlined in ("sql_probe()", "sql_uid_return()", "sql_default_arg()"):
        assert inlined not in plan, f"{inlined} should be inlined:\n{plan}"
    for n in range(4):
        same(row(conn, SQL_FUNCS, prepare=n > 1), sql_funcs_want(t.who), f"call {n}")
    conn.commit()


@case
def sql_functions_across_tokens(t):
    """The same SQL functions across different tokens in one session (unprepared and prepared)."""
    conn = t.connect()
    for step, who in enumerate(t.seq()):
        t.bind(conn, who)
        for n in range(3):
            same(row(conn, SQL_FUNCS, prepare=n > 0), sql_funcs_want(who), f"step {step} ({who.name}) call {n}")
        conn.commit()


@case
def call_procedures(t):
    """CALL with INOUT results set by PL/pgSQL and with helper calls as arguments."""
    conn = t.connect()
    w = t.who
    t.bind(conn, w)
    same(row(conn, "CALL ctx.proc_out(NULL, NULL)"), (w.uid, w.editor), "proc_out")
    same(row(conn, "CALL ctx.proc_arg(auth.uid(), NULL)"), (w.u(),), "proc_arg(auth.uid())")
    same(row(conn, "CALL ctx.proc_arg(ctx.sql_uid(), NULL)"), (w.u(),), "proc_arg(ctx.sql_uid())")
    same(row(conn, "CALL ctx.proc_arg(ctx.plp_uid(), NULL)"), (w.u(),), "proc_arg(ctx.plp_uid())")
    conn.commit()


# ------------------------------------------------------------------ DML: MERGE, upsert, RETURNING
@case
def merge(t):
    """MERGE (PG15): helpers in WHEN conditions, UPDATE SET, INSERT VALUES and the source."""
    conn = t.connect()
    w = t.who
    t.bind(conn, w)
    merge_sql = ("MERGE INTO ctx.merge_t t USING (VALUES (%s::text)) s(k) ON t.k = s.k "
                 "WHEN MATCHED AND auth.has_role('editor') THEN UPDATE SET owner = auth.uid(), note = 'updated' "
                 "WHEN MATCHED THEN DELETE "
                 "WHEN NOT MATCHED AND auth.uid() IS NOT NULL THEN INSERT (k, owner, note) VALUES (s.k, auth.uid(), 'inserted') "
                 "WHEN NOT MATCHED THEN INSERT (k, owner, note) VALUES (s.k, NULL, 'inserted anonymously')")
    state = "SELECT owner::text, note FROM ctx.merge_t WHERE k = %s"
    conn.execute(merge_sql, (t.key,))
    same(row(conn, state, (t.key,)), (w.uid, "inserted anonymously" if w.anon else "inserted"), "first MERGE")
    conn.execute(merge_sql, (t.key,))
    same(row(conn, state, (t.key,)), (w.uid, "updated") if w.editor else None, "second MERGE")
    conn.execute("INSERT INTO ctx.merge_t VALUES (%s, %s, 'other')", (t.key + "-c", C_UID))
    conn.execute("MERGE INTO ctx.merge_t t USING (SELECT auth.uid() AS u) s ON t.owner = s.u AND t.k LIKE %s "
                 "WHEN MATCHED THEN UPDATE SET note = 'matched mine'", (t.key + "%",))
    same(rows(conn, "SELECT k, note FROM ctx.merge_t WHERE k LIKE %s ORDER BY k", (t.key + "%",)),
         ([(t.key, "matched mine")] if w.editor else []) + [(t.key + "-c", "other")], "MERGE matching on auth.uid()")
    conn.rollback()


@case
def insert_on_conflict(t):
    """INSERT … ON CONFLICT DO UPDATE SET owner = auth.uid() WHERE auth.has_role(…), and DO NOTHING."""
    conn = t.connect()
    w = t.who
    t.bind(conn, w)
    conn.execute("INSERT INTO ctx.upserts (k, owner) VALUES (%s, NULL)", (t.key,))
    got = rows(conn, "INSERT INTO ctx.upserts AS u (k, owner) VALUES (%s, auth.uid()) ON CONFLICT (k) DO UPDATE "
                     "SET owner = auth.uid(), hits = u.hits + 1 "
                     "WHERE auth.has_role('editor') AND u.owner IS DISTINCT FROM auth.uid() "
                     "RETURNING u.owner::text, u.hits, auth.uid()::text", (t.key,))
    same(got, [(w.uid, 1, w.uid)] if w.editor else [], "DO UPDATE … WHERE")
    same(rows(conn, "INSERT INTO ctx.upserts (k, owner) VALUES (%s, auth.uid()) ON CONFLICT DO NOTHING "
                    "RETURNING owner::text", (t.key + "-2",)), [(w.uid,)], "DO NOTHING, inserted")
    same(rows(conn, "INSERT INTO ctx.upserts AS u (k, owner) VALUES (%s, auth.uid()) ON CONFLICT (k) DO UPDATE "
                    "SET owner = excluded.owner, hits = u.hits + 10 RETURNING owner::text, hits", (t.key + "-2",)),
         [(w.uid, 10)], "DO UPDATE SET excluded.owner")
    conn.rollback()


@case
def returning_and_dml(t):
    """RETURNING auth.uid() on INSERT/UPDATE/DELETE; INSERT … SELECT; UPDATE … FROM; DELETE … USING;
    a data-modifying CTE."""
    conn = t.connect()
    w = t.who
    k = t.key
    t.bind(conn, w)
    same(rows(conn, "INSERT INTO ctx.rows (k, owner, body) VALUES (%s, auth.uid(), 'r') "
                    "RETURNING owner::text, auth.uid()::text, auth.has_role('editor')", (k,)),
         [(w.uid, w.uid, w.editor)], "INSERT RETURNING")
    same(rows(conn, "UPDATE ctx.rows SET body = coalesce(auth.uid()::text, 'anon') WHERE k = %s "
                    "RETURNING body, auth.user_id()", (k,)), [(w.u(), w.uid)], "UPDATE RETURNING")
    same(rows(conn, "INSERT INTO ctx.rows (k, owner) SELECT %s, auth.uid() FROM generate_series(1, 3) "
                    "RETURNING owner::text", (k,)), [(w.uid,)] * 3, "INSERT … SELECT")
    same(len(rows(conn, "UPDATE ctx.rows r SET body = 'from' FROM (SELECT auth.uid() AS u) s "
                        "WHERE r.k = %s AND r.owner IS NOT DISTINCT FROM s.u RETURNING r.id", (k,))), 4, "UPDATE … FROM")
    same(rows(conn, "UPDATE ctx.rows SET (owner, body) = (SELECT auth.uid(), 'multi') WHERE k = %s "
                    "RETURNING owner::text, body", (k,)), [(w.uid, "multi")] * 4, "UPDATE SET (…) = (SELECT …)")
    same(rows(conn, "WITH ins AS (INSERT INTO ctx.rows (k, owner) VALUES (%s, auth.uid()) RETURNING owner) "
                    "SELECT owner::text, auth.uid()::text FROM ins", (k,)), [(w.uid, w.uid)], "data-modifying CTE")
    same(rows(conn, "DELETE FROM ctx.rows r USING (VALUES (auth.uid())) v(u) "
                    "WHERE r.k = %s AND r.owner IS NOT DISTINCT FROM v.u RETURNING r.owner::text, auth.uid()::text",
              (k,)), [(w.uid, w.uid)] * 5, "DELETE … USING … RETURNING")
    conn.rollback()


# -------------------------------------------------------------------- constraints and defaults
@case
def domain_check(t):
    """create domain mine as uuid check (value = auth.uid()), and an IS NOT DISTINCT FROM variant:
    casts, table columns."""
    conn = t.connect()
    w = t.who
    t.bind(conn, w)
    same(val(conn, "SELECT auth.uid()::ctx.mine_strict::text"), w.uid, "auth.uid()::mine_strict")
    same(val(conn, "SELECT auth.uid()::ctx.mine::text"), w.uid, "auth.uid()::mine")
    # `VALUE = auth.uid()` is NULL, so passes, when anonymous
    same(sqlstate(conn, "SELECT %s::uuid::ctx.mine", (A_UID,)), None, "A::mine")
    same(sqlstate(conn, "SELECT %s::uuid::ctx.mine", (B_UID,)), None if w.anon else "23514", "B::mine")
    same(sqlstate(conn, "SELECT %s::uuid::ctx.mine_strict", (A_UID,)), "23514" if w.anon else None, "A::mine_strict")
    same(sqlstate(conn, "SELECT NULL::uuid::ctx.mine_strict"), None if w.anon else "23514", "NULL::mine_strict")
    same(sqlstate(conn, "INSERT INTO ctx.dom_rows VALUES (%s, auth.uid(), auth.uid())", (t.key,)), None, "own uid")
    # B in the `VALUE = auth.uid()` column: refused with a token, NULL (accepted) when anonymous
    same(sqlstate(conn, "INSERT INTO ctx.dom_rows VALUES (%s, %s, auth.uid())", (t.key, B_UID)),
         None if w.anon else "23514", "B into the mine column")
    same(sqlstate(conn, "INSERT INTO ctx.dom_rows VALUES (%s, NULL, %s)", (t.key, C_UID)), "23514", "C into mine_strict")
    same(val(conn, "SELECT count(*) FROM ctx.dom_rows WHERE k = %s", (t.key,)), 2 if w.anon else 1, "rows kept")
    conn.rollback()


@case
def table_check_constraint(t):
    """CHECK (owner IS NOT DISTINCT FROM auth.uid()), CHECK (auth.has_role(…) OR …), CHECK calling PL/pgSQL;
    on INSERT, UPDATE and COPY."""
    conn = t.connect()
    w = t.who
    t.bind(conn, w)
    same(sqlstate(conn, "INSERT INTO ctx.chk VALUES (%s, auth.uid())", (t.key,)), None, "own uid")
    same(sqlstate(conn, "INSERT INTO ctx.chk VALUES (%s, %s)", (t.key, B_UID)), "23514", "B")
    same(sqlstate(conn, "INSERT INTO ctx.chk VALUES (%s, %s)", (t.key, A_UID)), "23514" if w.anon else None, "A")
    same(sqlstate(conn, "INSERT INTO ctx.chk VALUES (%s, NULL)", (t.key,)), None if w.anon else "23514", "NULL")
    same(sqlstate(conn, "UPDATE ctx.chk SET owner = %s WHERE k = %s", (C_UID, t.key)), "23514", "UPDATE to C")
    same(sqlstate(conn, lambda c: copy_in(c, "COPY ctx.chk (k, owner) FROM STDIN", [(t.key, w.uid)])), None, "COPY own")
    same(sqlstate(conn, lambda c: copy_in(c, "COPY ctx.chk (k, owner) FROM STDIN", [(t.key, C_UID)])), "23514", "COPY C")
    same(val(conn, "SELECT count(*) FROM ctx.chk WHERE k = %s", (t.key,)), 3, "rows kept")
    conn.rollback()


@case
def column_defaults(t):
    """owner uuid DEFAULT auth.uid() (and has_role, claim, roles, PL/pgSQL and SQL function defaults):
    INSERT, INSERT … SELECT, DEFAULT VALUES style, UPDATE SET … = DEFAULT, COPY FROM STDIN (also with WHERE)."""
    conn = t.connect()
    w = t.who
    k = t.key
    t.bind(conn, w)
    conn.execute("INSERT INTO ctx.def_rows (k) VALUES (%s)", (k,))
    conn.execute("INSERT INTO ctx.def_rows (k) SELECT %s FROM generate_series(1, 2)", (k,))
    copy_in(conn, "COPY ctx.def_rows (k) FROM STDIN", [(k,), (k,)])
    copy_in(conn, "COPY ctx.def_rows (k) FROM STDIN WHERE auth.has_role('editor')", [(k,)])
    conn.execute("INSERT INTO ctx.def_rows (k, owner) VALUES (%s, NULL)", (k,))
    conn.execute("UPDATE ctx.def_rows SET owner = DEFAULT WHERE k = %s AND owner IS NULL", (k,))
    got = rows(conn, "SELECT owner::text, editor, tenant, roles, plp_owner::text, sql_owner::text "
                     "FROM ctx.def_rows WHERE k = %s ORDER BY id", (k,))
    same(got, [(w.uid, w.editor, w.tenant, list(w.roles), w.uid, w.uid)] * (6 + (1 if w.editor else 0)), "defaults")
    conn.rollback()


# ---------------------------------------------------------------------------------- triggers
@case
def before_insert_trigger_and_when(t):
    """BEFORE INSERT row trigger doing new.owner := auth.uid(); WHEN (auth.uid() IS NOT NULL) and
    WHEN (auth.has_role(…) AND NEW.k IS NOT NULL) clauses."""
    conn = t.connect()
    w = t.who
    t.bind(conn, w)
    got = rows(conn, "INSERT INTO ctx.trig_rows (k, body) VALUES (%s, 'x'), (%s, 'y') "
                     "RETURNING owner::text, editor, when_uid, when_editor", (t.key, t.key))
    same(got, [(w.uid, w.editor, not w.anon, w.editor)] * 2, "stamped rows")
    conn.rollback()


@case
def trigger_generated_values(t):
    """Values generated by triggers: BEFORE UPDATE new.updated_by := auth.uid(); AFTER row and
    statement (transition table) triggers writing audit rows with auth.uid()."""
    conn = t.connect()
    w = t.who
    t.bind(conn, w)
    conn.execute("INSERT INTO ctx.trig_rows (k, body) VALUES (%s, 'x'), (%s, 'y')", (t.key, t.key))
    same(rows(conn, "UPDATE ctx.trig_rows SET body = body || '!' WHERE k = %s RETURNING updated_by::text", (t.key,)),
         [(w.uid,)] * 2, "updated_by")
    same(rows(conn, "SELECT source, actor::text, actor_editor, count(*) FROM ctx.trig_audit WHERE k = %s "
                    "GROUP BY 1, 2, 3 ORDER BY 1", (t.key,)),
         [("row", w.uid, w.editor, 2), ("statement", w.uid, w.editor, 2)], "audit rows")
    conn.rollback()


@case
def copy_from_stdin_fires_triggers(t):
    """COPY FROM STDIN into the trigger table: BEFORE/AFTER row and statement triggers, WHEN clauses."""
    conn = t.connect()
    w = t.who
    t.bind(conn, w)
    copy_in(conn, "COPY ctx.trig_rows (k, body) FROM STDIN", [(t.key, "c1"), (t.key, "c2"), (t.key, "c3")])
    same(rows(conn, "SELECT owner::text, editor, when_uid, when_editor FROM ctx.trig_rows WHERE k = %s", (t.key,)),
         [(w.uid, w.editor, not w.anon, w.editor)] * 3, "rows")
    same(rows(conn, "SELECT source, actor::text, count(*) FROM ctx.trig_audit WHERE k = %s GROUP BY 1, 2 ORDER BY 1",
              (t.key,)), [("row", w.uid, 3), ("statement", w.uid, 3)], "audit rows")
    conn.rollback()


@case
def instead_of_trigger_and_rule(t):
    """INSTEAD OF INSERT trigger on a view (PL/pgSQL), and a DO INSTEAD rule inserting auth.uid()."""
    conn = t.connect()
    w = t.who
    t.bind(conn, w)
    conn.execute("INSERT INTO ctx.trig_view (k) VALUES (%s)", (t.key + "-trigger",))
    conn.execute("INSERT INTO ctx.rule_view (k) VALUES (%s)", (t.key + "-rule",))
    same(rows(conn, "SELECT k, owner::text, body FROM ctx.rows WHERE k LIKE %s ORDER BY k", (t.key + "%",)),
         [(t.key + "-rule", w.uid, "rule"), (t.key + "-trigger", w.uid, "instead:" + w.u())], "rows")
    conn.rollback()


@case
def event_trigger(t):
    """An event trigger (created by the superuser, PL/pgSQL) firing for app_user's DDL."""
    conn = t.connect()
    w = t.who
    t.bind(conn, w)
    conn.execute("SELECT set_config('ctx.evt_key', %s, true)", (t.key,))
    conn.execute("CREATE TEMP TABLE evt_probe (x int)")
    same(rows(conn, "SELECT owner::text, editor, tag FROM ctx.evt_log WHERE k = %s", (t.key,)),
         [(w.uid, w.editor, "CREATE TABLE")], "event trigger log")
    conn.rollback()


# ------------------------------------------------------------------------------------ cursors
@case
def cursor_declare_fetch(t):
    """DECLARE / FETCH, with and without FROM."""
    conn = t.connect()
    w = t.who
    t.bind(conn, w)
    conn.execute("DECLARE c1 CURSOR FOR SELECT g, auth.uid()::text, auth.has_role('editor') "
                 "FROM generate_series(1, 4) g ORDER BY g")
    same(rows(conn, "FETCH 2 FROM c1"), [(1, w.uid, w.editor), (2, w.uid, w.editor)], "FETCH 2")
    same(rows(conn, "FETCH ALL FROM c1"), [(3, w.uid, w.editor), (4, w.uid, w.editor)], "FETCH ALL")
    conn.execute(fill("DECLARE c0 CURSOR FOR SELECT @PROBE@"))
    same(rows(conn, "FETCH ALL FROM c0"), [(w.probe(),)], "cursor without FROM")
    conn.execute("DECLARE c2 CURSOR FOR SELECT id FROM ctx.rls_docs ORDER BY id")
    same(rows(conn, "FETCH ALL FROM c2"), [(i,) for i in w.own()], "cursor over RLS")
    conn.commit()


@case
def cursor_scroll(t):
    """SCROLL cursor: FETCH LAST / PRIOR / ABSOLUTE / BACKWARD ALL re-read the same values."""
    conn = t.connect()
    w = t.who
    t.bind(conn, w)
    conn.execute("DECLARE c SCROLL CURSOR FOR SELECT g, auth.uid()::text FROM generate_series(1, 3) g ORDER BY g")
    same(rows(conn, "FETCH LAST FROM c"), [(3, w.uid)], "LAST")
    same(rows(conn, "FETCH PRIOR FROM c"), [(2, w.uid)], "PRIOR")
    same(rows(conn, "FETCH ABSOLUTE 1 FROM c"), [(1, w.uid)], "ABSOLUTE 1")
    same(rows(conn, "FETCH ALL FROM c"), [(2, w.uid), (3, w.uid)], "ALL")
    same(rows(conn, "FETCH BACKWARD ALL FROM c"), [(3, w.uid), (2, w.uid), (1, w.uid)], "BACKWARD ALL")
    conn.commit()


@case
def cursor_with_hold(t):
    """A WITH HOLD cursor is materialized at COMMIT with the identity of its transaction, and keeps
    those values in later transactions (anonymous, or bound to another token)."""
    conn = t.connect()
    w = t.who
    t.bind(conn, w)
    conn.execute("DECLARE h CURSOR WITH HOLD FOR SELECT g, auth.uid()::text FROM generate_series(1, 3) g ORDER BY g")
    same(rows(conn, "FETCH 1 FROM h"), [(1, w.uid)], "before commit")
    conn.commit()
    same(rows(conn, "FETCH 1 FROM h"), [(2, w.uid)], "after commit, no token")
    conn.commit()
    t.bind(conn, t.other)
    same(rows(conn, "FETCH 1 FROM h"), [(3, w.uid)], "after commit, other token")
    conn.execute("CLOSE h")
    conn.commit()


@case
def cursor_opened_before_token_change(t):
    """A cursor opened (and partly fetched) before the token changes in the same transaction:
    no crash; each row carries one of the two identities; statements after the change see the new one."""
    conn = t.connect()
    w, o = t.who, t.other
    t.bind(conn, w)
    conn.execute("DECLARE c CURSOR FOR SELECT g, auth.uid()::text FROM generate_series(1, 4) g ORDER BY g")
    conn.execute("DECLARE r CURSOR FOR SELECT id FROM ctx.rls_docs ORDER BY id")
    same(rows(conn, "FETCH 1 FROM c"), [(1, w.uid)], "first row before the change")
    first = rows(conn, "FETCH 1 FROM r")
    same(first, [(i,) for i in w.own()[:1]], "first RLS row before the change")
    t.switch(conn, o)
    rest = rows(conn, "FETCH ALL FROM c")
    same([g for g, _ in rest], [2, 3, 4], "remaining rows")
    assert all(u in (w.uid, o.uid) for _, u in rest), rest
    rest_r = rows(conn, "FETCH ALL FROM r")
    assert set(i for (i,) in rest_r) <= set(w.own()) | set(o.own()), rest_r
    same(val(conn, "SELECT auth.uid()::text"), o.uid, "next statement")
    conn.execute("DECLARE c_after CURSOR FOR SELECT auth.uid()::text FROM generate_series(1, 2)")
    same(rows(conn, "FETCH ALL FROM c_after"), [(o.uid,)] * 2, "cursor opened after the change")
    conn.commit()


# ----------------------------------------------------------------------- query shapes (SELECT)
@case
def ctes(t):
    """CTEs: plain, MATERIALIZED, NOT MATERIALIZED, recursive."""
    conn = t.connect()
    w = t.who
    t.bind(conn, w)
    same(val(conn, "WITH me AS (SELECT auth.uid() AS u) SELECT u::text FROM me"), w.uid, "plain")
    same(row(conn, "WITH me AS MATERIALIZED (SELECT auth.uid() AS u, auth.has_role('editor') AS e) "
                   "SELECT u::text, e FROM me"), (w.uid, w.editor), "MATERIALIZED")
    same(val(conn, "WITH mine AS NOT MATERIALIZED (SELECT id FROM ctx.docs WHERE owner = auth.uid()) "
                   "SELECT array_agg(id ORDER BY id) FROM mine"), w.own() or None, "NOT MATERIALIZED")
    same(val(conn, "WITH RECURSIVE r(n, u) AS (SELECT 1, auth.uid() UNION ALL "
                   "SELECT n + 1, auth.uid() FROM r WHERE n < 3) "
                   "SELECT array_agg(coalesce(u::text, 'anon') ORDER BY n) FROM r"), [w.u()] * 3, "recursive")
    same(val(conn, "WITH RECURSIVE r(role, depth) AS (SELECT unnest(auth.roles()), 1 UNION ALL "
                   "SELECT role, depth + 1 FROM r WHERE depth < 2 AND auth.has_role(role)) "
                   "SELECT count(*) FROM r"), 2 * len(w.roles), "recursive over roles")
    conn.commit()


@case
def window_functions(t):
    """Window functions with helpers in arguments, FILTER, PARTITION BY and the frame's ORDER BY."""
    conn = t.connect()
    w = t.who
    t.bind(conn, w)
    got = rows(conn, "SELECT id, owner = auth.uid(), count(*) FILTER (WHERE owner = auth.uid()) OVER (), "
                     "sum((owner = auth.uid())::int) OVER (ORDER BY id), first_value(auth.uid()::text) OVER win, "
                     "rank() OVER (PARTITION BY owner = auth.uid() ORDER BY id) "
                     "FROM ctx.docs WINDOW win AS (ORDER BY id) ORDER BY id")
    own = w.own()
    want, running, rank = [], 0, {}
    for i, o, _, _ in DOCS:
        mine = None if w.anon else OWNER[o] == w.uid
        running += 1 if mine else 0
        rank[mine] = rank.get(mine, 0) + 1
        want.append((i, mine, len(own), running if not w.anon else None, w.uid, rank[mine]))
    same(got, want, "window")
    same(rows(conn, "SELECT id, sum(id) OVER (ORDER BY id ROWS BETWEEN CASE WHEN auth.uid() IS NULL THEN 0 ELSE 1 END "
                    "PRECEDING AND CURRENT ROW) FROM ctx.docs ORDER BY id"),
         [(i, i if w.anon else 2 * i - 1) for i, *_ in DOCS], "frame offset")
    conn.commit()


@case
def subqueries_and_lateral(t):
    """Scalar subqueries, IN, ANY, LATERAL, correlated subqueries, ARRAY(…)."""
    conn = t.connect()
    w = t.who
    t.bind(conn, w)
    n = len(w.own())
    same(val(conn, "SELECT (SELECT auth.uid()::text)"), w.uid, "scalar subquery")
    same(val(conn, "SELECT count(*) FROM ctx.docs WHERE owner IN (SELECT auth.uid())"), n, "IN")
    same(val(conn, "SELECT count(*) FROM ctx.docs WHERE owner = ANY (ARRAY[auth.uid()])"), n, "ANY")
    same(val(conn, "SELECT 'editor' = ANY (auth.roles())"), w.editor, "= ANY (auth.roles())")
    same(rows(conn, "SELECT s.n, l.u::text, l.e FROM generate_series(1, 2) s(n) "
                    "CROSS JOIN LATERAL (SELECT auth.uid() AS u, auth.has_role('editor') AS e, s.n) l ORDER BY s.n"),
         [(1, w.uid, w.editor), (2, w.uid, w.editor)], "LATERAL")
    same(rows(conn, "SELECT d.id, (SELECT count(*) FROM ctx.docs e WHERE e.owner = d.owner AND e.owner = auth.uid()) "
                    "FROM ctx.docs d ORDER BY d.id"),
         [(i, n if OWNER[o] == w.uid else 0) for i, o, _, _ in DOCS], "correlated")
    same(val(conn, "SELECT ARRAY(SELECT id FROM ctx.docs WHERE owner = auth.uid() ORDER BY id)"), w.own(), "ARRAY()")
    same(val(conn, "SELECT count(*) FROM ctx.docs d, LATERAL (SELECT d.owner = auth.uid() AS m) x WHERE x.m"),
         n, "LATERAL in WHERE")
    conn.commit()


@case
def aggregates_filter(t):
    """auth.uid() inside aggregate FILTER, aggregate arguments and aggregate ORDER BY."""
    conn = t.connect()
    w = t.who
    t.bind(conn, w)
    got = row(conn, "SELECT count(*) FILTER (WHERE owner = auth.uid()), "
                    "count(*) FILTER (WHERE auth.has_role(required_role)), bool_or(auth.has_role('editor')), "
                    "array_agg(id ORDER BY id) FILTER (WHERE owner = auth.uid()), "
                    "array_agg(id ORDER BY owner = auth.uid() DESC NULLS LAST, id), "
                    "count(DISTINCT auth.uid()), string_agg(coalesce(auth.user_id(), 'anon'), ',') FROM ctx.docs")
    own = w.own()
    same(got, (len(own), sum(1 for *_, r in DOCS if w.has(r)), w.editor, own or None,
               own + [i for i, *_ in DOCS if i not in own], 0 if w.anon else 1, ",".join([w.u()] * 6)), "aggregates")
    conn.commit()


@case
def order_by_group_by(t):
    """auth.uid() in ORDER BY, GROUP BY, HAVING, DISTINCT ON."""
    conn = t.connect()
    w = t.who
    t.bind(conn, w)
    own = w.own()
    same([i for (i,) in rows(conn, "SELECT id FROM ctx.docs ORDER BY owner = auth.uid(), id")],
         [i for i, *_ in DOCS] if w.anon else [i for i, *_ in DOCS if i not in own] + own, "ORDER BY")
    same(rows(conn, "SELECT owner = auth.uid() AS mine, count(*) FROM ctx.docs GROUP BY owner = auth.uid() ORDER BY 1"),
         [(None, 6)] if w.anon else [(False, 6 - len(own)), (True, len(own))], "GROUP BY expression")
    same(rows(conn, "SELECT auth.uid()::text, count(*) FROM ctx.docs GROUP BY auth.uid()"), [(w.uid, 6)], "GROUP BY auth.uid()")
    want = {}
    for *_, r in DOCS:
        want[w.has(r)] = want.get(w.has(r), 0) + 1
    same(rows(conn, "SELECT auth.has_role(required_role), count(*) FROM ctx.docs GROUP BY 1 ORDER BY 1 NULLS LAST"),
         sorted(want.items(), key=lambda kv: (kv[0] is None, kv[0])), "GROUP BY has_role(column)")
    same(rows(conn, "SELECT owner::text FROM ctx.docs GROUP BY owner HAVING owner = auth.uid()"),
         [] if w.anon else [(w.uid,)], "HAVING")
    same(val(conn, "SELECT count(*) FROM (SELECT owner FROM ctx.docs GROUP BY owner "
                   "HAVING count(*) FILTER (WHERE owner = auth.uid()) > 0) s"), 0 if w.anon else 1, "HAVING FILTER")
    same(rows(conn, "SELECT DISTINCT ON (owner = auth.uid()) owner = auth.uid(), id FROM ctx.docs "
                    "ORDER BY owner = auth.uid(), id"),
         [(None, 1)] if w.anon else [(False, 4), (True, 1)], "DISTINCT ON")
    same(rows(conn, "SELECT owner = auth.uid(), count(*) FROM ctx.docs GROUP BY ROLLUP (owner = auth.uid()) "
                    "ORDER BY 1 NULLS LAST, 2"),
         [(None, 6), (None, 6)] if w.anon else [(False, 6 - len(own)), (True, len(own)), (None, 6)], "ROLLUP")
    conn.commit()


@case
def exists_subqueries(t):
    """auth.uid() inside EXISTS / NOT EXISTS, correlated and not."""
    conn = t.connect()
    w = t.who
    t.bind(conn, w)
    own = w.own()
    same(val(conn, "SELECT EXISTS (SELECT 1 FROM ctx.docs WHERE owner = auth.uid())"), bool(own), "EXISTS")
    same(val(conn, "SELECT NOT EXISTS (SELECT 1 FROM ctx.docs WHERE owner = auth.uid() AND auth.has_role('editor'))"),
         not (own and w.editor), "NOT EXISTS")
    same([i for (i,) in rows(conn, "SELECT d.id FROM ctx.docs d WHERE EXISTS (SELECT 1 FROM ctx.docs e "
                                    "WHERE e.id = d.id AND e.owner = auth.uid()) ORDER BY 1")], own, "correlated EXISTS")
    same([i for (i,) in rows(conn, "SELECT d.id FROM ctx.docs d WHERE NOT EXISTS (SELECT 1 FROM ctx.docs e "
                                    "WHERE e.id = d.id AND e.owner = auth.uid()) ORDER BY 1")],
         [i for i, *_ in DOCS if i not in own], "correlated NOT EXISTS")
    same(val(conn, "SELECT count(*) FROM ctx.docs d WHERE EXISTS (SELECT 1 WHERE auth.has_role(d.required_role))"),
         sum(1 for *_, r in DOCS if w.has(r)), "EXISTS with a per-row helper call")
    conn.commit()


@case
def non_constant_arguments(t):
    """Calls whose arguments are not constants: columns, subqueries, bound parameters, NULL."""
    conn = t.connect()
    w = t.who
    t.bind(conn, w)
    same(rows(conn, "SELECT id, auth.has_role(required_role) FROM ctx.docs ORDER BY id"),
         [(i, w.has(r)) for i, *_, r in DOCS], "has_role(column)")
    same(rows(conn, "SELECT p, auth.claim(p) FROM (VALUES ('app_metadata.tenant'), ('email'), ('nope')) v(p) ORDER BY p"),
         [("app_metadata.tenant", w.tenant), ("email", w.email), ("nope", None)], "claim(column)")
    same(val(conn, "SELECT auth.has_role((SELECT 'editor'))"), w.editor, "has_role(subquery)")
    same(row(conn, "SELECT auth.has_role(%s), auth.claim(%s)", ("editor", "app_metadata.tenant")),
         (w.editor, w.tenant), "bound parameters")
    same(rows(conn, "SELECT r, auth.has_role(r) FROM unnest(ARRAY['editor', 'viewer', NULL]) r ORDER BY r NULLS LAST"),
         [("editor", w.editor), ("viewer", False), (None, None)], "has_role(unnest)")
    same(row(conn, "SELECT auth.claim(NULL), auth.has_role(NULL)"), (None, None), "NULL arguments (STRICT)")
    same(val(conn, "SELECT auth.has_role('edi' || 'tor')"), w.editor, "folded expression")
    for n in range(7):  # the server-side prepared statement turns generic after 5 executions
        same(row(conn, "SELECT auth.has_role(%s), auth.claim(%s)", ("editor", "app_metadata.tenant"), prepare=True),
             (w.editor, w.tenant), f"prepared bound parameters, run {n}")
    conn.commit()


@case
def values_lists(t):
    """VALUES lists: in FROM, top-level, INSERT … VALUES with several rows, joined."""
    conn = t.connect()
    w = t.who
    t.bind(conn, w)
    same(rows(conn, "SELECT u::text, n FROM (VALUES (auth.uid(), 1), (auth.uid(), 2)) v(u, n) ORDER BY n"),
         [(w.uid, 1), (w.uid, 2)], "VALUES in FROM")
    same(rows(conn, "VALUES (auth.uid()::text, auth.has_role('editor'))"), [(w.uid, w.editor)], "top-level VALUES")
    same(rows(conn, "VALUES (auth.uid()::text), (auth.user_id())"), [(w.uid,), (w.uid,)], "top-level VALUES, 2 rows")
    same(rows(conn, "INSERT INTO ctx.rows (k, owner) VALUES (%s, auth.uid()), (%s, auth.uid()) RETURNING owner::text",
              (t.key, t.key)), [(w.uid,)] * 2, "INSERT VALUES")
    same(val(conn, "SELECT count(*) FROM ctx.docs d JOIN (VALUES (auth.uid())) v(u) ON d.owner = v.u"),
         len(w.own()), "VALUES joined")
    conn.rollback()


@case
def create_table_as(t):
    """CREATE TABLE AS, SELECT INTO, CREATE TABLE AS VALUES, over RLS; a materialized view and its
    REFRESH under another token; ALTER TABLE ADD COLUMN … DEFAULT auth.uid() on existing rows."""
    conn = t.connect()
    w, o = t.who, t.other
    t.bind(conn, w)
    conn.execute("CREATE TEMP TABLE ctas1 AS SELECT g, auth.uid() AS u, auth.has_role('editor') AS e "
                 "FROM generate_series(1, 3) g")
    same(rows(conn, "SELECT g, u::text, e FROM ctas1 ORDER BY g"), [(g, w.uid, w.editor) for g in (1, 2, 3)], "CTAS")
    conn.execute("CREATE TEMP TABLE ctas2 AS SELECT auth.uid() AS u, auth.roles() AS r")
    same(rows(conn, "SELECT u::text, r FROM ctas2"), [(w.uid, list(w.roles))], "CTAS without FROM")
    conn.execute("SELECT auth.uid() AS u, auth.claim('app_metadata.tenant') AS c INTO TEMP ctas3")
    same(rows(conn, "SELECT u::text, c FROM ctas3"), [(w.uid, w.tenant)], "SELECT INTO")
    conn.execute("CREATE TEMP TABLE ctas4 AS VALUES (auth.uid())")
    same(rows(conn, "SELECT column1::text FROM ctas4"), [(w.uid,)], "CTAS VALUES")
    conn.execute("CREATE TEMP TABLE ctas5 AS SELECT id FROM ctx.rls_docs")
    same(sorted(i for (i,) in rows(conn, "SELECT id FROM ctas5")), w.own(), "CTAS over RLS")
    conn.execute("ALTER TABLE ctas1 ADD COLUMN owner2 uuid DEFAULT auth.uid()")
    same(rows(conn, "SELECT DISTINCT owner2::text FROM ctas1"), [(w.uid,)], "ADD COLUMN DEFAULT on existing rows")
    conn.execute("PREPARE ctas_p AS SELECT auth.uid() AS u, auth.has_role('editor') AS e FROM generate_series(1, 2)")
    conn.execute("CREATE TEMP TABLE ctas6 AS EXECUTE ctas_p")
    same(rows(conn, "SELECT u::text, e FROM ctas6"), [(w.uid, w.editor)] * 2, "CREATE TABLE AS EXECUTE")
    mv = f"ctx.mv_{uuid.uuid4().hex[:10]}"
    conn.execute(f"CREATE MATERIALIZED VIEW {mv} AS SELECT auth.uid() AS u, count(*) AS n FROM ctx.rls_docs")
    same(rows(conn, f"SELECT u::text, n FROM {mv}"), [(w.uid, len(w.own()))], "materialized view")
    t.switch(conn, o)
    conn.execute(f"REFRESH MATERIALIZED VIEW {mv}")
    same(rows(conn, f"SELECT u::text, n FROM {mv}"), [(o.uid, len(o.own()))], "refreshed under the other token")
    conn.rollback()


@case
def copy_to_stdout(t):
    """COPY (SELECT …) TO STDOUT, COPY of an RLS table TO STDOUT, CSV with header."""
    conn = t.connect()
    w = t.who
    t.bind(conn, w)
    same(copy_out(conn, "COPY (SELECT auth.uid(), auth.has_role('editor'), auth.claim('app_metadata.tenant') #>> '{}' "
                        "FROM generate_series(1, 2)) TO STDOUT"),
         [(w.uid, "t" if w.editor else "f", w.tenant)] * 2, "COPY (SELECT)")
    same(copy_out(conn, "COPY (SELECT id FROM ctx.rls_docs ORDER BY id) TO STDOUT"), [(str(i),) for i in w.own()],
         "COPY (SELECT RLS)")
    same(sorted(copy_out(conn, "COPY ctx.rls_docs (id) TO STDOUT")), [(str(i),) for i in w.own()], "COPY RLS table")
    with conn.cursor() as cur:
        with cur.copy("COPY (SELECT auth.uid() AS uid) TO STDOUT WITH (FORMAT csv, HEADER)") as cp:
            data = b"".join(bytes(c) for c in cp).decode()
    same(data.splitlines(), ["uid", w.uid or ""], "CSV")
    conn.commit()


@case
def views(t):
    """security_barrier views with helpers in WHERE and in the target list, a leaky function above a
    security_barrier view, a security_invoker view over RLS, WITH CHECK OPTION through a view."""
    conn = t.connect()
    w = t.who
    notices = []
    conn.add_notice_handler(lambda d: notices.append(d.message_primary))
    t.bind(conn, w)
    same(val(conn, "SELECT array_agg(id ORDER BY id) FROM ctx.v_mine"), w.own() or None, "v_mine")
    same(row(conn, "SELECT uid::text, editor, tenant, roles FROM ctx.v_who"), (w.uid, w.editor, w.tenant, list(w.roles)),
         "v_who")
    same(val(conn, "SELECT array_agg(id ORDER BY id) FROM ctx.v_rls"), w.own() or None, "security_invoker over RLS")
    same(val(conn, "SELECT count(*) FROM ctx.v_mine WHERE ctx.leaky(title)"), len(w.own()), "leaky filter count")
    same(sorted(notices), sorted(f"leaky saw {x}" for x in w.own_titles()), "the leaky function saw only own rows")
    same(sqlstate(conn, "INSERT INTO ctx.v_rows_mine (k, owner) VALUES (%s, auth.uid())", (t.key,)),
         "44000" if w.anon else None, "insert own through the view")
    same(sqlstate(conn, "INSERT INTO ctx.v_rows_mine (k, owner) VALUES (%s, %s)", (t.key, C_UID)), "44000",
         "insert C through the view")
    conn.rollback()


@case
def rls_policies_dml(t):
    """RLS USING and WITH CHECK in SELECT (also FOR UPDATE), INSERT, UPDATE, DELETE."""
    conn = t.connect()
    w = t.who
    t.bind(conn, w)
    own = w.own()
    same([i for (i,) in rows(conn, "SELECT id FROM ctx.rls_docs ORDER BY id")], own, "SELECT")
    same([i for (i,) in rows(conn, "SELECT id FROM ctx.rls_docs ORDER BY id FOR UPDATE")], own, "SELECT FOR UPDATE")
    same(sqlstate(conn, "INSERT INTO ctx.rls_docs (owner, title) VALUES (auth.uid(), 'mine')"),
         "42501" if w.anon else None, "INSERT own")
    same(sqlstate(conn, "INSERT INTO ctx.rls_docs (owner, title) VALUES (%s, 'forged')", (B_UID,)), "42501", "INSERT B")
    n_own = len(own) + (0 if w.anon else 1)
    same(len(rows(conn, "UPDATE ctx.rls_docs SET title = title || '!' RETURNING id")), n_own, "UPDATE own")
    same(len(rows(conn, "UPDATE ctx.rls_docs SET title = 'x' WHERE id = 4 RETURNING id")), 0, "UPDATE B's row")
    same(sqlstate(conn, "UPDATE ctx.rls_docs SET owner = %s WHERE id = 1", (B_UID,)),
         None if w.anon else "42501", "UPDATE giving away (anonymous: no row visible)")
    same(len(rows(conn, "DELETE FROM ctx.rls_docs WHERE id = 4 RETURNING id")), 0, "DELETE B's row")
    same(len(rows(conn, "DELETE FROM ctx.rls_docs RETURNING id")), n_own if w.editor else 0, "DELETE own")
    conn.rollback()


@case
def rls_policy_calling_functions(t):
    """An RLS policy calling PL/pgSQL (plain and SECURITY DEFINER) and SQL functions per row."""
    conn = t.connect()
    for who in ([t.who, t.other, t.who]):
        t.bind(conn, who)
        same([i for (i,) in rows(conn, "SELECT id FROM ctx.rls_fn ORDER BY id")], who.own(), f"rows of {who.name}")
        conn.commit()


@case
def partition_pruning(t):
    """Tables partitioned by list and by hash on a uuid owner: `WHERE owner = auth.uid()` returns the
    right rows, and EXPLAIN ANALYZE shows every other partition pruned."""
    conn = t.connect()
    w = t.who
    t.bind(conn, w)
    for table, per_owner in (("plist", 40), ("phash", 40)):
        n = val(conn, f"SELECT count(*) FROM ctx.{table} WHERE owner = auth.uid()")
        same(n, 0 if w.anon else per_owner, f"{table} rows")
        plan = plan_text(conn, f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) "
                               f"SELECT count(*) FROM ctx.{table} WHERE owner = auth.uid()")
        executed = {m.group(1) for ln in plan.splitlines()
                    for m in [re.search(r"Scan (?:using \S+ )?on ({}_\w+)".format(table), ln)]
                    if m and "never executed" not in ln}
        want = set() if w.anon else {t.env.partition_of[table][w.uid]}
        same(executed, want, f"{table} partitions scanned\n{plan}")
        same(val(conn, f"SELECT count(*) FROM ctx.{table} WHERE owner = (SELECT auth.uid())"), n, f"{table} (select …)")
    conn.commit()


@case
def partition_bound_expression(t):
    """A partition bound given as an expression (evaluated once, at CREATE)."""
    conn = t.connect()
    w = t.who
    t.bind(conn, w)
    conn.execute("CREATE TEMP TABLE pt (owner uuid) PARTITION BY LIST (owner)")
    conn.execute("CREATE TEMP TABLE pt_me PARTITION OF pt FOR VALUES IN (auth.uid())")
    conn.execute("CREATE TEMP TABLE pt_rest PARTITION OF pt DEFAULT")
    conn.execute("INSERT INTO pt VALUES (auth.uid()), (%s)", (C_UID,))
    same(rows(conn, "SELECT c.relname::text, p.owner::text FROM pt p JOIN pg_class c ON c.oid = p.tableoid ORDER BY 1"),
         [("pt_me", w.uid), ("pt_rest", C_UID)], "routing")
    same(val(conn, "SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE oid = 'pt_me'::regclass"),
         "FOR VALUES IN (NULL)" if w.anon else f"FOR VALUES IN ('{w.uid}')", "bound")
    conn.rollback()


@case
def prepared_generic_plans(t):
    """PREPARE / EXECUTE under plan_cache_mode force_generic_plan, force_custom_plan and auto, the
    token changing between executions."""
    conn = t.connect()
    conn.execute(fill("PREPARE p_probe AS SELECT @PROBE@"))
    conn.execute("PREPARE p_rls AS SELECT count(*) FROM ctx.rls_docs")
    conn.execute("PREPARE p_where AS SELECT array_agg(id ORDER BY id) FROM ctx.docs WHERE owner = auth.uid()")
    conn.execute("PREPARE p_arg(text) AS SELECT auth.has_role($1), auth.claim($1)")
    conn.execute("PREPARE p_part AS SELECT count(*) FROM ctx.plist WHERE owner = auth.uid()")
    conn.execute("PREPARE p_fn AS SELECT ctx.plp_probe(), ctx.sql_probe()")
    conn.commit()
    for mode in ("force_generic_plan", "force_custom_plan", "auto"):
        conn.execute(f"SET plan_cache_mode = {mode}")
        conn.commit()
        for step, who in enumerate(t.seq()):
            t.bind(conn, who)
            what = f"{mode}, step {step} ({who.name})"
            same(val(conn, "EXECUTE p_probe"), who.probe(), what)
            same(val(conn, "EXECUTE p_rls"), len(who.own()), what)
            same(val(conn, "EXECUTE p_where"), who.own() or None, what)
            same(row(conn, "EXECUTE p_arg('editor')"), (who.editor, None), what)
            same(row(conn, "EXECUTE p_arg('app_metadata.tenant')"), (False, who.tenant), what)
            same(val(conn, "EXECUTE p_part"), 0 if who.anon else 40, what)
            same(row(conn, "EXECUTE p_fn"), (who.probe(), who.probe()), what)
            assert plan_text(conn, "EXPLAIN EXECUTE p_where")
            conn.commit()
        if mode == "force_generic_plan":
            generic = val(conn, "SELECT min(generic_plans) FROM pg_prepared_statements WHERE name LIKE 'p\\_%'")
            assert generic >= len(t.seq()), f"generic plans used: {generic}"
            conn.commit()


@case
def protocol_prepared_across_tokens(t):
    """Statements prepared by the client (extended protocol) and re-executed across tokens."""
    conn = t.connect()
    statements = [(fill("SELECT @PROBE@"), lambda w: w.probe()),
                  ("SELECT count(*) FROM ctx.rls_docs", lambda w: len(w.own())),
                  ("SELECT count(*) FROM ctx.docs WHERE owner = auth.uid()", lambda w: len(w.own())),
                  ("SELECT ctx.plp_case_return_uid()::text", lambda w: w.uid)]
    for step, who in enumerate(t.seq() * 2):
        t.bind(conn, who)
        for sql, want in statements:
            same(val(conn, sql, prepare=True), want(who), f"step {step} ({who.name}): {sql}")
        conn.commit()


@case
def parallel_query(t):
    """Parallel query over ~100k rows under an owner = auth.uid() RLS policy; also a per-row helper
    call evaluated in the workers."""
    conn = t.connect()
    w = t.who
    conn.execute("SET parallel_setup_cost = 0")
    conn.execute("SET parallel_tuple_cost = 0")
    conn.execute("SET min_parallel_table_scan_size = 0")
    conn.execute("SET max_parallel_workers_per_gather = 2")
    conn.commit()
    for who in (w, t.other, w):
        t.bind(conn, who)
        plan = plan_text(conn, "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT count(*) FROM ctx.big")
        assert "Gather" in plan and re.search(r"Workers Launched: [1-9]", plan), plan
        same(val(conn, "SELECT count(*) FROM ctx.big"), who.big_count(), f"{who.name}: count")
        same(row(conn, "SELECT count(*) FILTER (WHERE owner = auth.uid()), count(*) FROM ctx.big"),
             (who.big_count(), who.big_count()), f"{who.name}: FILTER")
        plan = plan_text(conn, "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) "
                               "SELECT count(*) FROM ctx.big b WHERE auth.has_role(b.tag)")
        assert "Gather" in plan, plan
        same(val(conn, "SELECT count(*) FROM ctx.big b WHERE auth.has_role(b.tag)"), who.big_count(editor_tags=True),
             f"{who.name}: has_role(tag) in workers")
        conn.commit()


@case
def explain(t):
    """EXPLAIN, EXPLAIN VERBOSE and EXPLAIN ANALYZE of statements using the helpers."""
    conn = t.connect()
    t.bind(conn, t.who)
    for sql in ("EXPLAIN SELECT auth.uid()",
                "EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM ctx.docs WHERE owner = auth.uid()",
                "EXPLAIN ANALYZE SELECT auth.uid(), auth.has_role('editor'), auth.claim('email')",
                "EXPLAIN (ANALYZE, VERBOSE) SELECT count(*) FROM ctx.rls_docs",
                "EXPLAIN SELECT ctx.plp_case_return_uid()",
                "EXPLAIN ANALYZE SELECT ctx.plp_case_return_uid(), ctx.sql_probe()",
                "EXPLAIN (ANALYZE) INSERT INTO ctx.trig_rows (k) VALUES ('explain')",
                "EXPLAIN (ANALYZE) UPDATE ctx.rls_docs SET title = title WHERE owner = auth.uid()",
                "EXPLAIN SELECT count(*) FROM ctx.docs WHERE auth.has_role(required_role)"):
        assert plan_text(conn, sql), sql
    conn.rollback()


@case
def set_config_between_statements(t):
    """set_config changes the token between two statements of one transaction (and back)."""
    conn = t.connect()
    w, o, n = t.who, t.other, t.ANON
    t.bind(conn, w)
    for step, who in enumerate((w, o, n, w, o)):
        if step:
            t.switch(conn, who)
        same(val(conn, fill("SELECT @PROBE@")), who.probe(), f"probe as {who.name}")
        same(val(conn, fill("SELECT @PROBE@"), prepare=True), who.probe(), f"prepared probe as {who.name}")
        same(val(conn, "SELECT count(*) FROM ctx.rls_docs"), len(who.own()), f"RLS as {who.name}")
        same(val(conn, "SELECT ctx.plp_case_issue_assign()::text"), who.uid, f"PL/pgSQL as {who.name}")
    conn.commit()


@case
def set_config_inside_statement(t):
    """set_config changes the token inside one statement: no crash, each value is one of the two
    identities, and the next statement sees the new one."""
    conn = t.connect()
    w, o = t.who, t.other
    both = (w.uid, o.uid)
    for sql in ("SELECT auth.uid()::text, set_config('auth.jwt', %s, true) IS NOT NULL, auth.uid()::text",
                "SELECT auth.uid()::text, true, s.u FROM (SELECT set_config('auth.jwt', %s, true), auth.uid()::text) s(c, u)",
                "WITH s AS MATERIALIZED (SELECT set_config('auth.jwt', %s, true) AS c) SELECT auth.uid()::text, true, "
                "(SELECT auth.uid()::text) FROM s"):
        t.bind(conn, w)
        a, _, b = row(conn, sql, (o.token,))
        assert a in both and b in both, (sql, a, b)
        same(val(conn, "SELECT auth.uid()::text"), o.uid, f"after: {sql}")
        same(val(conn, "SELECT ctx.plp_uid()::text"), o.uid, f"after (PL/pgSQL): {sql}")
        conn.commit()
    t.bind(conn, w)
    got = rows(conn, "SELECT g, auth.uid()::text, CASE WHEN g = 2 THEN set_config('auth.jwt', %s, true) END IS NULL, "
                     "ctx.plp_uid()::text FROM generate_series(1, 3) g ORDER BY g", (o.token,))
    assert all(u in both and p in both for _, u, _, p in got), got
    same(got[0][3], w.uid, "PL/pgSQL value before the change")
    conn.commit()


@case
def limit_tablesample_srf_json(t):
    """Helpers in LIMIT/OFFSET, TABLESAMPLE, function-scan arguments, set-returning functions, jsonpath."""
    conn = t.connect()
    w = t.who
    t.bind(conn, w)
    same(val(conn, "SELECT array_agg(id) FROM (SELECT id FROM ctx.docs ORDER BY id "
                   "LIMIT CASE WHEN auth.has_role('editor') THEN 2 ELSE 1 END "
                   "OFFSET CASE WHEN auth.uid() IS NULL THEN 1 ELSE 0 END) s"),
         [1, 2] if w.editor else [2], "LIMIT / OFFSET")
    same(val(conn, "SELECT count(*) FROM ctx.docs TABLESAMPLE BERNOULLI (CASE WHEN auth.uid() IS NULL THEN 0 ELSE 100 END) "
                   "REPEATABLE (1)"), 0 if w.anon else 6, "TABLESAMPLE")
    same(val(conn, "SELECT count(*) FROM generate_series(1, CASE WHEN auth.has_role('editor') THEN 3 ELSE 1 END)"),
         3 if w.editor else 1, "function scan argument")
    same(val(conn, "SELECT array(SELECT unnest(auth.roles()) ORDER BY 1)"), list(w.roles), "unnest(auth.roles())")
    same([r for (r,) in rows(conn, "SELECT jsonb_array_elements_text(auth.jwt() -> 'app_metadata' -> 'roles') ORDER BY 1")],
         list(w.roles), "SRF over auth.jwt()")
    same(val(conn, "SELECT jsonb_path_exists(auth.jwt(), '$.app_metadata.roles[*] ? (@ == \"editor\")')"),
         None if w.anon else True, "jsonpath")
    same(val(conn, "SELECT auth.jwt() @> jsonb_build_object('sub', auth.user_id())"), None if w.anon else True, "@>")
    conn.commit()


@case
def joins_and_set_operations(t):
    """Helpers in JOIN … ON, LEFT JOIN, UNION ALL, INTERSECT, EXCEPT."""
    conn = t.connect()
    w = t.who
    t.bind(conn, w)
    own = w.own()
    same(val(conn, "SELECT array_agg(d.id ORDER BY d.id) FROM ctx.docs d JOIN ctx.docs e "
                   "ON e.id = d.id AND e.owner = auth.uid()"), own or None, "JOIN ON")
    same(val(conn, "SELECT count(*) FROM ctx.docs d LEFT JOIN (SELECT auth.uid() AS u) s ON d.owner = s.u "
                   "WHERE s.u IS NOT NULL"), len(own), "LEFT JOIN")
    same(val(conn, "SELECT array(SELECT coalesce(auth.uid()::text, 'anon') UNION ALL "
                   "SELECT coalesce(auth.user_id(), 'anon') UNION ALL SELECT 'x')"), [w.u(), w.u(), "x"], "UNION ALL")
    same(val(conn, "SELECT array(SELECT id FROM ctx.docs WHERE owner = auth.uid() INTERSECT SELECT id FROM ctx.docs "
                   "ORDER BY 1)"), own, "INTERSECT")
    same(val(conn, "SELECT array(SELECT id FROM ctx.docs EXCEPT SELECT id FROM ctx.docs WHERE owner = auth.uid() "
                   "ORDER BY 1)"), [i for i, *_ in DOCS if i not in own], "EXCEPT")
    conn.commit()


@case
def refused_definitions(t):
    """Where SQL refuses a STABLE function, it is refused cleanly: generated columns, index
    expressions and predicates."""
    conn = t.connect()
    t.bind(conn, t.who)
    same(sqlstate(conn, "CREATE TEMP TABLE g (a int, u uuid GENERATED ALWAYS AS (auth.uid()) STORED)"), "42P17",
         "generated column")
    conn.execute("CREATE TEMP TABLE ix (owner uuid)")
    same(sqlstate(conn, "CREATE INDEX ON ix ((owner = auth.uid()))"), "42P17", "index expression")
    same(sqlstate(conn, "CREATE INDEX ON ix (owner) WHERE owner = auth.uid()"), "42P17", "index predicate")
    conn.rollback()


@case
def force_parallel_mode(t):
    """force_parallel_mode = on: statements whose plan is parallel safe run under a Gather, the
    helpers in a parallel worker; PL/pgSQL, DO blocks and SQL functions under the same setting."""
    conn = t.connect()
    notices = []
    conn.add_notice_handler(lambda d: notices.append(d.message_primary))
    conn.execute("SET force_parallel_mode = on")
    conn.commit()
    for who in (t.who, t.other, t.who):
        t.bind(conn, who)
        # PG15 keeps a top-level Gather off plans carrying initPlans; these two have none
        for sql in ("SELECT auth.uid(), auth.has_role('editor')",
                    "SELECT id, auth.has_role(required_role) FROM ctx.docs"):
            plan = plan_text(conn, "EXPLAIN (COSTS OFF) " + sql)
            assert "Gather" in plan, f"{sql}:\n{plan}"
        same(val(conn, fill("SELECT @PROBE@")), who.probe(), f"{who.name}: probe")
        same(val(conn, "SELECT count(*) FROM ctx.rls_docs"), len(who.own()), f"{who.name}: RLS")
        same(rows(conn, "SELECT id, auth.has_role(required_role) FROM ctx.docs ORDER BY id"),
             [(i, who.has(r)) for i, *_, r in DOCS], f"{who.name}: has_role(column)")
        same(val(conn, "SELECT ctx.plp_probe()"), who.probe(), f"{who.name}: PL/pgSQL")
        same(row(conn, SQL_FUNCS), sql_funcs_want(who), f"{who.name}: SQL functions")
        notices.clear()
        conn.execute("DO $$ DECLARE x uuid; BEGIN x := auth.uid(); RAISE NOTICE '%', coalesce(x::text, 'anon'); END $$")
        same(notices, [who.u()], f"{who.name}: DO")
        conn.commit()


@case
def helpers_as_initplans_off(t):
    """SET auth.helpers_as_initplans = off (user-settable): plain calls everywhere, same answers;
    a statement prepared with the rewrite keeps working when it is turned off, and the reverse."""
    conn = t.connect()
    conn.execute("PREPARE with_rewrite AS SELECT count(*) FROM ctx.rls_docs")
    conn.execute("SET auth.helpers_as_initplans = off")
    conn.execute("PREPARE without_rewrite AS SELECT count(*) FROM ctx.docs WHERE owner = auth.uid()")
    conn.commit()
    for step, who in enumerate(t.seq()):
        t.bind(conn, who)
        conn.execute("SELECT set_config('auth.helpers_as_initplans', %s, true)", ("off" if step % 2 == 0 else "on",))
        what = f"step {step} ({who.name})"
        same(val(conn, fill("SELECT @PROBE@")), who.probe(), what)
        same(val(conn, "SELECT ctx.plp_probe()"), who.probe(), what)
        same(val(conn, "SELECT count(*) FROM ctx.rls_docs"), len(who.own()), what)
        same(val(conn, "EXECUTE with_rewrite"), len(who.own()), what)
        same(val(conn, "EXECUTE without_rewrite"), len(who.own()), what)
        same(val(conn, "SELECT count(*) FROM ctx.plist WHERE owner = auth.uid()"), 0 if who.anon else 40, what)
        plan = plan_text(conn, "EXPLAIN (COSTS OFF) SELECT * FROM ctx.docs WHERE owner = auth.uid()")
        assert ("InitPlan" in plan) == (step % 2 == 1), f"{what}:\n{plan}"
        conn.commit()


# ------------------------------------------------------------------------------- the runner
PARAMS = [pytest.param(name, mode, id=f"{name}-{mode}") for name in CASES for mode in ("token", "anon")]


@pytest.mark.parametrize("name,mode", PARAMS)
def test_context(env, name, mode):
    start = env.log_size()
    t = T(env, mode)
    try:
        CASES[name](t)
    except BaseException as e:
        crash = env.crash_lines(start, wait=3.0 if isinstance(e, psycopg.OperationalError) else 0.0)
        if crash:
            raise AssertionError(f"the server crashed during this case: {e!r}\nserver log:\n  "
                                 + "\n  ".join(crash)) from e
        raise
    finally:
        t.close()
    crash = env.crash_lines(start)
    assert not crash, "server log during this case:\n  " + "\n  ".join(crash)


def test_server_log_has_no_crash(env):
    """No crash line in the server log since this module started."""
    lines = env.crash_lines(env.log_start, context=False)
    assert not lines, f"{len(lines)} crash lines in {env.log} during this module:\n  " + "\n  ".join(lines[:40])


def test_long_lived_connection_survived(env):
    """A crash would have reset every connection: the one opened at the start still has its backend."""
    try:
        pid = env.long_conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    except psycopg.Error as e:
        pytest.fail(f"the connection opened at module start (backend {env.long_pid}) was lost: {e!r}")
    assert pid == env.long_pid
