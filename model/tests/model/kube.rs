//! The Kubernetes resource API's decisions: metadata as Kubernetes keeps it, the write modes
//! kubectl uses, resourceVersion conflicts, refusals as `Status`, and the metadata surviving a
//! restart from the log or from a snapshot.

use ace_model::kube::{Kind, KubeRequest, WriteMode};
use ace_model::{AdminRequest, Config, Model, Request, Timestamp};
use serde_json::{Value, json};

fn now() -> Timestamp {
    Timestamp::from_unix_millis(1_700_000_000_000)
}

fn write(
    model: &mut Model,
    kind: Kind,
    ns: &str,
    name: Option<&str>,
    mode: WriteMode,
    body: Value,
) -> (u16, Value) {
    let reply = model.handle_request(
        now(),
        Request::Kube(KubeRequest::Write {
            kind,
            namespace: ns.into(),
            name: name.map(str::to_owned),
            mode,
            body: body.to_string().into_bytes(),
        }),
    );
    (reply.status(), reply.body().unwrap_or(Value::Null))
}

fn get(model: &mut Model, kind: Kind, ns: &str, name: &str) -> (u16, Value) {
    let reply = model.handle_request(
        now(),
        Request::Kube(KubeRequest::Get {
            kind,
            namespace: ns.into(),
            name: name.into(),
            table: false,
        }),
    );
    (reply.status(), reply.body().unwrap_or(Value::Null))
}

fn subscription(max_inflight: u64) -> Value {
    json!({
        "apiVersion": "eventing.kyma.cx/v1alpha1", "kind": "Subscription",
        "metadata": {"name": "s", "namespace": "stage", "labels": {"a": "b"},
                     "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
        "spec": {"endpoint": "http://sub.stage:8080/", "push_request_timeout_ms": 2000,
                 "max_inflight": max_inflight, "include_subscription_name_header": true,
                 "event_type": "order.created", "event_type_version": "v1",
                 "source_id": "stage.commerce.kyma.local"},
    })
}

fn version(object: &Value) -> String {
    object["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn create_replace_and_patch_keep_metadata_as_kubernetes_does() {
    let mut m = Model::new(Config::default(), 1.into());
    let (status, created) = write(
        &mut m,
        Kind::Subscription,
        "stage",
        None,
        WriteMode::Create,
        subscription(400),
    );
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["metadata"]["generation"], 1);
    assert_eq!(created["metadata"]["labels"]["a"], "b");
    assert_eq!(
        created["metadata"]["creationTimestamp"],
        "2023-11-14T22:13:20Z"
    );
    assert_eq!(
        created["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
        "{}"
    );
    let uid = created["metadata"]["uid"].clone();

    let (status, again) = write(
        &mut m,
        Kind::Subscription,
        "stage",
        None,
        WriteMode::Create,
        subscription(400),
    );
    assert_eq!(
        (status, again["reason"].as_str()),
        (409, Some("AlreadyExists"))
    );

    // Nothing changed: same resourceVersion, same generation.
    let (status, same) = write(
        &mut m,
        Kind::Subscription,
        "stage",
        Some("s"),
        WriteMode::MergePatch,
        json!({"spec": {"max_inflight": 400}}),
    );
    assert_eq!(status, 200);
    assert_eq!(version(&same), version(&created));
    assert_eq!(same["metadata"]["generation"], 1);

    // A spec change: a new resourceVersion and generation 2; the uid stays.
    let (_, patched) = write(
        &mut m,
        Kind::Subscription,
        "stage",
        Some("s"),
        WriteMode::MergePatch,
        json!({"spec": {"max_inflight": 7}, "metadata": {"labels": {"a": null, "c": "d"}}}),
    );
    assert_eq!(patched["spec"]["max_inflight"], 7);
    assert_eq!(patched["metadata"]["generation"], 2);
    assert_eq!(patched["metadata"]["uid"], uid);
    assert_eq!(patched["metadata"]["labels"], json!({"c": "d"}));
    assert_ne!(version(&patched), version(&created));

    // A label change alone: a new resourceVersion, the same generation.
    let (_, labelled) = write(
        &mut m,
        Kind::Subscription,
        "stage",
        Some("s"),
        WriteMode::MergePatch,
        json!({"metadata": {"labels": {"e": "f"}}}),
    );
    assert_eq!(labelled["metadata"]["generation"], 2);
    assert_ne!(version(&labelled), version(&patched));

    // A replace against the stale version is a conflict, against the current one it is taken.
    let mut stale = subscription(9);
    stale["metadata"]["resourceVersion"] = json!(version(&created));
    let (status, conflict) = write(
        &mut m,
        Kind::Subscription,
        "stage",
        Some("s"),
        WriteMode::Replace,
        stale.clone(),
    );
    assert_eq!(
        (status, conflict["reason"].as_str()),
        (409, Some("Conflict")),
        "{conflict}"
    );
    assert_eq!(
        get_clone(&m, Kind::Subscription, "stage", "s").1["spec"]["max_inflight"],
        7
    );
    stale["metadata"]["resourceVersion"] = json!(version(&labelled));
    let (status, replaced) = write(
        &mut m,
        Kind::Subscription,
        "stage",
        Some("s"),
        WriteMode::Replace,
        stale,
    );
    assert_eq!(status, 200, "{replaced}");
    assert_eq!(replaced["spec"]["max_inflight"], 9);
    assert_eq!(replaced["metadata"]["generation"], 3);
    // Status is the server's: what a body says there is not taken.
    assert!(replaced["status"]["conditions"].is_array(), "{replaced}");
}

/// `get` on a clone, for reads that must not change the model under test.
fn get_clone(m: &Model, kind: Kind, ns: &str, name: &str) -> (u16, Value) {
    get(&mut m.clone(), kind, ns, name)
}

#[test]
fn refusals_are_statuses_with_kubernetes_reasons() {
    let mut m = Model::new(Config::default(), 1.into());
    let (status, missing) = get(&mut m, Kind::EventActivation, "stage", "x");
    assert_eq!(status, 404);
    assert_eq!(missing["kind"], "Status");
    assert_eq!(
        missing["message"],
        "eventactivations.applicationconnector.kyma-project.io \"x\" not found"
    );
    let (status, _) = write(
        &mut m,
        Kind::Subscription,
        "stage",
        Some("s"),
        WriteMode::MergePatch,
        json!({}),
    );
    assert_eq!(status, 404, "a merge patch does not create");
    let mut bad = subscription(400);
    bad["spec"]["endpoint"] = json!("ftp://x");
    let (status, invalid) = write(
        &mut m,
        Kind::Subscription,
        "stage",
        None,
        WriteMode::Create,
        bad,
    );
    assert_eq!(
        (status, invalid["reason"].as_str()),
        (422, Some("Invalid")),
        "{invalid}"
    );
    assert!(
        invalid["message"]
            .as_str()
            .is_some_and(|s| s.starts_with("Subscription.eventing.kyma.cx \"s\" is invalid")),
        "{invalid}"
    );
    let mut wrong_ns = subscription(400);
    wrong_ns["metadata"]["namespace"] = json!("other");
    let (status, _) = write(
        &mut m,
        Kind::Subscription,
        "stage",
        None,
        WriteMode::Create,
        wrong_ns,
    );
    assert_eq!(status, 400);
    let mut wrong_kind = subscription(400);
    wrong_kind["kind"] = json!("EventActivation");
    let (status, _) = write(
        &mut m,
        Kind::Subscription,
        "stage",
        None,
        WriteMode::Create,
        wrong_kind,
    );
    assert_eq!(status, 400);
    let (status, _) = write(
        &mut m,
        Kind::ServiceClass,
        "stage",
        Some("x"),
        WriteMode::Replace,
        json!({}),
    );
    assert_eq!(status, 405, "service classes are read-only");
    let mut bad_name = subscription(400);
    bad_name["metadata"]["name"] = json!("Not_A_Name");
    let (status, invalid) = write(
        &mut m,
        Kind::Subscription,
        "stage",
        None,
        WriteMode::Create,
        bad_name,
    );
    assert_eq!(status, 422);
    assert_eq!(invalid["details"]["causes"][0]["field"], "metadata.name");
    let (status, _) = write(
        &mut m,
        Kind::Subscription,
        "stage",
        None,
        WriteMode::Create,
        json!(["not", "an", "object"]),
    );
    assert_eq!(status, 400);
}

#[test]
fn an_activation_may_be_named_after_its_source_and_a_dot_free_namespace() {
    let mut m = Model::new(Config::default(), 1.into());
    let body = json!({
        "apiVersion": "applicationconnector.kyma-project.io/v1alpha1", "kind": "EventActivation",
        "metadata": {"name": "stage.commerce.kyma.local"},
        "spec": {"sourceId": "stage.commerce.kyma.local", "displayName": "commerce"},
    });
    let (status, created) = write(
        &mut m,
        Kind::EventActivation,
        "stage",
        None,
        WriteMode::Apply,
        body.clone(),
    );
    assert_eq!(status, 201, "{created}");
    let (status, _) = write(
        &mut m,
        Kind::EventActivation,
        "st.age",
        None,
        WriteMode::Apply,
        body,
    );
    assert_eq!(status, 422, "a namespace is a DNS-1123 label");
}

#[test]
fn deleting_through_any_api_forgets_the_metadata_and_a_new_object_is_new() {
    let mut m = Model::new(Config::default(), 1.into());
    let re = |description: &str| {
        json!({"apiVersion": "applicationconnector.kyma-project.io/v1alpha1",
               "kind": "RemoteEnvironment", "metadata": {"name": "ec", "labels": {"x": "y"}},
               "spec": {"description": description}})
    };
    let (_, first) = write(
        &mut m,
        Kind::RemoteEnvironment,
        "",
        None,
        WriteMode::Create,
        re("a"),
    );
    assert!(first["metadata"].get("namespace").is_none(), "cluster-wide");
    // Deleted through ACE's own admin API.
    let reply = m.handle_request(
        now(),
        Request::Admin(AdminRequest::DeleteRemoteEnvironment { name: "ec".into() }),
    );
    assert_eq!(reply.status(), 204);
    assert_eq!(get_clone(&m, Kind::RemoteEnvironment, "", "ec").0, 404);
    let (status, second) = write(
        &mut m,
        Kind::RemoteEnvironment,
        "",
        None,
        WriteMode::Create,
        re("b"),
    );
    assert_eq!(status, 201);
    assert_ne!(second["metadata"]["uid"], first["metadata"]["uid"]);
    assert_eq!(second["metadata"]["generation"], 1);
    // resourceVersions are never handed out twice.
    assert_ne!(version(&second), version(&first));

    // Deleted through the Kubernetes API: a Status naming it.
    let reply = m.handle_request(
        now(),
        Request::Kube(KubeRequest::Delete {
            kind: Kind::RemoteEnvironment,
            namespace: String::new(),
            name: "ec".into(),
        }),
    );
    let body = reply.body().unwrap_or(Value::Null);
    assert_eq!(
        (reply.status(), body["status"].as_str()),
        (200, Some("Success"))
    );
    assert_eq!(body["details"]["uid"], second["metadata"]["uid"]);
    assert_eq!(get_clone(&m, Kind::RemoteEnvironment, "", "ec").0, 404);
}

#[test]
fn objects_made_through_the_admin_api_are_served_with_derived_metadata() {
    let mut m = Model::new(Config::default(), 1.into());
    m.handle_request(
        now(),
        Request::Admin(AdminRequest::ApplyMapping {
            namespace: "production".into(),
            re: "ec".into(),
        }),
    );
    let (status, em) = get(&mut m, Kind::EnvironmentMapping, "production", "ec");
    assert_eq!(status, 200);
    assert_eq!(em["metadata"]["resourceVersion"], "0");
    assert_eq!(em["metadata"]["namespace"], "production");
    let list = m.handle_request(
        now(),
        Request::Kube(KubeRequest::List {
            kind: Kind::EnvironmentMapping,
            namespace: None,
            table: true,
        }),
    );
    let table = list.body().unwrap_or(Value::Null);
    assert_eq!(table["kind"], "Table");
    assert_eq!(table["rows"][0]["cells"], json!(["ec", "<unknown>"]));
    // Labelling it through the Kubernetes API gives it metadata of its own.
    let (status, labelled) = write(
        &mut m,
        Kind::EnvironmentMapping,
        "production",
        Some("ec"),
        WriteMode::MergePatch,
        json!({"metadata": {"labels": {"team": "a"}}}),
    );
    assert_eq!(status, 200, "{labelled}");
    assert_eq!(labelled["metadata"]["uid"], em["metadata"]["uid"]);
    assert_ne!(labelled["metadata"]["resourceVersion"], "0");
}

#[test]
fn metadata_survives_replaying_the_log_and_a_snapshot() {
    let mut m = Model::new(Config::default(), 1.into());
    write(
        &mut m,
        Kind::Subscription,
        "stage",
        None,
        WriteMode::Create,
        subscription(1),
    );
    write(
        &mut m,
        Kind::Subscription,
        "stage",
        Some("s"),
        WriteMode::MergePatch,
        json!({"spec": {"max_inflight": 2}}),
    );
    let mut records = Vec::new();
    while let Some(r) = m.poll_record() {
        records.push(r);
    }
    let from_log = Model::replay(Config::default(), 2.into(), records);
    let from_snapshot = Model::replay(Config::default(), 3.into(), m.snapshot());
    let expected = get_clone(&m, Kind::Subscription, "stage", "s").1;
    for restored in [&from_log, &from_snapshot] {
        assert_eq!(restored.state(), m.state());
        let (status, object) = get_clone(restored, Kind::Subscription, "stage", "s");
        assert_eq!(status, 200);
        assert_eq!(object["metadata"], expected["metadata"]);
    }
    assert_eq!(from_snapshot.state_digest(), m.state_digest());
    // The counter survives the snapshot even when the newest object is gone.
    let mut after = from_snapshot.clone();
    after.handle_request(
        now(),
        Request::Kube(KubeRequest::Delete {
            kind: Kind::Subscription,
            namespace: "stage".into(),
            name: "s".into(),
        }),
    );
    let mut compacted = Model::replay(Config::default(), 4.into(), after.snapshot());
    let (_, made) = write(
        &mut compacted,
        Kind::Subscription,
        "stage",
        None,
        WriteMode::Create,
        subscription(1),
    );
    assert!(
        version(&made).parse::<u64>().unwrap_or(0)
            > version(&expected).parse::<u64>().unwrap_or(u64::MAX),
        "{made}"
    );
}
