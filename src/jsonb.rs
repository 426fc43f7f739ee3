//! jsonb datums built straight from parsed JSON values: no serialising to text and re-lexing
//! (what `JsonB::into_datum` does, and what made a quarter of `auth.verify`'s time, issue 11).
//! Numbers become numeric exactly as `jsonb_in` would read the text serde_json prints for
//! them; object keys are sorted and de-duplicated by jsonb itself.

use pgrx::pg_sys::{self, jbvType, JsonbIteratorToken as Tok, JsonbParseState, JsonbValue};
use serde_json::{Map, Value};
use std::ptr::null_mut;

/// `m` as a jsonb object datum in the current memory context.
pub fn from_object(m: &Map<String, Value>) -> pg_sys::Datum {
    unsafe {
        let mut state: *mut JsonbParseState = null_mut();
        let top = push_object(&mut state, m);
        pg_sys::Datum::from(pg_sys::JsonbValueToJsonb(top))
    }
}

/// `v` as a jsonb datum in the current memory context.
pub fn from_value(v: &Value) -> pg_sys::Datum {
    unsafe {
        let mut state: *mut JsonbParseState = null_mut();
        let top = match v {
            Value::Object(_) | Value::Array(_) => push(&mut state, v, Tok::WJB_DONE),
            // A scalar document is a one-element "raw scalar" array, as jsonb_in makes it.
            scalar => {
                pg_sys::pushJsonbValue(&mut state, Tok::WJB_BEGIN_ARRAY, null_mut());
                (*state).contVal.val.array.rawScalar = true;
                push(&mut state, scalar, Tok::WJB_ELEM);
                pg_sys::pushJsonbValue(&mut state, Tok::WJB_END_ARRAY, null_mut())
            }
        };
        pg_sys::Datum::from(pg_sys::JsonbValueToJsonb(top))
    }
}

/// Pushes `v` as the next `token` (WJB_VALUE in an object, WJB_ELEM in an array, WJB_DONE
/// at the top, where only containers go); returns what pushJsonbValue returned last.
unsafe fn push(state: &mut *mut JsonbParseState, v: &Value, token: Tok::Type) -> *mut JsonbValue {
    match v {
        Value::Object(m) => push_object(state, m),
        Value::Array(items) => {
            pg_sys::pushJsonbValue(state, Tok::WJB_BEGIN_ARRAY, null_mut());
            for item in items {
                push(state, item, Tok::WJB_ELEM);
            }
            pg_sys::pushJsonbValue(state, Tok::WJB_END_ARRAY, null_mut())
        }
        scalar => {
            let mut jv = scalar_value(scalar);
            pg_sys::pushJsonbValue(state, token, &mut jv)
        }
    }
}

unsafe fn push_object(state: &mut *mut JsonbParseState, m: &Map<String, Value>) -> *mut JsonbValue {
    pg_sys::pushJsonbValue(state, Tok::WJB_BEGIN_OBJECT, null_mut());
    for (k, val) in m {
        let mut key = string(k);
        pg_sys::pushJsonbValue(state, Tok::WJB_KEY, &mut key);
        push(state, val, Tok::WJB_VALUE);
    }
    pg_sys::pushJsonbValue(state, Tok::WJB_END_OBJECT, null_mut())
}

/// A jsonb string pointing at `s` itself, not a copy: pushJsonbValue keeps the pointer and
/// JsonbValueToJsonb copies the bytes, both while the caller's `Value` is alive.
unsafe fn string(s: &str) -> JsonbValue {
    let mut jv: JsonbValue = std::mem::zeroed();
    jv.type_ = jbvType::jbvString;
    jv.val.string.len = s.len() as i32;
    jv.val.string.val = s.as_ptr().cast_mut().cast();
    jv
}

unsafe fn scalar_value(v: &Value) -> JsonbValue {
    let mut jv: JsonbValue = std::mem::zeroed();
    match v {
        Value::Null => jv.type_ = jbvType::jbvNull,
        Value::Bool(b) => {
            jv.type_ = jbvType::jbvBool;
            jv.val.boolean = *b;
        }
        Value::String(s) => jv = string(s),
        Value::Number(n) => {
            jv.type_ = jbvType::jbvNumeric;
            jv.val.numeric = match n.as_i64() {
                Some(i) => pg_sys::int64_to_numeric(i),
                None => {
                    // u64 above i64::MAX or a float: numeric_in of serde's text, as before.
                    let text = std::ffi::CString::new(n.to_string()).expect("numbers have no NUL");
                    let d = pgrx::fcinfo::direct_function_call_as_datum(
                        pg_sys::numeric_in,
                        &[
                            Some(pg_sys::Datum::from(text.as_ptr())),
                            Some(pg_sys::Datum::from(pg_sys::InvalidOid)),
                            Some(pg_sys::Datum::from(-1i32)),
                        ],
                    )
                    .expect("numeric_in returns a value");
                    d.cast_mut_ptr()
                }
            };
        }
        Value::Array(_) | Value::Object(_) => unreachable!("containers are pushed, not scalars"),
    }
    jv
}

/// The application roles at `path` in a jsonb datum, as `roles::of_value` reads them from
/// `value #> path` (objects by key, arrays by possibly negative index), read in place: the
/// user row's metadata is not converted to text and parsed again for a first bind.
pub fn roles_at(datum: pg_sys::Datum, path: &[String]) -> Vec<String> {
    unsafe {
        let jb = pg_sys::pg_detoast_datum(datum.cast_mut_ptr()) as *mut pg_sys::Jsonb;
        let mut container: *mut pg_sys::JsonbContainer = &mut (*jb).root;
        let mut value: Option<JsonbValue> = None;
        for p in path {
            let v = match child(container, p) {
                Some(v) => v,
                None => return Vec::new(),
            };
            if v.type_ == jbvType::jbvBinary {
                container = v.val.binary.data;
            }
            value = Some(v);
        }
        let strings = match value {
            // The document itself (an empty path) is an object: no roles.
            None => Vec::new(),
            Some(v) if v.type_ == jbvType::jbvString => vec![text_of(&v)],
            Some(v) if v.type_ == jbvType::jbvBinary && is_array(container) => {
                (0..count(container))
                    .filter_map(|i| {
                        let e = pg_sys::getIthJsonbValueFromContainer(container, i);
                        (!e.is_null() && (*e).type_ == jbvType::jbvString).then(|| text_of(&*e))
                    })
                    .collect()
            }
            Some(_) => Vec::new(),
        };
        auth_core::roles::normalise(strings)
    }
}

unsafe fn is_array(c: *mut pg_sys::JsonbContainer) -> bool {
    (*c).header & pg_sys::JB_FARRAY != 0 && (*c).header & pg_sys::JB_FSCALAR == 0
}

unsafe fn count(c: *mut pg_sys::JsonbContainer) -> u32 {
    (*c).header & pg_sys::JB_CMASK
}

unsafe fn text_of(v: &JsonbValue) -> String {
    let s = std::slice::from_raw_parts(v.val.string.val as *const u8, v.val.string.len as usize);
    String::from_utf8_lossy(s).into_owned()
}

/// `container -> step`: a key of an object, or an index of an array.
unsafe fn child(c: *mut pg_sys::JsonbContainer, step: &str) -> Option<JsonbValue> {
    let header = (*c).header;
    if header & pg_sys::JB_FOBJECT != 0 {
        let mut res: JsonbValue = std::mem::zeroed();
        let found = pg_sys::getKeyJsonValueFromContainer(
            c,
            step.as_ptr().cast(),
            step.len() as i32,
            &mut res,
        );
        return (!found.is_null()).then_some(res);
    }
    if is_array(c) {
        let n = count(c) as i64;
        let i: i64 = step.parse().ok()?;
        let i = if i < 0 { n + i } else { i };
        if !(0..n).contains(&i) {
            return None;
        }
        let e = pg_sys::getIthJsonbValueFromContainer(c, i as u32);
        return (!e.is_null()).then(|| *e);
    }
    None
}
