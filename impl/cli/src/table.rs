//! Resources as a table, for `ace get -o table`.

use serde_json::Value;

/// A table of resources: NAMESPACE (when namespaced), NAME, and a summary column.
pub fn table(value: &Value) -> String {
    let items: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let mut rows = vec![[
        "NAMESPACE".to_owned(),
        "NAME".to_owned(),
        "DETAILS".to_owned(),
    ]];
    for item in items {
        let ns = item
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("");
        let name = item
            .pointer("/metadata/name")
            .or_else(|| item.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let details = match item.get("kind").and_then(Value::as_str) {
            Some("RemoteEnvironment") => format!(
                "{} service(s)",
                item.pointer("/spec/services")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len)
            ),
            Some("EventActivation") => format!(
                "sourceId={}",
                item.pointer("/spec/sourceId")
                    .and_then(Value::as_str)
                    .unwrap_or("")
            ),
            Some("Subscription") => {
                let activated = item
                    .pointer("/status/conditions/0/status")
                    .and_then(Value::as_str)
                    .unwrap_or("Unknown");
                let figures = item
                    .pointer("/status/delivery")
                    .map(Value::to_string)
                    .unwrap_or_default();
                format!("events-activated={activated} {figures}")
            }
            _ => item
                .pointer("/metadata/displayName")
                .or_else(|| item.get("externalName"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
        };
        rows.push([ns.to_owned(), name.to_owned(), details]);
    }
    let width = |c: usize| rows.iter().map(|r| r[c].len()).max().unwrap_or(0);
    let (w0, w1) = (width(0), width(1));
    rows.iter()
        .map(|r| {
            format!("{:w0$}   {:w1$}   {}", r[0], r[1], r[2])
                .trim_end()
                .to_owned()
                + "\n"
        })
        .collect()
}
