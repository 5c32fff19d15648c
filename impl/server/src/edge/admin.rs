//! The admin API's router: ACE's stand-in for `kubectl` on the resource kinds, the Open
//! Service Broker, `/metrics` and health. Resource documents go to the model as they came
//! (it checks them); reads and deletes are typed requests.

use ace_model::bus::{BusReply, BusRequest};
use ace_model::documents::DocumentKind;
use ace_model::limits::BodyKind;
use ace_model::{AdminRequest, Reply, Request};
use bytes::Bytes;
use hyper::Method;
use hyper::body::Incoming;

use super::reply::{
    self, Response, from_reply, method_not_allowed, not_found, respond, text, yaml,
};
use super::routes::{allowed_methods, segments};
use super::{App, Surface};
use crate::metrics::SubscriptionFigures;
use crate::specs;

/// Every admin route (see [`super::ROUTES`]).
pub async fn route(app: &App, req: hyper::Request<Incoming>) -> Response {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let segs = segments(&path);
    let owned = |s: &&str| (*s).to_owned();
    let document = |kind, namespace: &str, name: &&str| (kind, namespace.to_owned(), owned(name));
    let probe = matches!(segs.as_slice(), ["healthz" | "readyz"]);
    if !probe
        && let Some(token) = &app.admin_token
        && !token.admits(req.headers())
    {
        return super::auth::unauthorized();
    }
    let (kind, namespace, name) = match (segs.as_slice(), &method) {
        (["healthz"], &Method::GET) => return text(200, "ok\n"),
        (["readyz"], &Method::GET) => {
            return match app.readiness().await {
                Ok(reply) => from_reply(&reply),
                Err(e) => reply::unavailable(e),
            };
        }
        (["v1", "state"], &Method::GET) => {
            return match app.ask(Request::StateDigest).await {
                Ok(reply) => from_reply(&reply),
                Err(e) => reply::unavailable(e),
            };
        }
        (["metrics"], &Method::GET) => {
            return respond(
                200,
                Some("application/openmetrics-text; version=1.0.0; charset=utf-8"),
                Bytes::from(metrics_text(app).await),
            );
        }
        (["broker", ns, "v2", rest @ ..], _) => {
            let namespace = owned(ns);
            let rest: Vec<String> = rest.iter().map(|s| (*s).to_owned()).collect();
            let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
            return super::osb::route(app, &namespace, &rest, req).await;
        }
        (["v1", "api.yaml"], &Method::GET) => return yaml(specs::ADMIN),
        (["v1", "remoteenvironments", name], &Method::PUT) => {
            document(DocumentKind::RemoteEnvironment, "", name)
        }
        (["v1", "namespaces", ns, "serviceinstances", name], &Method::PUT) => {
            document(DocumentKind::ServiceInstance, ns, name)
        }
        (["v1", "namespaces", ns, "servicebindings", name], &Method::PUT) => {
            document(DocumentKind::ServiceBinding, ns, name)
        }
        (["v1", "namespaces", ns, "eventactivations", name], &Method::PUT) => {
            document(DocumentKind::EventActivation, ns, name)
        }
        (["v1", "namespaces", ns, "subscriptions", name], &Method::PUT) => {
            document(DocumentKind::Subscription, ns, name)
        }
        (["v1", "namespaces", ns, "subscriptions", name, "replay"], &Method::POST) => {
            let body = match app.read(req, BodyKind::Command).await {
                Ok(body) => body,
                Err(r) => return r,
            };
            let request = Request::Document {
                kind: DocumentKind::DeadLetterReplay,
                namespace: owned(ns),
                name: owned(name),
                body: body.to_vec(),
            };
            return super::deadletters::replay(app, request).await;
        }
        (["v1", "deadletters"], &Method::GET) => {
            return super::deadletters::list(app, None, req.uri().query()).await;
        }
        (["v1", "namespaces", ns, "deadletters"], &Method::GET) => {
            return super::deadletters::list(app, Some(owned(ns)), req.uri().query()).await;
        }
        (segs, method) => {
            return match query(segs, method) {
                Some(request) => app.call(request).await,
                None if !allowed_methods(Surface::Admin, &path).is_empty() => method_not_allowed(),
                None => not_found(),
            };
        }
    };
    let body = match app.read(req, BodyKind::Document).await {
        Ok(body) => body,
        Err(r) => return r,
    };
    app.call(Request::Document {
        kind,
        namespace,
        name,
        body: body.to_vec(),
    })
    .await
}

/// The reads and deletes, which carry no body.
fn query(segs: &[&str], method: &Method) -> Option<Request> {
    let owned = |s: &&str| (*s).to_owned();
    let admin = Request::Admin;
    let bus = Request::Bus;
    Some(match (segs, method) {
        (["v1", "remoteenvironments"], &Method::GET) => admin(AdminRequest::ListRemoteEnvironments),
        (["v1", "remoteenvironments", name], &Method::GET) => {
            admin(AdminRequest::GetRemoteEnvironment { name: owned(name) })
        }
        (["v1", "remoteenvironments", name], &Method::DELETE) => {
            admin(AdminRequest::DeleteRemoteEnvironment { name: owned(name) })
        }
        (["v1", "environmentmappings"], &Method::GET) => {
            admin(AdminRequest::ListMappings { namespace: None })
        }
        (["v1", "namespaces", ns, "environmentmappings"], &Method::GET) => {
            admin(AdminRequest::ListMappings {
                namespace: Some(owned(ns)),
            })
        }
        (["v1", "namespaces", ns, "environmentmappings", re], &Method::PUT) => {
            admin(AdminRequest::ApplyMapping {
                namespace: owned(ns),
                re: owned(re),
            })
        }
        (["v1", "namespaces", ns, "environmentmappings", re], &Method::DELETE) => {
            admin(AdminRequest::DeleteMapping {
                namespace: owned(ns),
                re: owned(re),
            })
        }
        (["v1", "namespaces", ns, "serviceclasses"], &Method::GET) => {
            admin(AdminRequest::Catalog {
                namespace: owned(ns),
            })
        }
        (["v1", "namespaces", ns, "serviceinstances", name], &Method::DELETE) => {
            admin(AdminRequest::Deprovision {
                namespace: owned(ns),
                name: owned(name),
            })
        }
        (["v1", "namespaces", ns, "servicebindings", name], &Method::DELETE) => {
            admin(AdminRequest::Unbind {
                namespace: owned(ns),
                name: owned(name),
            })
        }
        (["v1", "eventactivations"], &Method::GET) => {
            bus(BusRequest::ListActivations { namespace: None })
        }
        (["v1", "namespaces", ns, "eventactivations"], &Method::GET) => {
            bus(BusRequest::ListActivations {
                namespace: Some(owned(ns)),
            })
        }
        (["v1", "namespaces", ns, "eventactivations", name], &Method::GET) => {
            bus(BusRequest::GetActivation {
                namespace: owned(ns),
                name: owned(name),
            })
        }
        (["v1", "namespaces", ns, "eventactivations", name], &Method::DELETE) => {
            bus(BusRequest::DeleteActivation {
                namespace: owned(ns),
                name: owned(name),
            })
        }
        (["v1", "subscriptions"], &Method::GET) => {
            bus(BusRequest::ListSubscriptions { namespace: None })
        }
        (["v1", "namespaces", ns, "subscriptions"], &Method::GET) => {
            bus(BusRequest::ListSubscriptions {
                namespace: Some(owned(ns)),
            })
        }
        (["v1", "namespaces", ns, "subscriptions", name], &Method::GET) => {
            bus(BusRequest::GetSubscription {
                namespace: owned(ns),
                name: owned(name),
            })
        }
        (["v1", "namespaces", ns, "subscriptions", name], &Method::DELETE) => {
            bus(BusRequest::DeleteSubscription {
                namespace: owned(ns),
                name: owned(name),
            })
        }
        _ => return None,
    })
}

/// Refreshes the per-subscription figures from the model, then encodes every metric.
async fn metrics_text(app: &App) -> String {
    if let Ok(Reply::Bus(BusReply::Figures(figures))) =
        app.ask(Request::Bus(BusRequest::DeliveryFigures)).await
    {
        let figures: Vec<SubscriptionFigures> = figures
            .into_iter()
            .map(|(key, stats)| SubscriptionFigures {
                namespace: key.namespace,
                name: key.name,
                figures: [
                    ("pending", stats.pending),
                    ("in_flight", stats.in_flight),
                    ("delivered", stats.delivered),
                    ("retried", stats.retried),
                    ("dead_lettered", stats.dead_lettered),
                    ("dead_lettered_over_limit", stats.over_limit),
                    ("dead_letters_discarded", stats.discarded),
                ],
                backoff: stats.backoff.map(|b| b.reason.as_str()),
            })
            .collect();
        app.metrics.set_subscriptions(&figures);
    }
    app.metrics.encode()
}
