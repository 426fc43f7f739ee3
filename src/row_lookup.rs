//! Reading one row of one of the extension's tables by a unique index, without SQL: what the
//! account lookup of a first bind needs, at the cost of an index probe instead of a parse,
//! plan and executor start (issue 11's profile).
//!
//! No name is resolved through the caller's search path (relations by oid, columns and indexes
//! by name within those relations, resolved once per backend and again after the table
//! changes), no function runs but the index's own equality, and the read sees what the SQL it
//! replaces saw. Like that SQL (run as the owner), it bypasses the caller's privileges on the
//! table: callers decide what to expose.

use crate::invalidation::{self, Watched};
use pgrx::pg_sys;
use std::cell::UnsafeCell;
use std::ffi::CStr;

/// One key column of a unique index: its name, the equality function of its type, and the
/// collation the index compares with (text keys; `InvalidOid` for others).
pub struct KeyColumn {
    pub name: &'static CStr,
    pub eq_proc: u32,
    pub collation: pg_sys::Oid,
}

/// A lookup of some columns of one table by one unique index, with its resolution.
pub struct Lookup {
    table: &'static Watched,
    index: &'static CStr,
    keys: &'static [KeyColumn],
    columns: &'static [&'static CStr],
    resolved: Resolution,
}

/// The lookup's oids and attribute numbers once resolved in this backend.
struct Resolution(UnsafeCell<Option<Resolved>>);

// SAFETY: a backend is single-threaded; a lookup's resolution is only touched by `resolve`.
unsafe impl Sync for Resolution {}

impl Lookup {
    /// `columns` of the row of `table` whose `index` key (the `keys` columns) equals the
    /// given values.
    pub const fn new(
        table: &'static Watched,
        index: &'static CStr,
        keys: &'static [KeyColumn],
        columns: &'static [&'static CStr],
    ) -> Lookup {
        Lookup {
            table,
            index,
            keys,
            columns,
            resolved: Resolution(UnsafeCell::new(None)),
        }
    }
}

/// Oids and attribute numbers of a lookup, and the table's invalidation counter they were
/// resolved at (an index or column change invalidates the table, so they are resolved again).
struct Resolved {
    gen: u64,
    /// The extension's table the lookup names, and the relation read: the table itself, or
    /// this node's placement of it under Citus (`citus::local_placement`).
    shell: pg_sys::Oid,
    table: pg_sys::Oid,
    index: pg_sys::Oid,
    columns: Vec<usize>,
}

fn resolve(l: &Lookup) -> &Resolved {
    // SAFETY: backends are single-threaded; no reference outlives one lookup.
    let slot = unsafe { &mut *l.resolved.0.get() };
    let shell = l.table.relid();
    let gen = invalidation::generation(&[l.table]);
    if slot
        .as_ref()
        .is_some_and(|r| r.gen == gen && r.shell == shell)
    {
        return slot.as_ref().expect("just checked");
    }
    let placement = crate::citus::local_placement(l.table);
    let table = placement.relid;
    let attnum = |c: &CStr| unsafe {
        let n = pg_sys::get_attnum(table, c.as_ptr());
        if n == pg_sys::InvalidAttrNumber as pg_sys::AttrNumber {
            pgrx::error!(
                "auth_ext: column {} of an extension table is missing",
                c.to_string_lossy()
            );
        }
        n
    };
    let index_name =
        std::ffi::CString::new(format!("{}{}", l.index.to_string_lossy(), placement.suffix))
            .expect("no NUL");
    let index =
        unsafe { pg_sys::get_relname_relid(index_name.as_ptr(), pg_sys::get_rel_namespace(table)) };
    if index == pg_sys::InvalidOid {
        pgrx::error!(
            "auth_ext: index {} of the extension is missing",
            index_name.to_string_lossy()
        );
    }
    // The probe names index columns by position: the index must be unique on exactly the key
    // columns, in their order.
    let keys: Vec<pg_sys::AttrNumber> = l.keys.iter().map(|k| attnum(k.name)).collect();
    let indexes_keys = unsafe {
        let irel = pg_sys::index_open(index, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        let ind = (*irel).rd_index;
        let indkey = (*ind).indkey.values.as_ptr();
        let ok = (*ind).indisunique
            && (*ind).indnkeyatts as usize == keys.len()
            && keys.iter().enumerate().all(|(i, a)| *indkey.add(i) == *a);
        pg_sys::index_close(irel, pg_sys::NoLock as pg_sys::LOCKMODE);
        ok
    };
    if !indexes_keys {
        pgrx::error!(
            "auth_ext: index {} of the extension is not unique on its key columns",
            index_name.to_string_lossy()
        );
    }
    *slot = Some(Resolved {
        gen,
        shell,
        table,
        index,
        columns: l.columns.iter().map(|c| attnum(c) as usize - 1).collect(),
    });
    slot.as_ref().expect("just set")
}

/// The values (`None` for NULL) of `l.columns` in the row whose key equals `values` (one per
/// key column), handed to `read` while the row is pinned (varlena values may point into it),
/// or `None` when no row is visible.
pub fn by_unique_index<R>(
    l: &Lookup,
    values: &[pg_sys::Datum],
    read: impl FnOnce(&[Option<pg_sys::Datum>]) -> R,
) -> Option<R> {
    // A shorter key would match on a prefix of the index: never a unique row.
    assert_eq!(values.len(), l.keys.len(), "one value per key column");
    let r = resolve(l);
    unsafe {
        let mut scankeys: Vec<pg_sys::ScanKeyData> = Vec::with_capacity(values.len());
        // Keys name index columns: the i-th key column is the index's i-th column.
        for (i, (k, value)) in l.keys.iter().zip(values).enumerate() {
            let mut sk = std::mem::zeroed::<pg_sys::ScanKeyData>();
            pg_sys::ScanKeyEntryInitialize(
                &mut sk,
                0,
                (i + 1) as pg_sys::AttrNumber,
                pg_sys::BTEqualStrategyNumber as pg_sys::StrategyNumber,
                pg_sys::InvalidOid,
                k.collation,
                pg_sys::Oid::from(k.eq_proc),
                *value,
            );
            scankeys.push(sk);
        }
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
        // An index scan as the executor runs one, both locks kept to the transaction's end as
        // a query's are (systable_beginscan would release the index lock at every probe).
        let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
        let rel = pg_sys::table_open(r.table, lock);
        let index = pg_sys::index_open(r.index, lock);
        let nkeys = scankeys.len() as i32;
        let scan = pg_sys::index_beginscan(rel, index, snapshot, nkeys, 0);
        pg_sys::index_rescan(scan, scankeys.as_mut_ptr(), nkeys, std::ptr::null_mut(), 0);
        let slot = pg_sys::table_slot_create(rel, std::ptr::null_mut());
        let out = if pg_sys::index_getnext_slot(
            scan,
            pg_sys::ScanDirection::ForwardScanDirection,
            slot,
        ) {
            pg_sys::slot_getallattrs(slot);
            let values = (*slot).tts_values;
            let nulls = (*slot).tts_isnull;
            let picked: Vec<Option<pg_sys::Datum>> = r
                .columns
                .iter()
                .map(|&i| (!*nulls.add(i)).then(|| *values.add(i)))
                .collect();
            Some(read(&picked))
        } else {
            None
        };
        pg_sys::ExecDropSingleTupleTableSlot(slot);
        pg_sys::index_endscan(scan);
        pg_sys::UnregisterSnapshot(snapshot);
        pg_sys::index_close(index, pg_sys::NoLock as pg_sys::LOCKMODE);
        pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        out
    }
}
