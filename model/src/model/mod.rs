//! The model: [`Model`], the one type a shell drives. Its inputs are [`Request`]s
//! ([`request`]), its answers [`Reply`]s ([`reply`]), its state [`State`] ([`state`]); each
//! surface's handlers are a file of their own: [`onboarding`] (tokens, info, CSRs),
//! [`gateway`] (the Metadata and Event Services behind the certificate check), [`admin`] (the
//! resource kinds and the catalog).

mod admin;
mod gateway;
mod kube;
mod onboarding;
mod reply;
mod request;
mod state;

pub use reply::{AdminError, Reply, RequestError};
pub use request::{AdminRequest, GatewayCall, Request};
pub use state::{RemoteEnvironment, ServiceInstance, State, service_class};

use std::collections::VecDeque;

use crate::bus::{Delivery, EventBus};
use crate::config::Config;
use crate::effects::Effects;
use crate::record::Record;
use crate::rng::{Seed, SeededRng};
use crate::time::Timestamp;

/// The pure state machine of the Application Connector and the Event Bus.
///
/// # Driving contract
///
/// Inputs go in through `handle_*`, each with the current time:
/// - [`Model::handle_request`] for an HTTP request, returning its [`Reply`];
/// - [`Model::handle_timeout`] when the deadline of [`Model::poll_timeout`] has passed;
/// - [`Model::handle_delivery_outcome`] when a delivery the shell performed has finished.
///
/// After every input (or a batch of them), drain the outputs in this order:
/// 1. [`Model::poll_record`] until `None`, and make those records durable;
/// 2. [`Model::poll_proxy_table`], and put the proxy's new decisions in force;
/// 3. only then release the reply (or, with group commit, every reply of the batch);
/// 4. [`Model::poll_delivery`] until `None`, and start those HTTP requests;
/// 5. [`Model::poll_timeout`], and arm a timer for it.
///
/// State changes only through [`Record`]s. A model that starts from durable records applies
/// them with [`Model::apply_record`] (a follower does the same with records another
/// writer made durable), then calls [`Model::take_over`] before its first input: the
/// records do not say what the previous owner still had in flight, and taking over treats it
/// as a restart. [`Model::replay`] does both.
///
/// ```
/// use ace_model::{AdminRequest, Config, Model, Request, Timestamp};
///
/// let mut model = Model::new(Config::default(), 42.into());
/// let now = Timestamp::from_unix_millis(1_700_000_000_000);
/// let apply = AdminRequest::ApplyRemoteEnvironment {
///     name: "ec-default".into(), description: "".into(), labels: Default::default(),
///     skip_verify: false,
/// };
/// model.handle_request(now, Request::Admin(apply));
/// let reply = model.handle_request(now, Request::CreateToken { re: "ec-default".into() });
/// let mut durable = Vec::new();
/// while let Some(record) = model.poll_record() {
///     durable.push(record); // the shell appends and syncs here
/// }
/// let _proxy_decisions = model.poll_proxy_table(); // in force before the reply
/// assert_eq!(reply.status(), 201); // now the reply may be sent
/// while let Some(_delivery) = model.poll_delivery() { /* start the POST */ }
/// let _next_timer = model.poll_timeout();
///
/// // After a restart, the records rebuild the same state.
/// let restored = Model::replay(Config::default(), 7.into(), durable);
/// assert_eq!(restored.state(), model.state());
/// ```
///
/// A clone is an independent copy: a checker that does not know whether a request took
/// effect (its answer was lost) follows both possible states.
#[derive(Clone, Debug)]
pub struct Model {
    pub(super) config: Config,
    pub(super) rng: SeededRng,
    pub(super) state: State,
    pub(super) records: VecDeque<Record>,
    /// Whether the proxy's decisions changed since [`Model::poll_proxy_table`] last said so.
    pub(super) proxy_changed: bool,
}

impl Model {
    /// An empty model. In a server the seed comes from the operating system (tokens are
    /// derived from it); in a simulation from the printed run seed.
    pub fn new(config: Config, seed: Seed) -> Self {
        let mut config = config;
        config.egress = config.egress.with_bugs(config.bugs);
        let mut bus = EventBus::new(&config.bus);
        bus.bugs = config.bugs;
        bus.egress = config.egress.clone();
        let state = State {
            bus,
            ..State::default()
        };
        Model {
            config,
            rng: SeededRng::new(seed),
            state,
            records: VecDeque::new(),
            // The first poll hands out the table of the state the shell starts from.
            proxy_changed: true,
        }
    }

    /// A model whose state is rebuilt from durable records, in order. The records are not
    /// queued again.
    pub fn replay(config: Config, seed: Seed, records: impl IntoIterator<Item = Record>) -> Self {
        let mut model = Model::new(config, seed);
        for record in records {
            model.apply_record(&record);
        }
        model.take_over();
        model
    }

    /// Applies one durable record: replaying the log at start, or following a log another
    /// writer appends to. The record is not queued again.
    pub fn apply_record(&mut self, record: &Record) {
        self.proxy_changed |= record.affects_proxy();
        self.state.apply(record);
    }

    /// Takes over the state the applied records describe, as a restarted process does: the
    /// records do not say which deliveries the previous owner still had in flight, so each
    /// subscription waits one push timeout before it delivers again (`max_inflight` holds at
    /// the subscriber across the change of owner).
    pub fn take_over(&mut self) {
        self.state.bus.hold_after_restart();
    }

    /// The SHA-256 (hex) of the [`snapshot`](Self::snapshot)'s JSON: two models that applied
    /// the same records have the same digest, whatever else they did (a replica's state
    /// against the leader's at the same log position).
    pub fn state_digest(&self) -> String {
        use sha2::Digest as _;
        let mut hash = sha2::Sha256::new();
        for record in self.snapshot() {
            // Records are plain data: encoding one cannot fail.
            if let Ok(bytes) = serde_json::to_vec(&record) {
                hash.update(&bytes);
            }
            hash.update(b"\n");
        }
        hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The records that rebuild the current state from nothing: a snapshot, to compact a long
    /// log. Replaying them gives a state equal to this one.
    pub fn snapshot(&self) -> Vec<Record> {
        let s = &self.state;
        // The counter first: the newest incarnation may belong to a deleted RE.
        let mut out = vec![Record::IncarnationsUsed {
            last: s.last_incarnation,
        }];
        for re in s.remote_environments.values() {
            out.push(Record::RemoteEnvironmentCreated {
                name: re.name.clone(),
                incarnation: re.incarnation,
                description: re.description.clone(),
                labels: re.labels.clone(),
                skip_verify: re.skip_verify,
            });
            for service in &re.services {
                out.push(Record::ServiceRegistered {
                    re: re.name.clone(),
                    service: Box::new(service.clone()),
                });
            }
        }
        for (namespace, re) in &s.mappings {
            out.push(Record::MappingCreated {
                namespace: namespace.clone(),
                re: re.clone(),
            });
        }
        for cert in s.certificates.values() {
            // Issuing a certificate consumes the RE's token; the live tokens come after.
            out.push(Record::CertificateIssued(cert.clone()));
        }
        for (re, token) in &s.tokens {
            out.push(Record::TokenIssued {
                re: re.clone(),
                digest: token.digest.clone(),
                expires_at: token.expires_at,
            });
        }
        for ((namespace, name), instance) in &s.instances {
            out.push(Record::InstanceProvisioned {
                namespace: namespace.clone(),
                name: name.clone(),
                re: instance.re.clone(),
                service_id: instance.service_id.clone(),
            });
        }
        for ((namespace, name), (instance, key)) in &s.bindings {
            out.push(Record::BindingCreated {
                namespace: namespace.clone(),
                name: name.clone(),
                instance: instance.clone(),
                key: key.clone(),
            });
        }
        out.extend(s.bus.snapshot().into_iter().map(Record::Bus));
        // Last: each names an object the records above made.
        if s.kube.revision > 0 {
            out.push(Record::ResourceVersionsUsed {
                last: s.kube.revision,
            });
        }
        for (key, meta) in &s.kube.objects {
            out.push(Record::ObjectMeta {
                key: key.clone(),
                meta: Some(meta.clone()),
            });
        }
        out
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The state, read-only.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The next record to make durable before replies are released.
    pub fn poll_record(&mut self) -> Option<Record> {
        self.records.pop_front()
    }

    /// The proxy's decisions, when they changed since the last call (always at the first):
    /// put them in force after the records are durable and before the replies are released,
    /// so that an acknowledged unbind is in force.
    pub fn poll_proxy_table(&mut self) -> Option<crate::proxy::ProxyTable> {
        std::mem::take(&mut self.proxy_changed).then(|| self.state.proxy_table())
    }

    /// The next read of owed events the Event Bus needs from the store (the metadata of
    /// accepted events, by sequence number): answer it with [`Model::handle_backlog`], after
    /// the records queued so far are durable.
    pub fn poll_backlog_read(&mut self) -> Option<crate::bus::BacklogRead> {
        self.state.bus.poll_backlog_read()
    }

    /// Takes in the events a backlog read asked for.
    pub fn handle_backlog(&mut self, now: Timestamp, page: crate::bus::BacklogPage) {
        self.with_bus(now, |bus, fx| bus.handle_backlog(fx, page));
    }

    /// Whether the store is over its space budget: while it is, publishes are refused with
    /// 507.
    pub fn handle_storage(&mut self, full: bool) {
        self.state.bus.handle_storage(full);
    }

    /// The next delivery to start.
    pub fn poll_delivery(&mut self) -> Option<Delivery> {
        self.state.bus.poll_delivery()
    }

    /// When [`Model::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.state.bus.poll_timeout()
    }

    /// Handles the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.with_bus(now, |bus, fx| bus.handle_timeout(fx));
    }

    /// Handles the outcome of a delivery the shell performed.
    pub fn handle_delivery_outcome(
        &mut self,
        now: Timestamp,
        outcome: crate::bus::DeliveryOutcome,
    ) {
        self.with_bus(now, |bus, fx| bus.handle_delivery_outcome(fx, outcome));
    }

    /// Lends the Event Bus the effects of an input at `now`.
    pub(super) fn with_bus<T>(
        &mut self,
        now: Timestamp,
        f: impl FnOnce(&mut EventBus, &mut Effects<'_>) -> T,
    ) -> T {
        let Model {
            rng,
            state,
            records,
            ..
        } = self;
        let mut fx = Effects { now, rng, records };
        f(&mut state.bus, &mut fx)
    }

    pub(super) fn commit(&mut self, record: Record) {
        self.proxy_changed |= record.affects_proxy();
        self.state.apply(&record);
        self.records.push_back(record);
    }

    /// Handles one request and returns its reply. Drain [`Model::poll_record`] and make the
    /// records durable before sending the reply.
    pub fn handle_request(&mut self, now: Timestamp, request: Request) -> Reply {
        let result = match request {
            Request::CreateToken { re } => self.create_token(now, &re),
            Request::Info { re, token } => self.info(now, &re, token.as_deref()),
            Request::ClientCerts { re, token, csr } => {
                self.client_certs(now, &re, token.as_deref(), csr)
            }
            Request::Gateway { re, peer, call } => self.gateway(now, &re, peer.as_ref(), call),
            Request::Admin(req) => self.admin(now, req),
            Request::Proxy {
                service,
                binding_key,
            } => self
                .state
                .proxy_target(&service, binding_key.as_deref())
                .map(Reply::Proxy)
                .map_err(RequestError::Proxy),
            Request::Bus(req) => Ok(Reply::Bus(
                self.with_bus(now, |bus, fx| bus.handle(fx, req)),
            )),
            Request::Document {
                kind,
                namespace,
                name,
                body,
            } => match crate::documents::request(kind, &namespace, &name, &body) {
                Ok(request) => return self.handle_request(now, request),
                Err(e) => Err(RequestError::Common(e)),
            },
            Request::Kube(req) => self.kube(now, req).map_err(RequestError::Kube),
            Request::Readiness => Ok(Reply::Ready),
            Request::StateDigest => Ok(Reply::Resource {
                status: 200,
                body: serde_json::json!({"sha256": self.state_digest()}),
            }),
        };
        result.unwrap_or_else(Reply::Error)
    }
}
