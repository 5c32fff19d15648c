//! `kubectl get` output: a `meta.k8s.io/v1` Table, whose cells kubectl prints as given.

use std::time::Duration;

use serde_json::{Value, json};

use super::Kind;
use crate::time::Timestamp;

/// A kind's columns after Name: header and the JSON pointer of the cell (an array there is
/// shown by its length).
fn columns(kind: Kind) -> &'static [(&'static str, &'static str)] {
    match kind {
        Kind::RemoteEnvironment => &[
            ("Description", "/spec/description"),
            ("Services", "/spec/services"),
        ],
        Kind::EnvironmentMapping => &[],
        Kind::EventActivation => &[
            ("Source", "/spec/sourceId"),
            ("Display Name", "/spec/displayName"),
        ],
        Kind::Subscription => &[
            ("Event Type", "/spec/event_type"),
            ("Version", "/spec/event_type_version"),
            ("Source", "/spec/source_id"),
            ("Activated", "/status/conditions/0/status"),
            ("Delivered", "/status/delivery/delivered"),
            ("Pending", "/status/delivery/pending"),
            ("Dead Letters", "/status/delivery/deadLettered"),
        ],
        Kind::ServiceInstance => &[("Class", "/spec/serviceClassExternalName")],
        Kind::ServiceBinding => &[("Instance", "/spec/instanceRef/name")],
        Kind::ServiceClass => &[
            ("External Name", "/spec/externalName"),
            ("Remote Environment", "/spec/remoteEnvironment"),
            ("Bindable", "/spec/bindable"),
        ],
    }
}

/// One cell as kubectl prints it: text, a number, True/False, an array's length.
fn cell(object: &Value, pointer: &str) -> Value {
    match object.pointer(pointer) {
        None | Some(Value::Null) => json!(""),
        Some(Value::Bool(b)) => json!(if *b { "True" } else { "False" }),
        Some(Value::Array(items)) => json!(items.len()),
        Some(v) => v.clone(),
    }
}

/// The Table of `objects` (decorated) of `kind` at `now`, with an Age column rendered here.
pub fn table(kind: Kind, objects: &[Value], revision: u64, now: Timestamp) -> Value {
    let columns = columns(kind);
    let mut definitions = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "", "priority": 0}),
    ];
    definitions.extend(columns.iter().map(|(name, _)| {
        let ty = match *name {
            "Services" | "Delivered" | "Pending" | "Dead Letters" => "integer",
            _ => "string",
        };
        json!({"name": name, "type": ty, "format": "", "description": "", "priority": 0})
    }));
    definitions.push(
        json!({"name": "Age", "type": "string", "format": "", "description": "", "priority": 0}),
    );
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let mut cells = vec![cell(object, "/metadata/name")];
            cells.extend(columns.iter().map(|(_, pointer)| cell(object, pointer)));
            cells.push(json!(age(object, now)));
            json!({"cells": cells, "object": object})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": revision.to_string()},
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

/// The Age cell: time since `metadata.creationTimestamp`, `<unknown>` without one.
fn age(object: &Value, now: Timestamp) -> String {
    let created = object
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(|s| {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
        })
        .and_then(|t| u64::try_from(t.unix_timestamp()).ok());
    match created {
        Some(secs) => human_age(
            now.saturating_duration_since(Timestamp::from_unix_millis(secs.saturating_mul(1000))),
        ),
        None => "<unknown>".to_owned(),
    }
}

/// An age as kubectl prints one: `12s`, `3m10s`, `25m`, `5h3m`, `20h`, `3d4h`, `40d`, `2y10d`.
pub fn human_age(d: Duration) -> String {
    let s = d.as_secs();
    let (m, h, days) = (s / 60, s / 3600, s / 86_400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        match s % 60 {
            0 => format!("{m}m"),
            rest => format!("{m}m{rest}s"),
        }
    } else if h < 3 {
        format!("{m}m")
    } else if h < 8 {
        match m % 60 {
            0 => format!("{h}h"),
            rest => format!("{h}h{rest}m"),
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 192 {
        match h % 24 {
            0 => format!("{days}d"),
            rest => format!("{days}d{rest}h"),
        }
    } else if days < 730 {
        format!("{days}d")
    } else {
        format!("{}y{}d", days / 365, days % 365)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectls() {
        let cases = [
            (0, "0s"),
            (12, "12s"),
            (119, "119s"),
            (190, "3m10s"),
            (240, "4m"),
            (25 * 60, "25m"),
            (5 * 3600 + 3 * 60, "5h3m"),
            (20 * 3600, "20h"),
            (3 * 86_400 + 4 * 3600, "3d4h"),
            (40 * 86_400, "40d"),
            (740 * 86_400, "2y10d"),
        ];
        for (secs, text) in cases {
            assert_eq!(human_age(Duration::from_secs(secs)), text, "{secs} s");
        }
    }

    #[test]
    fn a_subscription_table_has_its_columns_and_the_object_per_row() {
        let object = json!({
            "metadata": {"name": "s", "namespace": "stage", "creationTimestamp": "2023-11-14T22:13:20Z"},
            "spec": {"event_type": "order.created", "event_type_version": "v1", "source_id": "ec"},
            "status": {"conditions": [{"status": "True"}], "delivery": {"delivered": 3, "pending": 0, "deadLettered": 1}},
        });
        let now = Timestamp::from_unix_millis(1_700_000_000_000 + 190_000);
        let t = table(Kind::Subscription, std::slice::from_ref(&object), 9, now);
        let headers: Vec<&str> = t["columnDefinitions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(
            headers,
            [
                "Name",
                "Event Type",
                "Version",
                "Source",
                "Activated",
                "Delivered",
                "Pending",
                "Dead Letters",
                "Age"
            ]
        );
        assert_eq!(
            t["rows"][0]["cells"],
            json!(["s", "order.created", "v1", "ec", "True", 3, 0, 1, "3m10s"])
        );
        assert_eq!(t["rows"][0]["object"], object);
        assert_eq!(t["metadata"]["resourceVersion"], "9");
    }
}
