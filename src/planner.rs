//! Planner support for the RLS helpers: `user_id = auth.uid()` is planned like
//! `user_id = (SELECT auth.uid())` — an initPlan evaluated once per execution, whose result
//! the per-row filter reads as a parameter. Policy authors get the speed of Supabase's
//! `(select …)` trick without writing it, and the value is never folded into a constant, so a
//! cached plan still asks for the identity of each execution.
//!
//! Implemented as a `SupportRequestSimplify` handler: when a helper call with constant
//! arguments is simplified during planning, it builds the plan of `SELECT <the call>` (a
//! childless Result node), registers it as an initPlan of the query level being planned with
//! the calls the planner itself uses for min/max optimisation, and returns the initPlan's
//! output Param.

use pgrx::pg_sys;

// optimizer/subselect.h (not in pgrx's bindings); stable since PostgreSQL 9.6. Called only
// through `pg_sys::ffi::pg_guard_ffi_boundary`, which turns a PostgreSQL ERROR into a Rust panic.
unsafe extern "C-unwind" {
    fn SS_make_initplan_output_param(
        root: *mut pg_sys::PlannerInfo,
        paramtype: pg_sys::Oid,
        paramtypmod: i32,
        paramcollation: pg_sys::Oid,
    ) -> *mut pg_sys::Param;
    fn SS_make_initplan_from_plan(
        root: *mut pg_sys::PlannerInfo,
        subroot: *mut pg_sys::PlannerInfo,
        plan: *mut pg_sys::Plan,
        prm: *mut pg_sys::Param,
    );
}

unsafe fn is_a(node: *const pg_sys::Node, tag: pg_sys::NodeTag) -> bool {
    !node.is_null() && (*node).type_ == tag
}

/// Whether the query level being planned reads any relation, function or VALUES list, i.e.
/// whether a per-row call could happen at all. A level without one (`SELECT auth.uid()`,
/// which the planner gives a single RTE_RESULT) evaluates the call once anyway, and is exactly
/// the shape PL/pgSQL runs as a "simple expression": it takes the plan's target list and
/// evaluates it without the executor, so an initPlan's Param would be read from an
/// execution-parameter array that does not exist (a crash). Dummy planner states without a
/// query (`expression_planner_with_deps`, used for cached expressions) are refused too.
unsafe fn scans_rows(root: *mut pg_sys::PlannerInfo) -> bool {
    let parse = (*root).parse;
    if parse.is_null() || (*parse).rtable.is_null() {
        return false;
    }
    let rtable = (*parse).rtable;
    (0..(*rtable).length as usize).any(|i| {
        let rte = (*(*rtable).elements.add(i)).ptr_value as *const pg_sys::RangeTblEntry;
        !rte.is_null() && (*rte).rtekind != pg_sys::RTEKind::RTE_RESULT
    })
}

/// Returns the replacement expression, or null to leave the call as it is.
unsafe fn simplify(req: *mut pg_sys::SupportRequestSimplify) -> *mut pg_sys::Node {
    let root = (*req).root;
    let fcall = (*req).fcall;
    if root.is_null() || (*root).glob.is_null() || !crate::gucs::HELPERS_AS_INITPLANS.get() {
        return std::ptr::null_mut();
    }
    if !scans_rows(root) {
        return std::ptr::null_mut();
    }
    // Only calls whose result cannot vary from row to row: no arguments, or constants.
    let args = (*fcall).args;
    if !args.is_null() {
        for i in 0..(*args).length as usize {
            let arg = (*(*args).elements.add(i)).ptr_value as *const pg_sys::Node;
            if !is_a(arg, pg_sys::NodeTag::T_Const) {
                return std::ptr::null_mut();
            }
        }
    }

    // The sub-query `SELECT <call>` and its plan, a childless Result node, built directly:
    // running subquery_planner for it would cost ~15 µs of planning per query, more than the
    // per-row calls it saves on small scans.
    let call = pg_sys::copyObjectImpl(fcall as *const std::ffi::c_void) as *mut pg_sys::Expr;
    let te = pg_sys::makeTargetEntry(call, 1, c"auth_ext".as_ptr() as *mut _, false);
    let tlist = pg_sys::lappend(std::ptr::null_mut(), te as *mut std::ffi::c_void);

    let query = pg_sys::palloc0(std::mem::size_of::<pg_sys::Query>()) as *mut pg_sys::Query;
    (*query).type_ = pg_sys::NodeTag::T_Query;
    (*query).commandType = pg_sys::CmdType::CMD_SELECT;
    (*query).querySource = pg_sys::QuerySource::QSRC_ORIGINAL;
    (*query).canSetTag = true;
    (*query).jointree = pg_sys::makeFromExpr(std::ptr::null_mut(), std::ptr::null_mut());
    (*query).targetList = tlist;

    // What set_plan_references and SS_finalize_plan read from a sub-query's PlannerInfo.
    let subroot =
        pg_sys::palloc0(std::mem::size_of::<pg_sys::PlannerInfo>()) as *mut pg_sys::PlannerInfo;
    (*subroot).type_ = pg_sys::NodeTag::T_PlannerInfo;
    (*subroot).parse = query;
    (*subroot).glob = (*root).glob;
    (*subroot).query_level = (*root).query_level + 1;
    (*subroot).parent_root = root;
    (*subroot).wt_param_id = -1;

    let result = pg_sys::palloc0(std::mem::size_of::<pg_sys::Result>()) as *mut pg_sys::Result;
    let plan = result as *mut pg_sys::Plan;
    (*plan).type_ = pg_sys::NodeTag::T_Result;
    (*plan).targetlist = tlist;
    // One call of a C function (COST 1).
    (*plan).startup_cost = 0.0;
    (*plan).total_cost = pg_sys::cpu_operator_cost + pg_sys::cpu_tuple_cost;
    (*plan).plan_rows = 1.0;
    (*plan).plan_width = 16;
    (*plan).parallel_safe = true;

    let node = call as *mut pg_sys::Node;
    let (typ, typmod, coll) = (
        pg_sys::exprType(node),
        pg_sys::exprTypmod(node),
        pg_sys::exprCollation(node),
    );
    let prm = pg_sys::ffi::pg_guard_ffi_boundary(|| {
        SS_make_initplan_output_param(root, typ, typmod, coll)
    });
    pg_sys::ffi::pg_guard_ffi_boundary(|| SS_make_initplan_from_plan(root, subroot, plan, prm));
    prm as *mut pg_sys::Node
}

/// `prosupport` of the RLS helpers.
#[unsafe(no_mangle)]
#[doc(hidden)]
pub extern "C" fn pg_finfo_auth_helper_support() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

#[unsafe(no_mangle)]
#[doc(hidden)]
pub unsafe extern "C-unwind" fn auth_helper_support(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    unsafe {
        pg_sys::submodules::panic::pgrx_extern_c_guard(|| {
            let req = (*(*fcinfo).args.as_ptr())
                .value
                .cast_mut_ptr::<pg_sys::Node>();
            if is_a(req, pg_sys::NodeTag::T_SupportRequestSimplify) {
                pg_sys::Datum::from(simplify(req as *mut pg_sys::SupportRequestSimplify))
            } else {
                pg_sys::Datum::from(0)
            }
        })
    }
}
