//! Resources as a table, for `ace get` (the default output): the columns `kubectl get` shows
//! for the same kind (`ace_model::kube`), with a NAMESPACE column when the rows span
//! namespaces. The admin API keeps no creation times, so there is no AGE column.

use ace_model::kube::Kind;
use serde_json::Value;

/// The table of `value` (one resource or a list) of `kind` (any name kubectl takes for it:
/// `subscriptions`, `sub`, `Subscription`); `all_namespaces` adds the NAMESPACE column.
pub fn table(kind: &str, value: &Value, all_namespaces: bool) -> String {
    let items: Vec<Value> = match value {
        Value::Array(items) => items.clone(),
        other => vec![other.clone()],
    };
    let Some(kind) = Kind::from_name(kind) else {
        // Not a kind of the Kubernetes API: names only.
        let mut rows = vec![vec!["NAME".to_owned()]];
        rows.extend(items.iter().map(|i| vec![text(&i["metadata"]["name"])]));
        return render(&rows);
    };
    let items: Vec<Value> = items
        .into_iter()
        .map(|i| with_catalog_shape(kind, i))
        .collect();
    let table = ace_model::kube::table(kind, &items, 0, ace_model::Timestamp::EPOCH);
    let mut headers: Vec<String> = table["columnDefinitions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .filter(|name| *name != "Age")
        .map(str::to_ascii_uppercase)
        .collect();
    let namespaced = all_namespaces && kind.info().namespaced;
    if namespaced {
        headers.insert(0, "NAMESPACE".to_owned());
    }
    let mut rows = vec![headers];
    for row in table["rows"].as_array().into_iter().flatten() {
        let cells = row["cells"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut line: Vec<String> = cells[..cells.len().saturating_sub(1)]
            .iter()
            .map(text)
            .collect();
        if namespaced {
            line.insert(0, text(&row["object"]["metadata"]["namespace"]));
        }
        rows.push(line);
    }
    render(&rows)
}

/// A service class as the admin API lists it is the Kubernetes API's `spec`.
fn with_catalog_shape(kind: Kind, item: Value) -> Value {
    if kind == Kind::ServiceClass && item.get("spec").is_none() {
        let name = item.get("id").cloned().unwrap_or(Value::Null);
        return serde_json::json!({"metadata": {"name": name}, "spec": item});
    }
    item
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Columns padded to their widest cell, three spaces apart, as kubectl prints them.
fn render(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|r| {
            let line: String = r
                .iter()
                .enumerate()
                .map(|(i, cell)| format!("{cell:w$}   ", w = widths[i]))
                .collect();
            line.trim_end().to_owned() + "\n"
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subscriptions_show_their_columns_and_namespaces() {
        let subs = json!([{
            "kind": "Subscription",
            "metadata": {"name": "s", "namespace": "stage"},
            "spec": {"event_type": "order.created", "event_type_version": "v1", "source_id": "ec"},
            "status": {"conditions": [{"status": "True"}], "delivery": {"delivered": 3, "pending": 1, "deadLettered": 0}},
        }]);
        let text = table("sub", &subs, true);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "NAMESPACE   NAME   EVENT TYPE      VERSION   SOURCE   ACTIVATED   DELIVERED   PENDING   DEAD LETTERS"
        );
        assert_eq!(
            lines[1],
            "stage       s      order.created   v1        ec       True        3           1         0"
        );
        let one = table("Subscription", &subs[0], false);
        assert!(one.starts_with("NAME   EVENT TYPE"), "{one}");
    }

    #[test]
    fn remote_environments_and_classes_have_theirs() {
        let re = json!({"metadata": {"name": "ec"}, "spec": {"description": "shop", "services": [{}, {}]}});
        assert_eq!(
            table("re", &re, true),
            "NAME   DESCRIPTION   SERVICES\nec     shop          2\n"
        );
        let classes = json!([{"id": "123", "externalName": "orders-abc", "remoteEnvironment": "ec", "bindable": true}]);
        let text = table("serviceclass", &classes, false);
        assert!(
            text.contains("123    orders-abc      ec                   True"),
            "{text}"
        );
        assert_eq!(
            table("whatever", &json!([{"metadata": {"name": "x"}}]), false),
            "NAME\nx\n"
        );
    }
}
