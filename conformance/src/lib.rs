//! `ace-conformance`: checks a live Application Connector and Event Bus deployment (ACE or a
//! real Kyma) against the documented contract, with `ace-model` as the oracle.
//!
//! Not built yet. Each check will be one sentence of the contract with an id, a MUST or SHOULD
//! level and its source, run over HTTP(S) against the deployment's documented APIs.

#![forbid(unsafe_code)]
