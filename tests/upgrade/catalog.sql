-- Everything the extension owns in this database, one line per fact, as text that compares
-- equal between two databases exactly when the schemas are the same: a fresh install and an
-- upgraded one must produce the same set (tests/upgrade/run.py). Column order and oids are
-- left out (ALTER TABLE … ADD COLUMN appends; oids differ), everything else is in.
WITH ext AS (SELECT oid FROM pg_catalog.pg_extension WHERE extname = 'auth_ext'),
members AS (
  SELECT pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid) AS what
    FROM pg_catalog.pg_depend d, ext WHERE d.refobjid = ext.oid AND d.deptype = 'e'),
rels AS (
  SELECT c.oid, c.relname, c.relkind FROM pg_catalog.pg_class c
   WHERE c.relnamespace = 'auth'::pg_catalog.regnamespace)
SELECT 'member ' || what FROM members
UNION ALL
SELECT pg_catalog.format('relation %s kind=%s persistence=%s options=%s rls=%s force=%s acl=%s comment=%s',
       c.relname, c.relkind, c.relpersistence, c.reloptions, c.relrowsecurity, c.relforcerowsecurity,
       c.relacl, pg_catalog.obj_description(c.oid, 'pg_class'))
  FROM pg_catalog.pg_class c WHERE c.relnamespace = 'auth'::pg_catalog.regnamespace
UNION ALL
SELECT pg_catalog.format('column %s.%s %s notnull=%s default=%s generated=%s identity=%s collation=%s acl=%s',
       r.relname, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_catalog.pg_get_expr(d.adbin, d.adrelid), a.attgenerated, a.attidentity, a.attcollation, a.attacl)
  FROM rels r JOIN pg_catalog.pg_attribute a ON a.attrelid = r.oid
  LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT pg_catalog.format('constraint %s.%s %s', r.relname, k.conname, pg_catalog.pg_get_constraintdef(k.oid))
  FROM rels r JOIN pg_catalog.pg_constraint k ON k.conrelid = r.oid
UNION ALL
SELECT 'index ' || pg_catalog.pg_get_indexdef(i.indexrelid)
  FROM rels r JOIN pg_catalog.pg_index i ON i.indrelid = r.oid
UNION ALL
SELECT pg_catalog.format('trigger %s enabled=%s', pg_catalog.pg_get_triggerdef(t.oid), t.tgenabled)
  FROM rels r JOIN pg_catalog.pg_trigger t ON t.tgrelid = r.oid WHERE NOT t.tgisinternal
UNION ALL
SELECT pg_catalog.format('policy %s.%s %s', p.tablename, p.policyname, p.qual)
  FROM pg_catalog.pg_policies p WHERE p.schemaname = 'auth'
UNION ALL
SELECT pg_catalog.format('view %s %s', r.relname, pg_catalog.pg_get_viewdef(r.oid))
  FROM rels r WHERE r.relkind = 'v'
UNION ALL
SELECT pg_catalog.format('function %s(%s) returns %s lang=%s src=%s bin=%s volatile=%s parallel=%s strict=%s secdef=%s leakproof=%s config=%s support=%s cost=%s rows=%s acl=%s comment=%s',
       p.proname, pg_catalog.pg_get_function_arguments(p.oid), pg_catalog.pg_get_function_result(p.oid),
       l.lanname, CASE WHEN l.lanname = 'c' THEN p.prosrc ELSE pg_catalog.md5(p.prosrc) END, p.probin,
       p.provolatile, p.proparallel, p.proisstrict, p.prosecdef, p.proleakproof, p.proconfig, p.prosupport,
       p.procost, p.prorows, p.proacl, pg_catalog.obj_description(p.oid, 'pg_proc'))
  FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_language l ON l.oid = p.prolang
 WHERE p.pronamespace = 'auth'::pg_catalog.regnamespace
UNION ALL
SELECT pg_catalog.format('event trigger %s on %s tags=%s function=%s enabled=%s',
       e.evtname, e.evtevent, e.evttags, e.evtfoid::pg_catalog.regproc, e.evtenabled)
  FROM pg_catalog.pg_event_trigger e
UNION ALL
SELECT pg_catalog.format('dumped table %s condition %s', c.relname, x.cond)
  FROM pg_catalog.pg_extension e,
       ROWS FROM (pg_catalog.unnest(e.extconfig), pg_catalog.unnest(e.extcondition)) AS x(rel, cond)
  JOIN pg_catalog.pg_class c ON c.oid = x.rel
 WHERE e.extname = 'auth_ext'
UNION ALL
SELECT pg_catalog.format('schema auth owner-is-extension-owner=%s acl=%s',
       n.nspowner = (SELECT extowner FROM pg_catalog.pg_extension WHERE extname = 'auth_ext'), n.nspacl)
  FROM pg_catalog.pg_namespace n WHERE n.nspname = 'auth'
ORDER BY 1;
