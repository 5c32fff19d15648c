//! `ace serve` over loopback, as a library: every surface's statuses and bodies, delivery,
//! the proxy, limits and protection, TLS resumption, the route table against the specs, and
//! the bug zoo's server-side bugs.

mod backlog;
mod bug_zoo;
mod common;
mod delivery;
#[cfg(feature = "jetstream")]
mod differential;
mod egress;
#[cfg(feature = "jetstream")]
mod jetstream;
mod protection;
mod proxy;
#[cfg(feature = "jetstream")]
mod replicas;
mod resumption;
mod specs;
mod surfaces;
