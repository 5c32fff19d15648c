//! The Connector Service's routers: the internal API (tokens) and the external API (info and
//! client certificates), reference §1.

use ace_model::connector::{self, IssuedCertificate};
use ace_model::error::CommonError;
use ace_model::limits::BodyKind;
use ace_model::{Reply, Request};
use base64::Engine as _;
use hyper::Method;
use hyper::body::Incoming;

use super::App;
use super::body::query_param;
use super::reply::{
    self, Response, error, from_reply, json, method_not_allowed, not_found, redirect, yaml,
};
use super::routes::segments;
use crate::specs;

/// `POST /v1/remoteenvironments/{re}/tokens`, `GET /v1/api.yaml`.
pub async fn internal(app: &App, req: hyper::Request<Incoming>) -> Response {
    match segments(req.uri().path()).as_slice() {
        ["v1", "remoteenvironments", re, "tokens"] => {
            if req.method() != Method::POST {
                return method_not_allowed();
            }
            app.call(Request::CreateToken {
                re: (*re).to_owned(),
            })
            .await
        }
        ["v1", "api.yaml"] if req.method() == Method::GET => yaml(specs::CONNECTOR),
        ["v1", "api.yaml"] => method_not_allowed(),
        _ => not_found(),
    }
}

/// `GET …/{re}/info?token=`, `POST …/{re}/client-certs?token=`, `GET /v1`, `/v1/api.yaml`.
pub async fn external(app: &App, req: hyper::Request<Incoming>) -> Response {
    let path = req.uri().path().to_owned();
    let token = query_param(req.uri().query(), "token");
    match segments(&path).as_slice() {
        ["v1"] if req.method() == Method::GET => redirect("/v1/api.yaml"),
        ["v1", "api.yaml"] if req.method() == Method::GET => yaml(specs::CONNECTOR),
        ["v1"] | ["v1", "api.yaml"] => method_not_allowed(),
        ["v1", "remoteenvironments", re, "info"] => {
            if req.method() != Method::GET {
                return method_not_allowed();
            }
            app.call(Request::Info {
                re: (*re).to_owned(),
                token,
            })
            .await
        }
        ["v1", "remoteenvironments", re, "client-certs"] => {
            if req.method() != Method::POST {
                return method_not_allowed();
            }
            let re = (*re).to_owned();
            let body = match app.read(req, BodyKind::Connector).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            let (der, csr) = match connector::decode_csr_body(&body) {
                Ok(der) => {
                    let csr = crate::pki::inspect_csr(&der);
                    (der, csr)
                }
                Err(e) => (Vec::new(), e.into()),
            };
            match app.ask(Request::ClientCerts { re, token, csr }).await {
                Ok(Reply::Certificate(issued)) => certificate(app, &der, &issued),
                Ok(reply) => from_reply(&reply),
                Err(e) => reply::unavailable(e),
            }
        }
        _ => not_found(),
    }
}

/// `201 {"crt": base64(client certificate PEM + CA certificate PEM)}`.
fn certificate(app: &App, csr_der: &[u8], issued: &IssuedCertificate) -> Response {
    match app.ca.sign_client(csr_der, issued) {
        Ok(client_pem) => {
            let chain = format!("{client_pem}{}", app.ca.cert_pem());
            let crt = base64::engine::general_purpose::STANDARD.encode(chain);
            json(201, "application/json", &serde_json::json!({ "crt": crt }))
        }
        Err(e) => {
            tracing::error!(error = %e, serial = issued.serial.0, "signing an accepted CSR failed");
            error(&CommonError::new(500, "Internal error."))
        }
    }
}
