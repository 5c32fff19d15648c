//! The model's behaviour, driven through its public interface: the seeds' flows, Kyma's
//! validation orders and error bodies (snapshots), properties over random command sequences,
//! and the bug zoo's wrong branches.

mod bindings;
mod bug_zoo;
mod bus_properties;
mod common;
mod connector_flow;
mod connector_properties;
mod error_bodies;
mod kube;
mod lambda_flow;
mod variants;
mod wire;
