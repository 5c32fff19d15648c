//! The server's identity: its certificate for the configured host names, signed by ACE's CA
//! and kept in the data directory (`server.crt`, `server.key`, `server.hosts`); issued again
//! when the host names change.

use std::path::Path;

use ace_model::Timestamp;

use super::files::{read_file, write_atomic, write_private};
use super::{Ca, KeySource, PkiError};

/// The server certificate and key (PEM) for `hosts`, from `dir` or newly issued there.
pub fn server_identity(
    dir: &Path,
    ca: &Ca,
    hosts: &[String],
    keys: &mut KeySource,
    now: Timestamp,
) -> Result<(String, String), PkiError> {
    let (crt, key, names) = (
        dir.join("server.crt"),
        dir.join("server.key"),
        dir.join("server.hosts"),
    );
    let wanted = hosts.join("\n");
    if crt.exists() && key.exists() && read_file(&names).ok().as_deref() == Some(wanted.as_str()) {
        return Ok((read_file(&crt)?, read_file(&key)?));
    }
    let key_pair = keys.next_key()?;
    let cert_pem = ca.issue_server(hosts, &key_pair, now)?;
    let key_pem = key_pair.serialize_pem();
    write_private(&key, &key_pem)?;
    write_atomic(&crt, cert_pem.as_bytes())?;
    write_atomic(&names, wanted.as_bytes())?;
    Ok((cert_pem, key_pem))
}
