//! `ace-conformance`: checks a live Application Connector and Event Bus deployment (ACE or a
//! real Kyma) against the documented contract, with `ace-model` as the oracle.
//!
//! Every [`check::Check`] is one sentence of the contract with an id, a MUST or SHOULD level
//! and its source (a seed section or a section of the Kyma 0.5 reference). The suite talks to
//! the deployment only over its documented HTTP(S) APIs, creates what it needs through a
//! [`target::Resources`] adapter (ACE's admin API; a Kubernetes adapter fits the same trait),
//! receives pushes, OAuth token requests and proxied calls on an [`endpoint::Endpoint`] of its
//! own, and compares what it sees with what the model predicts ([`oracle::Oracle`]). The
//! model-based phase generates call sequences with proptest and shrinks any difference to a
//! minimal sequence of `curl` commands.
//!
//! It never depends on ACE's implementation: `ace conformance` (crate `ace`) links this
//! library and can start an embedded server to check.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod check;
pub mod checks;
pub mod context;
pub mod endpoint;
pub mod kube;
pub mod oracle;
pub mod profile;
pub mod run;
pub mod target;

pub use check::{Area, Check, Failure, Level};
pub use context::Ctx;
pub use kube::KubeApi;
pub use profile::Profile;
pub use run::{Report, Selection};
pub use target::{AdminApi, Resources, Restart, Target};
