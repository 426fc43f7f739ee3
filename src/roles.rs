//! Role-claim sync: `raw_app_meta_data.roles` of every user equals what the registered grant
//! tables say, through `auth.sync_role_claim`, `auth.enable_role_sync`,
//! `auth.disable_role_sync` and `auth.resync_role_claims`.
//!
//! Which roles a user has because of grants (and which of those they also had by hand) is
//! kept in `auth.users.role_sync`, so roles set by hand are never removed.
//!
//! Every change recomputes the synced roles of the affected users from the grant tables
//! themselves (not by counting), so a repeated or overlapping trigger cannot drift. Concurrent
//! writers serialise per user: the affected `auth.users` rows are locked (in id order, so two
//! statements cannot deadlock) before the grant tables are read, and in READ COMMITTED that
//! read takes a snapshot after the lock, so it sees every grant committed before. Under
//! REPEATABLE READ a concurrent change to the same user is a serialization failure to retry.

use crate::errors::raise;
use crate::privilege;
use crate::spi::{self, OrFail};
use auth_core::{AuthError, ErrorCode};
use pgrx::datum::Uuid;
use pgrx::prelude::*;
use pgrx::spi::{quote_identifier, quote_literal, SpiClient};
use pgrx::{pg_sys, JsonB, PgTrigger};
use serde_json::json;

/// A registered grant table.
struct Source {
    table: pg_sys::Oid,
    /// Schema-qualified, quoted.
    name: String,
    /// Fixed role, or `=column`.
    role: String,
    user_column: String,
    /// Still a table, with the column types registration accepted. Checked at every sync:
    /// the table's owner could since have altered a column to a type of its own with a cast,
    /// or (PostgreSQL 15) turned the table into a view over a function of its own, either of
    /// which would then run as the extension owner.
    types_ok: bool,
}

impl Source {
    fn role_column(&self) -> Option<&str> {
        self.role.strip_prefix('=')
    }

    /// `SELECT user_id, role` of this source's grants to the users in `ids` (a FROM item
    /// aliased `a(id)`).
    fn granted_sql(&self, ids: &str) -> String {
        let ucol = quote_identifier(&self.user_column);
        match self.role_column() {
            Some(rcol) => format!(
                "SELECT g.{ucol}::pg_catalog.uuid AS user_id, g.{rcol}::pg_catalog.text AS role FROM {name} g JOIN {ids} ON a.id = g.{ucol} WHERE g.{rcol} IS NOT NULL",
                rcol = quote_identifier(rcol),
                name = self.name
            ),
            None => format!(
                "SELECT g.{ucol}::pg_catalog.uuid AS user_id, {role}::pg_catalog.text AS role FROM {name} g JOIN {ids} ON a.id = g.{ucol}",
                role = quote_literal(&self.role),
                name = self.name
            ),
        }
    }
}

fn sources(c: &SpiClient<'_>) -> Vec<Source> {
    let t = c
        .select(
            // The join skips a table dropped in this very transaction before the event trigger
            // ran. A role column is read with a cast to text only if that cast runs no function
            // (string types, an enum's I/O, a binary cast such as citext's).
            "SELECT s.grant_table::pg_catalog.oid, s.grant_table::pg_catalog.text, s.role, s.user_column::pg_catalog.text,
                    c.relkind IN ('r', 'p')
                    AND EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                             WHERE a.attrelid = s.grant_table AND a.attname = s.user_column AND NOT a.attisdropped
                               AND a.atttypid = 'pg_catalog.uuid'::pg_catalog.regtype)
                    AND (s.role NOT LIKE '=%' OR EXISTS (
                         SELECT 1 FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
                          WHERE a.attrelid = s.grant_table AND a.attname = pg_catalog.substr(s.role, 2) AND NOT a.attisdropped
                            AND (a.atttypid IN ('pg_catalog.text'::pg_catalog.regtype, 'pg_catalog.varchar'::pg_catalog.regtype,
                                                'pg_catalog.bpchar'::pg_catalog.regtype, 'pg_catalog.name'::pg_catalog.regtype)
                                 OR (t.typtype IN ('e', 'b') AND NOT EXISTS (
                                       SELECT 1 FROM pg_catalog.pg_cast k
                                        WHERE k.castsource = a.atttypid AND k.casttarget = 'pg_catalog.text'::pg_catalog.regtype
                                          AND k.castmethod <> 'b')))))
               FROM auth.role_sync_sources s JOIN pg_catalog.pg_class c ON c.oid = s.grant_table::pg_catalog.oid",
            None,
            &[],
        )
        .or_fail();
    t.map(|row| Source {
        table: row
            .get::<pg_sys::Oid>(1)
            .ok()
            .flatten()
            .unwrap_or(pg_sys::InvalidOid),
        name: row.get::<String>(2).ok().flatten().unwrap_or_default(),
        role: row.get::<String>(3).ok().flatten().unwrap_or_default(),
        user_column: row.get::<String>(4).ok().flatten().unwrap_or_default(),
        types_ok: row.get::<bool>(5).ok().flatten().unwrap_or(false),
    })
    .collect()
}

fn changed_shape(name: &str) -> String {
    format!(
        "grant table {name} is no longer a table with the column types auth.enable_role_sync accepts (user column uuid; role column text, varchar, char, name or an enum)"
    )
}

/// Raises unless every source in `srcs` still has the shape registration accepted.
fn check_types(srcs: &[Source]) {
    if let Some(s) = srcs.iter().find(|s| !s.types_ok) {
        crate::errors::invalid_parameter(format!(
            "{}; no roles were synced",
            changed_shape(&s.name)
        ));
    }
}

/// The sources that may be read; one whose shape changed grants nothing (its roles are
/// removed, the safe direction) and is reported in the server log, so that one table's owner
/// cannot stop every other sync, sign-up included.
fn readable(srcs: Vec<Source>) -> Vec<Source> {
    srcs.into_iter()
        .filter(|s| {
            if !s.types_ok {
                crate::errors::log_server_only(&format!(
                    "auth_ext: {}; it grants no roles until fixed",
                    changed_shape(&s.name)
                ));
            }
            s.types_ok
        })
        .collect()
}

/// Above this many affected users a statement takes the bulk path: one table lock instead of
/// a row lock per user.
const BULK_USERS: usize = 1000;

/// Recomputes the synced roles of `users`; returns how many users' roles changed. Runs as the
/// extension owner: the caller may be any role that can write a grant table.
///
/// Serialisation: every sync first locks `auth.role_sync_sources` — ROW EXCLUSIVE for a few
/// users (compatible with other small syncs, which then lock their users' rows in id order),
/// SHARE ROW EXCLUSIVE for a bulk statement (exclusive with every other sync, no row locks).
/// Either way the grant tables are read after the locks are held.
fn apply(users: &[Uuid]) -> i64 {
    if users.is_empty() {
        return 0;
    }
    // Bulk grants make large joins: JIT compilation would cost more than it saves, and the
    // grouping should stay in memory.
    let _settings = privilege::GucScope::new(&[(c"jit", c"off"), (c"work_mem", c"64MB")]);
    privilege::as_owner(|| {
        spi::run(|c| {
            let ids = || users.to_vec();
            if users.len() > BULK_USERS {
                c.update(
                    "LOCK TABLE auth.role_sync_sources IN SHARE ROW EXCLUSIVE MODE",
                    None,
                    &[],
                )?;
            } else {
                c.update(
                    "LOCK TABLE auth.role_sync_sources IN ROW EXCLUSIVE MODE",
                    None,
                    &[],
                )?;
                c.update(
                    "SELECT 1 FROM auth.users WHERE id = ANY ($1) ORDER BY id FOR NO KEY UPDATE",
                    None,
                    &[ids().into()],
                )?;
            }
            let srcs = readable(sources(c));
            let a = "unnest($1::pg_catalog.uuid[]) a(id)";
            let granted = if srcs.is_empty() {
                "SELECT NULL::pg_catalog.uuid AS user_id, NULL::pg_catalog.text AS role WHERE false"
                    .to_string()
            } else {
                srcs.iter()
                    .map(|s| s.granted_sql(a))
                    .collect::<Vec<_>>()
                    .join(" UNION ALL ")
            };
            let rows = c.update(
                &format!(
                    "WITH g AS ({granted}),
                          gg AS (SELECT user_id, array_agg(role) AS roles FROM g GROUP BY user_id)
                     SELECT u.id, u.raw_app_meta_data -> 'roles', u.role_sync, gg.roles
                       FROM auth.users u JOIN {a} ON a.id = u.id
                       LEFT JOIN gg ON gg.user_id = u.id"
                ),
                None,
                &[ids().into()],
            )?;
            let (mut upd_ids, mut upd_roles, mut upd_sync) = (Vec::new(), Vec::new(), Vec::new());
            let mut changed = 0i64;
            for row in rows {
                let id: Uuid = row.get(1)?.expect("users.id is not null");
                let current = row.get::<JsonB>(2)?.map(|j| j.0);
                let sync = row.get::<JsonB>(3)?.map(|j| j.0);
                let synced_prev =
                    auth_core::roles::of_value(sync.as_ref().and_then(|s| s.get("synced")));
                let kept_prev =
                    auth_core::roles::of_value(sync.as_ref().and_then(|s| s.get("kept")));
                let mut synced_new: Vec<String> = row.get(4)?.unwrap_or_default();
                synced_new.sort();
                synced_new.dedup();
                let (roles, kept) = auth_core::roles::merge(
                    &auth_core::roles::of_value(current.as_ref()),
                    &synced_prev,
                    &kept_prev,
                    &synced_new,
                );
                let roles_json = json!(roles);
                let roles_change = current.as_ref() != Some(&roles_json);
                let sync_change = synced_new != synced_prev || kept != kept_prev;
                if roles_change || sync_change {
                    changed += roles_change as i64;
                    upd_ids.push(id);
                    upd_roles.push(roles_change.then(|| roles_json.to_string()));
                    upd_sync.push(
                        (!synced_new.is_empty())
                            .then(|| json!({"synced": synced_new, "kept": kept}).to_string()),
                    );
                }
            }
            if !upd_ids.is_empty() {
                // Two statements, not a CASE around now(): Citus refuses functions inside CASE
                // in writes to a reference table (auth.distribute_trust).
                for roles_changed in [true, false] {
                    c.update(
                        if roles_changed {
                            "UPDATE auth.users u
                                SET raw_app_meta_data = jsonb_set(u.raw_app_meta_data, '{roles}', v.roles::pg_catalog.jsonb),
                                    role_sync = v.sync::pg_catalog.jsonb,
                                    updated_at = now()
                               FROM unnest($1::pg_catalog.uuid[], $2::pg_catalog.text[], $3::pg_catalog.text[]) AS v(id, roles, sync)
                              WHERE u.id = v.id AND v.roles IS NOT NULL"
                        } else {
                            "UPDATE auth.users u
                                SET role_sync = v.sync::pg_catalog.jsonb
                               FROM unnest($1::pg_catalog.uuid[], $2::pg_catalog.text[], $3::pg_catalog.text[]) AS v(id, roles, sync)
                              WHERE u.id = v.id AND v.roles IS NULL"
                        },
                        None,
                        &[
                            upd_ids.clone().into(),
                            upd_roles.clone().into(),
                            upd_sync.clone().into(),
                        ],
                    )?;
                }
            }
            Ok::<_, pgrx::spi::Error>(changed)
        })
    })
}

/// The user ids a grant table's rows name (all of them, or those in a transition table).
fn user_ids(c: &SpiClient<'_>, from: &str, user_column: &str) -> Vec<Uuid> {
    c.select(
        &format!(
            "SELECT DISTINCT {col}::pg_catalog.uuid FROM {from} WHERE {col} IS NOT NULL",
            col = quote_identifier(user_column)
        ),
        None,
        &[],
    )
    .or_fail()
    .filter_map(|r| r.get::<Uuid>(1).ok().flatten())
    .collect()
}

fn users_with_synced_roles(c: &SpiClient<'_>) -> Vec<Uuid> {
    c.select(
        "SELECT id FROM auth.users WHERE role_sync IS NOT NULL",
        None,
        &[],
    )
    .or_fail()
    .filter_map(|r| r.get::<Uuid>(1).ok().flatten())
    .collect()
}

fn not_registered(table: &str, role: &str, user_column: &str) -> ! {
    raise(AuthError::new(
        ErrorCode::InsufficientPermissions,
        format!(
            "table {table} is not registered to grant role {} by column {user_column}; the database owner registers grant tables with auth.enable_role_sync({table}, {}, {})",
            quote_literal(role),
            quote_literal(role),
            quote_literal(user_column)
        ),
    ))
}

/// Trigger function for grant tables: `auth.sync_role_claim(role [, user_column])`, where role
/// is a fixed role name or `=column`. Works FOR EACH ROW and, with transition tables, FOR EACH
/// STATEMENT (what `auth.enable_role_sync` installs), plus AFTER TRUNCATE.
#[pg_trigger]
fn sync_role_claim<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<pgrx::heap_tuple::PgHeapTuple<'a, pgrx::AllocatedByRust>>, pgrx::PgTriggerError>
{
    let args = trigger.extra_args()?;
    if args.is_empty() || args.len() > 2 {
        crate::errors::invalid_parameter(
            "auth.sync_role_claim takes a role (or '=column') and optionally the user id column",
        );
    }
    let role = args[0].clone();
    let user_column = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "user_id".to_string());
    if !matches!(trigger.when()?, pgrx::PgTriggerWhen::After) {
        crate::errors::invalid_parameter("auth.sync_role_claim must be an AFTER trigger");
    }
    let relid = trigger.relid()?;
    let td = trigger.trigger_data() as *const pg_sys::TriggerData as *mut pg_sys::TriggerData;
    let op = trigger.op()?;
    let level = trigger.level();
    let table_name = format!("{}.{}", trigger.table_schema()?, trigger.table_name()?);
    let transition = (
        trigger.old_transition_table_name()?,
        trigger.new_transition_table_name()?,
    );
    let affected = privilege::as_owner(|| {
        Spi::connect(|c| {
            let srcs = sources(c);
            // Only the owner decides which table grants which role: a table owner attaching this
            // trigger to their own table gets an error, not a role.
            let Some(this) = srcs
                .iter()
                .find(|s| s.table == relid && s.role == role && s.user_column == user_column)
            else {
                not_registered(&table_name, &role, &user_column);
            };
            check_types(std::slice::from_ref(this));
            match (op, level) {
                (pgrx::PgTriggerOperation::Truncate, _) => users_with_synced_roles(c),
                (_, pgrx::PgTriggerLevel::Row) => {
                    let mut ids: Vec<Uuid> = Vec::new();
                    for tuple in [trigger.old(), trigger.new()].into_iter().flatten() {
                        let id: Option<Uuid> =
                            tuple.get_by_name(&user_column).unwrap_or_else(|_| {
                                crate::errors::invalid_parameter(format!(
                                    "column \"{user_column}\" of {table_name} must exist and be of type uuid"
                                ))
                            });
                        if let Some(id) = id {
                            ids.push(id);
                        }
                    }
                    ids
                }
                (_, pgrx::PgTriggerLevel::Statement) => {
                    let (old, new) = transition;
                    if old.is_none() && new.is_none() {
                        crate::errors::invalid_parameter(
                            "a FOR EACH STATEMENT auth.sync_role_claim trigger needs REFERENCING OLD TABLE or NEW TABLE (auth.enable_role_sync creates it so)",
                        );
                    }
                    unsafe { pg_sys::SPI_register_trigger_data(td) };
                    let mut ids: Vec<Uuid> = Vec::new();
                    for t in [old, new].into_iter().flatten() {
                        ids.extend(user_ids(c, &quote_identifier(t), &user_column));
                    }
                    ids.sort();
                    ids.dedup();
                    ids
                }
            }
        })
    });
    apply(&affected);
    Ok(None)
}

/// AFTER INSERT on auth.users: a new user gets the roles existing grant rows give them.
#[pg_trigger]
fn _sync_new_users<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<pgrx::heap_tuple::PgHeapTuple<'a, pgrx::AllocatedByRust>>, pgrx::PgTriggerError>
{
    let td = trigger.trigger_data() as *const pg_sys::TriggerData as *mut pg_sys::TriggerData;
    let Some(new) = trigger.new_transition_table_name()? else {
        return Ok(None);
    };
    let ids = privilege::as_owner(|| {
        Spi::connect(|c| {
            if c.select("SELECT 1 FROM auth.role_sync_sources LIMIT 1", None, &[])
                .map(|t| t.is_empty())
                .unwrap_or(true)
            {
                return Vec::new();
            }
            unsafe { pg_sys::SPI_register_trigger_data(td) };
            user_ids(c, &quote_identifier(new), "id")
        })
    });
    apply(&ids);
    Ok(None)
}

fn column_type(table: pg_sys::Oid, column: &str) -> Option<String> {
    Spi::get_one_with_args::<String>(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = $1 AND attname = $2 AND attnum > 0 AND NOT attisdropped",
        &[table.into(), column.into()],
    )
    .unwrap_or(None)
}

/// (name suffix, event, REFERENCING clause) of the triggers enable_role_sync installs.
fn trigger_shapes() -> [(&'static str, &'static str, &'static str); 4] {
    [
        (
            "_insert",
            "INSERT",
            "REFERENCING NEW TABLE AS auth_sync_new",
        ),
        (
            "_update",
            "UPDATE",
            "REFERENCING OLD TABLE AS auth_sync_old NEW TABLE AS auth_sync_new",
        ),
        (
            "_delete",
            "DELETE",
            "REFERENCING OLD TABLE AS auth_sync_old",
        ),
        ("_truncate", "TRUNCATE", ""),
    ]
}

fn trigger_name(role: &str, user_column: &str) -> String {
    format!(
        "auth_role_sync_{}",
        auth_core::roles::trigger_suffix(role, user_column)
    )
}

/// The table's oid and its name as SQL would print it (schema-qualified when not on the
/// search_path).
fn oid_and_name(table: pgrx::PgRelation) -> (pg_sys::Oid, String) {
    let name = Spi::get_one_with_args::<String>(
        "SELECT $1::pg_catalog.regclass::pg_catalog.text",
        &[table.oid().into()],
    )
    .unwrap_or(None)
    .unwrap_or_else(|| crate::errors::invalid_parameter("no such table"));
    (table.oid(), name)
}

/// Registers `grant_table` as granting `role` (or, for `'=column'`, the role in that column)
/// to the user in `user_column`; installs its triggers and grants the roles its rows give
/// now. Returns the number of users whose roles changed. Owner/superuser only by default.
#[pg_extern(volatile, security_definer, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn enable_role_sync(
    grant_table: pgrx::PgRelation,
    role: &str,
    user_column: default!(&str, "'user_id'"),
) -> i64 {
    let (grant_table, name) = oid_and_name(grant_table);
    let kind = Spi::get_one_with_args::<String>(
        "SELECT relkind::pg_catalog.text FROM pg_class WHERE oid = $1",
        &[grant_table.into()],
    )
    .unwrap_or(None);
    if !matches!(kind.as_deref(), Some("r") | Some("p")) {
        crate::errors::invalid_parameter(format!("{name} is not a table"));
    }
    match column_type(grant_table, user_column).as_deref() {
        Some("uuid") => {}
        Some(t) => crate::errors::invalid_parameter(format!(
            "column \"{user_column}\" of {name} is {t}; the user id column must be uuid"
        )),
        None => crate::errors::invalid_parameter(format!("{name} has no column \"{user_column}\"")),
    }
    if let Some(rcol) = role.strip_prefix('=') {
        match column_type(grant_table, rcol).as_deref() {
            Some("text") | Some("name") | Some("citext") => {}
            Some(t) if t.starts_with("character") => {}
            Some(t) => {
                let is_enum = Spi::get_one_with_args::<bool>(
                    "SELECT t.typtype = 'e' FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid WHERE a.attrelid = $1 AND a.attname = $2",
                    &[grant_table.into(), rcol.into()],
                )
                .unwrap_or(None)
                .unwrap_or(false);
                if !is_enum {
                    crate::errors::invalid_parameter(format!("column \"{rcol}\" of {name} is {t}; a role column must be text, varchar or an enum"));
                }
            }
            None => crate::errors::invalid_parameter(format!(
                "{name} has no column \"{rcol}\" for the role"
            )),
        }
    } else if role.is_empty() || role.chars().any(|c| c.is_control()) {
        crate::errors::invalid_parameter(
            "role must be a non-empty name without control characters, or '=column'",
        );
    }
    let trig = trigger_name(role, user_column);
    let args = format!("{}, {}", quote_literal(role), quote_literal(user_column));
    spi::run(|c| {
        let inserted = c
            .update(
                "INSERT INTO auth.role_sync_sources (grant_table, role, user_column) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING 1",
                None,
                &[grant_table.into(), role.into(), user_column.into()],
            )?
            .len();
        if inserted > 0 {
            // One statement trigger per event: PostgreSQL allows transition tables only on
            // single-event triggers.
            for (suffix, event, referencing) in trigger_shapes() {
                c.update(
                    &format!(
                        "CREATE TRIGGER {t} AFTER {event} ON {name} {referencing} FOR EACH STATEMENT EXECUTE FUNCTION auth.sync_role_claim({args})",
                        t = quote_identifier(format!("{trig}{suffix}"))
                    ),
                    None,
                    &[],
                )?;
            }
        }
        Ok::<_, pgrx::spi::Error>(())
    });
    let ids = Spi::connect(|c| user_ids(c, &name, user_column));
    apply(&ids)
}

/// Unregisters a grant table: drops its triggers and removes the roles only it granted.
/// Returns the number of users whose roles changed.
#[pg_extern(volatile, security_definer, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn disable_role_sync(
    grant_table: pgrx::PgRelation,
    role: &str,
    user_column: default!(&str, "'user_id'"),
) -> i64 {
    let (grant_table, name) = oid_and_name(grant_table);
    let removed = spi::run(|c| {
        c.update(
            "DELETE FROM auth.role_sync_sources WHERE grant_table = $1 AND role = $2 AND user_column = $3 RETURNING 1",
            None,
            &[grant_table.into(), role.into(), user_column.into()],
        )
        .map(|t| t.len())
    });
    if removed == 0 {
        crate::errors::invalid_parameter(format!(
            "{name} is not registered for role {} by {}",
            quote_literal(role),
            quote_literal(user_column)
        ));
    }
    let trig = trigger_name(role, user_column);
    spi::run(|c| {
        for (suffix, _, _) in trigger_shapes() {
            c.update(
                &format!(
                    "DROP TRIGGER IF EXISTS {} ON {name}",
                    quote_identifier(format!("{trig}{suffix}"))
                ),
                None,
                &[],
            )?;
        }
        Ok::<_, pgrx::spi::Error>(())
    });
    let ids = Spi::connect(users_with_synced_roles);
    apply(&ids)
}

/// Rebuilds every synced role from the grant tables (after loading grant rows with triggers
/// disabled, or a restore); returns the number of users whose roles changed.
#[pg_extern(volatile, security_definer, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn resync_role_claims() -> i64 {
    let ids = Spi::connect(|c| {
        let mut ids = users_with_synced_roles(c);
        for s in readable(sources(c)) {
            ids.extend(user_ids(c, &s.name, &s.user_column));
        }
        ids.sort();
        ids.dedup();
        ids
    });
    apply(&ids)
}
