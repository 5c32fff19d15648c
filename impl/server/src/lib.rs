//! `ace-server`: the IO shell around `ace-model`, as a library. `ace serve` (crate `ace`)
//! and the simulation (`ace-sim`) start it with [`serve::start`].
//!
//! The shell translates and persists; every decision is the model's. Its layers, each a
//! folder, depend downwards only:
//! - [`edge`]: the listeners and one router per surface; HTTP in, model requests out, model
//!   replies rendered back;
//! - [`driver`]: the one task that owns the model: requests in, records durable, replies out;
//! - [`outbound`]: every connection ACE opens for someone else: pushes to subscribers, the
//!   proxy's calls and OAuth token requests;
//! - [`store`]: the log of records, its codecs and backends;
//! - [`pki`]: the CA, the server identity, CSRs and client certificates.
//!
//! Networking and time come from outside ([`ace_client::Net`], [`ace_client::Clock`]), so the
//! same server runs on real sockets and in a simulated world.
//!
//! # One event, from the gateway to its acknowledgement
//!
//! 1. [`edge::gateway`] reads `POST /{re}/v1/events` within the model's body limit and sends
//!    `Request::Gateway` with the verified client certificate to the [`driver`].
//! 2. The driver batches it with whatever else waits, calls `Model::handle_request`, and
//!    appends the batch's records (`EventAccepted`) to the [`store`] with one sync.
//! 3. Only then the reply (200 with the event id) goes back to the edge, and the deliveries
//!    the model started go out on the driver's deliveries channel.
//! 4. [`outbound::push`] hands each delivery to its endpoint's worker, which reads the body
//!    from the store if the model does not hold it, POSTs it, and sends the outcome back on
//!    the driver's outcomes channel.
//! 5. The driver feeds the outcome to `Model::handle_delivery_outcome`; on a 2xx the model
//!    records `DeliveryAcknowledged` (the acknowledgements of one turn of a subscription
//!    join into one `DeliveriesAcknowledged`), made durable with the next batch.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod driver;
pub mod edge;
pub mod error;
pub mod kubeconfig;
pub mod metrics;
pub mod nats;
pub mod options;
pub mod outbound;
pub mod pki;
pub mod replica;
pub mod serve;
pub mod specs;
pub mod store;

pub use error::StartError;
pub use options::ServeOptions;
pub use serve::{Server, start, start_with_store};
