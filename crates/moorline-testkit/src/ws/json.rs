//! The JSON subset relation used by [`Matcher::JsonSubset`](super::Matcher::JsonSubset).

use serde_json::Value;

/// Whether `pattern` is a subset of `value`:
///
/// * objects: every key of `pattern` is present in `value` and its value is a
///   subset of `value`'s (extra keys in `value` are ignored);
/// * arrays: by position: `value` has at least as many elements and each
///   element of `pattern` is a subset of the element at the same index
///   (extra trailing elements in `value` are ignored);
/// * numbers: equal as numbers (`1` matches `1.0`);
/// * everything else: equal.
pub(crate) fn is_subset(pattern: &Value, value: &Value) -> bool {
    match (pattern, value) {
        (Value::Object(p), Value::Object(v)) => {
            p.iter().all(|(key, pv)| v.get(key).is_some_and(|vv| is_subset(pv, vv)))
        }
        (Value::Array(p), Value::Array(v)) => p.len() <= v.len() && p.iter().zip(v).all(|(pv, vv)| is_subset(pv, vv)),
        (Value::Number(p), Value::Number(v)) => {
            p == v || matches!((p.as_f64(), v.as_f64()), (Some(a), Some(b)) if a == b)
        }
        _ => pattern == value,
    }
}

#[cfg(test)]
mod tests {
    use super::is_subset;
    use serde_json::json;

    #[test]
    fn objects_recursive_and_extra_keys_ignored() {
        let v = json!({"method": "sub", "params": {"ch": ["a", "b"], "x": 1}, "id": 7});
        assert!(is_subset(&json!({"method": "sub"}), &v));
        assert!(is_subset(&json!({"params": {"ch": ["a"]}}), &v));
        assert!(is_subset(&json!({}), &v));
        assert!(!is_subset(&json!({"params": {"ch": ["b"]}}), &v));
        assert!(!is_subset(&json!({"missing": null}), &v));
        assert!(!is_subset(&json!({"id": "7"}), &v));
        assert!(is_subset(&json!({"id": 7.0}), &v));
        assert!(!is_subset(&json!([1, 2, 3]), &json!([1, 2])));
    }
}
