//! Reading one row of one of the extension's tables by a unique index, without SQL: what the
//! account lookup of a first bind needs, at the cost of an index probe instead of a parse,
//! plan and executor start (issue 11's profile).
//!
//! No name is resolved through the caller's search path (relations by oid, columns and indexes
//! by name within those relations), no function runs but the index's own equality, and the
//! read sees what the SQL it replaces saw. Like that SQL (run as the
//! owner), it bypasses the caller's privileges on the table: callers decide what to expose.

use pgrx::pg_sys;
use std::ffi::CStr;

/// One equality condition: the heap column, the equality function of its type, the value.
pub struct Equals {
    pub column: &'static CStr,
    pub eq_proc: u32,
    /// The collation the index compares with (text keys); `InvalidOid` for others.
    pub collation: pg_sys::Oid,
    pub value: pg_sys::Datum,
}

/// The values (`None` for NULL) of `columns` in the row of `table` whose `index` key equals
/// `keys`, handed to `read` while the row is pinned (varlena values may point into it), or
/// `None` when no row is visible.
pub fn by_unique_index<R>(
    table: pg_sys::Oid,
    index: &CStr,
    keys: &[Equals],
    columns: &[&CStr],
    read: impl FnOnce(&[Option<pg_sys::Datum>]) -> R,
) -> Option<R> {
    unsafe {
        let index_oid = pg_sys::get_relname_relid(index.as_ptr(), pg_sys::get_rel_namespace(table));
        if index_oid == pg_sys::InvalidOid {
            pgrx::error!(
                "auth_ext: index {} of the extension is missing",
                index.to_string_lossy()
            );
        }
        let attnum = |c: &CStr| {
            let n = pg_sys::get_attnum(table, c.as_ptr());
            if n == pg_sys::InvalidAttrNumber as pg_sys::AttrNumber {
                pgrx::error!(
                    "auth_ext: column {} of an extension table is missing",
                    c.to_string_lossy()
                );
            }
            n
        };
        let mut scankeys: Vec<pg_sys::ScanKeyData> = Vec::with_capacity(keys.len());
        for k in keys {
            let mut sk = std::mem::zeroed::<pg_sys::ScanKeyData>();
            pg_sys::ScanKeyEntryInitialize(
                &mut sk,
                0,
                attnum(k.column),
                pg_sys::BTEqualStrategyNumber as pg_sys::StrategyNumber,
                pg_sys::InvalidOid,
                k.collation,
                pg_sys::Oid::from(k.eq_proc),
                k.value,
            );
            scankeys.push(sk);
        }
        let wanted: Vec<usize> = columns.iter().map(|c| attnum(c) as usize - 1).collect();
        // The snapshot a query run through SPI at this point would use: once the transaction
        // has written (e.g. `auth.sign_in` earlier in the same statement made the session),
        // a new command and snapshot that see those writes; until then the caller's.
        let wrote = pg_sys::GetCurrentTransactionIdIfAny() != pg_sys::InvalidTransactionId;
        let snapshot = if wrote && !pg_sys::IsInParallelMode() {
            pg_sys::CommandCounterIncrement();
            pg_sys::GetTransactionSnapshot()
        } else if pg_sys::ActiveSnapshotSet() {
            pg_sys::GetActiveSnapshot()
        } else {
            pg_sys::GetTransactionSnapshot()
        };
        let snapshot = pg_sys::RegisterSnapshot(snapshot);
        let rel = pg_sys::table_open(table, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        let scan = pg_sys::systable_beginscan(
            rel,
            index_oid,
            true,
            snapshot,
            scankeys.len() as i32,
            scankeys.as_mut_ptr(),
        );
        let tuple = pg_sys::systable_getnext(scan);
        let out = if tuple.is_null() {
            None
        } else {
            let desc = (*rel).rd_att;
            let natts = (*desc).natts as usize;
            let mut values = vec![pg_sys::Datum::from(0); natts];
            let mut nulls = vec![true; natts];
            pg_sys::heap_deform_tuple(tuple, desc, values.as_mut_ptr(), nulls.as_mut_ptr());
            let picked: Vec<Option<pg_sys::Datum>> = wanted
                .iter()
                .map(|&i| (!nulls[i]).then_some(values[i]))
                .collect();
            Some(read(&picked))
        };
        pg_sys::systable_endscan(scan);
        pg_sys::UnregisterSnapshot(snapshot);
        // The lock is kept to the transaction's end, as a query's would be.
        pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        out
    }
}
