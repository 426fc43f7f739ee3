//! Running under Citus (docs/citus.md): whether Citus is installed in this database, whether
//! this backend executes a coordinator's query (a worker's "citus_internal" connection), how a
//! bound identity is handed to the workers, and which relation holds this node's copy of a
//! trust table once `auth.distribute_trust()` made it a reference table.
//!
//! Reads of the trust tables never go through the Citus planner: a shard query on a worker may
//! not start another distributed query ("cannot execute a distributed query from a query on a
//! shard"), and the coordinator's shell of a reference table holds no rows. Every node that
//! evaluates a policy holds a placement of every reference table, so reads use the local
//! placement directly (by oid, or by its name in SQL).

use crate::errors::raise_with_hint;
use crate::invalidation::Watched;
use crate::spi::OrFail;
use auth_core::{AuthError, ErrorCode};
use pgrx::{pg_sys, Spi};
use std::ffi::CString;

/// Citus is installed in this database (then its planner sees every query).
pub fn installed() -> bool {
    unsafe { pg_sys::get_extension_oid(c"citus".as_ptr(), true) != pg_sys::InvalidOid }
}

/// This backend runs tasks for a Citus coordinator: Citus names its connections so. Not an
/// authenticated fact (a client may name itself so); it is only ever used to add an error.
pub fn internal_backend() -> bool {
    // SAFETY: application_name is a GUC string PostgreSQL owns; read and compared at once.
    unsafe {
        let p = pg_sys::application_name;
        !p.is_null()
            && std::ffi::CStr::from_ptr(p)
                .to_bytes()
                .starts_with(b"citus_internal")
    }
}

/// The error of an identity that did not reach the node evaluating a policy.
pub fn not_propagated(detail: &str) -> ! {
    raise_with_hint(
        AuthError::new(ErrorCode::NotPropagated, detail.to_string()),
        "On Citus, bind the token with SELECT auth.bind($1) (or auth.bind(NULL) for an anonymous request) inside BEGIN … COMMIT; see docs/citus.md.",
    )
}

/// Refuses to evaluate an identity in a worker's task whose transaction carries no binding
/// from `auth.bind`: without it the worker would silently see an anonymous user.
pub fn check_binding_arrived() {
    if internal_backend() && !(unsafe { pg_sys::IsTransactionBlock() } && crate::gucs::BOUND.get())
    {
        not_propagated(
            "this Citus worker task carries no identity: the coordinator's transaction did not bind one with auth.bind",
        );
    }
}

/// Hands the binding of the current transaction (token or anonymous) to every worker the
/// transaction uses: `SET LOCAL` statements that Citus forwards to the workers' remote
/// transactions, with forwarding and read transactions forced on for this transaction only.
/// The token travels to the workers as a literal of that statement (docs/citus.md says where
/// it can be seen).
pub fn propagate(token: Option<&str>) {
    if !unsafe { pg_sys::IsTransactionBlock() } {
        not_propagated(
            "auth.bind ran outside a transaction block, so the identity could not reach the workers",
        );
    }
    let value = token.unwrap_or("");
    let statements = [
        "SET LOCAL citus.propagate_set_commands = 'local'".to_string(),
        "SET LOCAL citus.select_opens_transaction_block = on".to_string(),
        format!("SET LOCAL auth.jwt = {}", pgrx::spi::quote_literal(value)),
        "SET LOCAL auth.bound = on".to_string(),
    ];
    Spi::connect_mut(|c| {
        for s in &statements {
            c.update(s, None, &[])?;
        }
        Ok::<_, pgrx::spi::Error>(())
    })
    .or_fail();
}

/// The relation holding this node's rows of `table`, and the suffix of its indexes' names:
/// the table itself (no suffix), or its local placement when it is a Citus reference table.
pub struct Placement {
    pub relid: pg_sys::Oid,
    pub suffix: String,
}

impl Placement {
    /// `name` (an index or the table) of this placement, schema-qualified and quoted for SQL.
    pub fn qualified(&self, name: &str) -> String {
        format!(
            "auth.{}",
            pgrx::spi::quote_identifier(format!("{name}{}", self.suffix))
        )
    }
}

/// Where this node keeps the rows of `table` (see [`Placement`]). Runs one catalog query when
/// Citus is installed; callers keep the answer until the table's next invalidation.
pub fn local_placement(table: &Watched) -> Placement {
    let relid = table.relid();
    let local = Placement {
        relid,
        suffix: String::new(),
    };
    if !installed() {
        return local;
    }
    let shards: Vec<i64> = crate::privilege::as_owner(|| {
        Spi::connect(|c| {
            c.select(
                "SELECT shardid FROM pg_catalog.pg_dist_shard WHERE logicalrelid OPERATOR(pg_catalog.=) $1 ORDER BY shardid",
                None,
                &[relid.into()],
            )?
            .map(|r| r.get::<i64>(1).map(|v| v.unwrap_or_default()))
            .collect::<Result<Vec<i64>, _>>()
        })
    })
    .or_fail();
    match shards.as_slice() {
        [] => local,
        [shard] => {
            let suffix = format!("_{shard}");
            let name = CString::new(format!("{}{suffix}", table.relname)).expect("no NUL");
            let placement = unsafe {
                pg_sys::get_relname_relid(name.as_ptr(), pg_sys::get_rel_namespace(relid))
            };
            if placement == pg_sys::InvalidOid {
                raise_with_hint(
                    AuthError::new(
                        ErrorCode::NotConfigured,
                        format!(
                            "this node holds no copy of the reference table auth.{}",
                            table.relname
                        ),
                    ),
                    "On the coordinator: SELECT citus_set_coordinator_host(…) if the coordinator is not in the metadata, and SELECT replicate_reference_tables() after adding a node.",
                );
            }
            Placement {
                relid: placement,
                suffix,
            }
        }
        _ => raise_with_hint(
            AuthError::new(
                ErrorCode::NotConfigured,
                format!(
                    "auth.{} is distributed with several shards; trust tables must be reference tables",
                    table.relname
                ),
            ),
            "Run SELECT auth.distribute_trust() on a fresh install; see docs/citus.md.",
        ),
    }
}
