//! The proxy to registered APIs: calls through `ace serve`'s proxy (binding key checked by the
//! model, OAuth token from the cache, request forwarded over a pooled connection) against the
//! same calls made directly to the target, in the same run. 16 clients, each on one keep-alive
//! connection.
//!
//! Ceilings, in the same run: two proxies with no logic at all on the same HTTP stack, one over
//! hyper-util's pooled client (as ACE's proxy), one over an upstream connection of its own per
//! caller's connection. They show how close any proxy can get to direct calls on the machine.
//!
//! The peer: nginx, the reverse proxy users run in front of their APIs (Kyma put one in front
//! of the Application Connector), started by the benchmark on loopback with keep-alive
//! upstream connections and an `Authorization` header added, as ACE adds a cached token.
//! Skipped, with a message, where there is no `nginx` (Debian: `apt-get install nginx-light`).
//!
//! `ACE_BENCH_ROUNDS=R` replaces criterion's measurements with R paired rounds: every system
//! in turn for about a second each, round after round, with each ratio taken to the same
//! round's nginx figure (direct calls without nginx) and the median, lowest and highest ratio
//! printed (`paired/mod.rs`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ace_client as client;
use ace_client::Clock;
use ace_client::TokioNet;
use ace_server::ServeOptions;
use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use hyper::Method;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;

mod paired;

const CLIENTS: u64 = 16;

/// What the target answers: `POST /token` gives a token for an hour, anything else 200 with a
/// small body.
fn target_service() -> impl hyper::service::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = hyper::Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    hyper::service::service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
        let body = if req.uri().path() == "/token" {
            Bytes::from_static(
                br#"{"access_token":"bench-token","token_type":"bearer","expires_in":3600}"#,
            )
        } else {
            Bytes::from_static(br#"{"uuid":"d44cc373-b26e-4a36-9890-6418d131a285"}"#)
        };
        Ok::<_, Infallible>(hyper::Response::new(Full::new(body)))
    })
}

/// A target API and an OAuth server in one (see [`target_service`]), over plain HTTP, or over
/// TLS with a self-signed certificate for 127.0.0.1 when `tls`.
async fn target_on(tls: bool) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = tls.then(|| {
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("cert");
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .expect("server config");
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    });
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let http = hyper::server::conn::http1::Builder::new();
                let _ = match acceptor {
                    None => {
                        http.serve_connection(TokioIo::new(tcp), target_service())
                            .await
                    }
                    Some(acceptor) => match acceptor.accept(tcp).await {
                        Ok(tls) => {
                            http.serve_connection(TokioIo::new(tls), target_service())
                                .await
                        }
                        Err(_) => return,
                    },
                };
            });
        }
    });
    addr
}

/// The plain HTTP target.
async fn target() -> SocketAddr {
    target_on(false).await
}

/// How the trivial proxies reach the target.
#[derive(Clone, Copy)]
enum Upstream {
    /// hyper-util's pooled client, as ACE's proxy uses.
    Pooled,
    /// One connection of its own per caller's connection, driven by hyper's bare client.
    Dedicated,
}

/// A proxy with no logic at all: every request goes to `target` as it came, and its response
/// comes back as it is. The ceiling for a proxy on the same HTTP stack as ACE's.
async fn trivial_proxy(target: SocketAddr, upstream: Upstream) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let pooled = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<hyper::body::Incoming>();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            let pooled = pooled.clone();
            tokio::spawn(async move {
                let dedicated = match upstream {
                    Upstream::Pooled => None,
                    Upstream::Dedicated => {
                        let up = tokio::net::TcpStream::connect(target)
                            .await
                            .expect("connect");
                        let _ = up.set_nodelay(true);
                        let (sender, conn) =
                            hyper::client::conn::http1::handshake(TokioIo::new(up))
                                .await
                                .expect("handshake");
                        tokio::spawn(conn);
                        Some(Arc::new(tokio::sync::Mutex::new(sender)))
                    }
                };
                let service = hyper::service::service_fn(
                    move |mut req: hyper::Request<hyper::body::Incoming>| {
                        let (pooled, dedicated) = (pooled.clone(), dedicated.clone());
                        async move {
                            let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
                            *req.uri_mut() = format!("http://{target}{path}").parse().expect("uri");
                            let response = match dedicated {
                                None => pooled.request(req).await.expect("forward"),
                                Some(sender) => sender
                                    .lock()
                                    .await
                                    .send_request(req)
                                    .await
                                    .expect("forward"),
                            };
                            Ok::<_, Infallible>(response)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    addr
}

/// nginx as a child process, killed when dropped.
struct Nginx {
    child: std::process::Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, so that the master stops its workers too (SIGKILL would orphan them).
        let _ = std::process::Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nginx in front of `target` (over TLS when `tls`, its certificate not verified, sessions
/// reused): one worker per core, keep-alive connections to the target, `Authorization` added.
/// `None`, said on stderr, when nginx is not installed.
fn nginx(target: SocketAddr, tls: bool) -> Option<Nginx> {
    let scheme = if tls { "https" } else { "http" };
    let binary = ["nginx", "/usr/sbin/nginx"].into_iter().find(|b| {
        std::process::Command::new(b)
            .arg("-v")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let Some(binary) = binary else {
        eprintln!(
            "proxy benchmark: no nginx here, so the nginx peer is skipped (Debian: apt-get install nginx-light)"
        );
        return None;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let p = dir.path().display();
    let config = format!(
        "worker_processes auto;\nerror_log {p}/error.log;\npid {p}/nginx.pid;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {p}/body;\n  proxy_temp_path {p}/proxy;\n\
           keepalive_requests 100000000;\n  keepalive_timeout 300s;\n\
           upstream target {{ server {target}; keepalive 64; keepalive_requests 100000000; }}\n\
           server {{\n    listen 127.0.0.1:{port};\n    location / {{\n\
               proxy_pass {scheme}://target;\n      proxy_http_version 1.1;\n\
               proxy_set_header Connection \"\";\n\
               proxy_set_header Authorization \"Bearer bench-token\";\n    }}\n  }}\n}}\n"
    );
    std::fs::write(dir.path().join("nginx.conf"), config).expect("nginx.conf");
    let child = std::process::Command::new(binary)
        .arg("-p")
        .arg(dir.path())
        .arg("-e")
        .arg(dir.path().join("error.log"))
        .arg("-c")
        .arg(dir.path().join("nginx.conf"))
        .args(["-g", "daemon off;"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("nginx starts");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let started = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "nginx did not listen on {addr}: {}",
            std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(Nginx {
        child,
        addr,
        _dir: dir,
    })
}

async fn admin(url: String, body: serde_json::Value) -> serde_json::Value {
    let r = client::request(
        &TokioNet,
        Method::PUT,
        &url,
        &[],
        Some(body.to_string().into_bytes()),
        None,
        Duration::from_secs(10),
    )
    .await
    .expect("admin");
    assert!(r.status < 300, "{url}: {} {}", r.status, r.text());
    r.json()
}

/// `calls` GETs of `url` with `headers` from 16 clients on keep-alive connections.
async fn run(
    addr: SocketAddr,
    path: String,
    headers: Vec<(String, String)>,
    calls: u64,
) -> Duration {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (path, headers) = (path.clone(), headers.clone());
        let n = calls / CLIENTS + u64::from(c < calls % CLIENTS);
        tasks.push(tokio::spawn(async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let _ = tcp.set_nodelay(true);
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .expect("handshake");
            tokio::spawn(conn);
            for _ in 0..n {
                let mut req = hyper::Request::get(path.as_str()).header("host", addr.to_string());
                for (k, v) in &headers {
                    req = req.header(k.as_str(), v.as_str());
                }
                let resp = sender
                    .send_request(req.body(Full::new(Bytes::new())).expect("request"))
                    .await
                    .expect("send");
                assert_eq!(resp.status(), 200);
                let _ = resp.into_body().collect().await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("client");
    }
    started.elapsed()
}

fn benchmarks(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let (proxy_addr, target_addr, tls_target_addr, path, key, plain_path, plain_key, tls_path, tls_key) = rt.block_on(async {
        let target = target().await;
        let tls_target = target_on(true).await;
        // The subscribers and API targets are on loopback and the admin API is called
        // without a token: both opened knowingly, for a benchmark on one machine.
        let mut opts = ServeOptions::loopback(dir.path());
        opts.egress.allow_private = true;
        opts.admin_auth = ace_server::options::AdminAuth::Off;
        // The https target's certificate is self-signed (nginx does not verify it either).
        opts.proxy_skip_verify = true;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let server = ace_server::start(TokioNet, opts, Clock::new(now), 7.into()).await.expect("serve");
        let a = format!("http://{}", server.admin);
        admin(format!("{a}/v1/remoteenvironments/ec"), json!({"spec": {}})).await;
        // Onboard and register the service as an external solution does.
        let ca = ace_server::pki::certs_from_pem(&server.ca_pem).expect("ca");
        let url = ace::commands::token(&format!("http://{}", server.connector_internal), "ec").await.expect("token");
        let out = dir.path().join("client");
        let conn = ace::commands::connect(&url, &out, &client::TlsOptions { roots: ca.clone(), ..Default::default() }, Some(ace_server::pki::KeyKind::EcdsaP256)).await.expect("connect");
        let read = |f: &str| std::fs::read_to_string(out.join(f)).expect("read");
        let tls = client::tls_connector(&client::TlsOptions {
            roots: ca,
            identity: Some((ace_server::pki::certs_from_pem(&read("cert.pem")).expect("cert"), ace_server::pki::key_from_pem(&read("key.pem")).expect("key"))),
            insecure: false,
        }, Clock::from_system_time())
        .expect("tls");
        let service = json!({"provider": "p", "name": "bench", "description": "d", "api": {"targetUrl": format!("http://{target}/api"),
            "credentials": {"oauth": {"url": format!("http://{target}/token"), "clientId": "c", "clientSecret": "s"}}}});
        let r = client::request(&TokioNet, Method::POST, &conn.metadata_url, &[], Some(service.to_string().into_bytes()), Some(&tls), Duration::from_secs(10)).await.expect("register");
        let id = r.json()["id"].as_str().expect("id").to_owned();
        // The same API without OAuth: the binding key is all the proxy checks.
        let plain = json!({"provider": "p", "name": "plain", "description": "d", "api": {"targetUrl": format!("http://{target}/api")}});
        let r = client::request(&TokioNet, Method::POST, &conn.metadata_url, &[], Some(plain.to_string().into_bytes()), Some(&tls), Duration::from_secs(10)).await.expect("register");
        let plain_id = r.json()["id"].as_str().expect("id").to_owned();
        // The same API over https.
        let secure = json!({"provider": "p", "name": "secure", "description": "d", "api": {"targetUrl": format!("https://{tls_target}/api")}});
        let r = client::request(&TokioNet, Method::POST, &conn.metadata_url, &[], Some(secure.to_string().into_bytes()), Some(&tls), Duration::from_secs(10)).await.expect("register");
        let tls_id = r.json()["id"].as_str().expect("id").to_owned();
        client::request(&TokioNet, Method::PUT, &format!("{a}/v1/namespaces/ns/environmentmappings/ec"), &[], None, None, Duration::from_secs(10)).await.expect("map");
        let mut bound = Vec::new();
        for (name, id) in [("bench", &id), ("plain", &plain_id), ("secure", &tls_id)] {
            admin(format!("{a}/v1/namespaces/ns/serviceinstances/{name}"), json!({"spec": {"serviceClassName": format!("re-ec-{id}")}})).await;
            bound.push(admin(format!("{a}/v1/namespaces/ns/servicebindings/{name}"), json!({"spec": {"instanceRef": {"name": name}}})).await);
        }
        let key = |b: &serde_json::Value| b["credentials"]["ACCESS_KEY"].as_str().expect("key").to_owned();
        std::mem::forget(server); // keep serving until the process ends
        (proxy_addr_of(&bound[0]), target, tls_target, format!("/re-ec-{id}/uuid"), key(&bound[0]), format!("/re-ec-{plain_id}/uuid"), key(&bound[1]), format!("/re-ec-{tls_id}/uuid"), key(&bound[2]))
    });
    let (pooled, dedicated) = rt.block_on(async {
        (
            trivial_proxy(target_addr, Upstream::Pooled).await,
            trivial_proxy(target_addr, Upstream::Dedicated).await,
        )
    });
    let headers = vec![("ace-binding-key".to_owned(), key)];
    let plain_headers = vec![("ace-binding-key".to_owned(), plain_key)];
    let tls_headers = vec![("ace-binding-key".to_owned(), tls_key)];
    let peer = nginx(target_addr, false);
    let tls_peer = nginx(tls_target_addr, true);
    if let Some(rounds) = paired::rounds() {
        // Interleaved rounds instead of criterion; nginx is the baseline (direct calls
        // without it).
        let calls = |addr: SocketAddr, path: String, headers: Vec<(String, String)>| {
            let rt = &rt;
            Box::new(move |n: u64| {
                rt.block_on(run(addr, path.clone(), headers.clone(), n.max(CLIENTS)))
            }) as Box<dyn FnMut(u64) -> Duration + '_>
        };
        let api = || "/api/uuid".to_owned();
        let mut systems: Vec<paired::System<'_>> = Vec::new();
        if let Some(n) = &peer {
            systems.push(paired::System {
                name: "nginx",
                run: calls(n.addr, api(), Vec::new()),
            });
        }
        for (name, run) in [
            ("direct", calls(target_addr, api(), Vec::new())),
            ("trivial_pooled", calls(pooled, api(), Vec::new())),
            ("trivial_dedicated", calls(dedicated, api(), Vec::new())),
            (
                "ace_no_oauth",
                calls(proxy_addr, plain_path.clone(), plain_headers.clone()),
            ),
            (
                "ace_cached_oauth",
                calls(proxy_addr, path.clone(), headers.clone()),
            ),
        ] {
            systems.push(paired::System { name, run });
        }
        let bar = if peer.is_some() { 0.9 } else { 0.5 };
        let rates = paired::run("proxy_16_clients", rounds, &mut systems, bar);
        // ACE against a proxy on the same HTTP stack that does nothing else.
        let names: Vec<&str> = systems.iter().map(|s| s.name).collect();
        paired::print_ratio(
            "proxy_16_clients",
            &names,
            &rates,
            "ace_no_oauth",
            "trivial_dedicated",
            0.9,
        );
        // The same API over https, against nginx over https.
        let mut secure: Vec<paired::System<'_>> = Vec::new();
        if let Some(n) = &tls_peer {
            secure.push(paired::System {
                name: "nginx_https",
                run: calls(n.addr, api(), Vec::new()),
            });
        }
        secure.push(paired::System {
            name: "ace_https",
            run: calls(proxy_addr, tls_path.clone(), tls_headers.clone()),
        });
        if secure.len() > 1 {
            let _ = paired::run("proxy_https_target_16_clients", rounds, &mut secure, 0.9);
        }
        return;
    }
    let mut group = c.benchmark_group("proxy");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.bench_function("baseline_direct_calls_16_clients", |b| {
        b.iter_custom(|n| {
            rt.block_on(run(
                target_addr,
                "/api/uuid".into(),
                Vec::new(),
                n.max(CLIENTS),
            ))
        })
    });
    for (name, addr) in [
        ("ceiling_trivial_pooled_proxy_16_clients", pooled),
        ("ceiling_trivial_dedicated_proxy_16_clients", dedicated),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|n| {
                rt.block_on(run(addr, "/api/uuid".into(), Vec::new(), n.max(CLIENTS)))
            })
        });
    }
    if let Some(n) = &peer {
        group.bench_function("peer_nginx_16_clients", |b| {
            b.iter_custom(|k| {
                rt.block_on(run(n.addr, "/api/uuid".into(), Vec::new(), k.max(CLIENTS)))
            })
        });
    }
    if let Some(n) = &tls_peer {
        group.bench_function("peer_nginx_https_target_16_clients", |b| {
            b.iter_custom(|k| {
                rt.block_on(run(n.addr, "/api/uuid".into(), Vec::new(), k.max(CLIENTS)))
            })
        });
    }
    group.bench_function("proxied_calls_https_target_16_clients", |b| {
        b.iter_custom(|n| {
            rt.block_on(run(
                proxy_addr,
                tls_path.clone(),
                tls_headers.clone(),
                n.max(CLIENTS),
            ))
        })
    });
    group.bench_function("proxied_calls_no_oauth_16_clients", |b| {
        b.iter_custom(|n| {
            rt.block_on(run(
                proxy_addr,
                plain_path.clone(),
                plain_headers.clone(),
                n.max(CLIENTS),
            ))
        })
    });
    group.bench_function("proxied_calls_cached_token_16_clients", |b| {
        b.iter_custom(|n| {
            rt.block_on(run(
                proxy_addr,
                path.clone(),
                headers.clone(),
                n.max(CLIENTS),
            ))
        })
    });
    group.finish();
}

/// The proxy's address, from a binding's `GATEWAY_URL` (`http://<proxy>/re-...`).
fn proxy_addr_of(binding: &serde_json::Value) -> SocketAddr {
    let url = binding["credentials"]["GATEWAY_URL"]
        .as_str()
        .expect("gateway url");
    let authority = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .expect("authority");
    authority.parse().expect("proxy address")
}

criterion_group!(benches, benchmarks);
criterion_main!(benches);
