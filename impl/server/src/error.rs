//! Why a server could not start, by whose fault: the operator's environment (a directory, a
//! port), the data it was given (a damaged store, an unreadable CA), or the machine.

use std::path::PathBuf;

use ace_client::TlsError;

use crate::pki::PkiError;
use crate::store::StoreError;

/// Why [`crate::serve::start`] failed.
#[derive(Debug)]
pub enum StartError {
    /// The data directory cannot be created or used.
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A listener cannot be bound (the port is taken, the address is not this host's).
    Listen {
        /// Which surface.
        surface: &'static str,
        /// The address asked for.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The store cannot be opened or read back.
    Store(StoreError),
    /// The CA or the server identity cannot be read, made or written.
    Pki(PkiError),
    /// A TLS configuration was refused (a CA certificate given for subscribers, say).
    Tls(TlsError),
    /// rustls refused the server's own certificate or key.
    ServerTls(rustls::Error),
    /// The driver's thread or runtime could not be started.
    Driver(std::io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::DataDir { path, source } => {
                write!(f, "data directory {}: {source}", path.display())
            }
            StartError::Listen {
                surface,
                addr,
                source,
            } => write!(f, "cannot listen on {addr} ({surface}): {source}"),
            StartError::Store(e) => write!(f, "store: {e}"),
            StartError::Pki(e) => write!(f, "certificates: {e}"),
            StartError::Tls(e) => write!(f, "TLS: {e}"),
            StartError::ServerTls(e) => write!(f, "TLS: {e}"),
            StartError::Driver(e) => write!(f, "cannot start the driver: {e}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::DataDir { source, .. } | StartError::Listen { source, .. } => Some(source),
            StartError::Store(e) => Some(e),
            StartError::Pki(e) => Some(e),
            StartError::Tls(e) => Some(e),
            StartError::ServerTls(e) => Some(e),
            StartError::Driver(e) => Some(e),
        }
    }
}

impl From<StoreError> for StartError {
    fn from(e: StoreError) -> Self {
        StartError::Store(e)
    }
}

impl From<PkiError> for StartError {
    fn from(e: PkiError) -> Self {
        StartError::Pki(e)
    }
}

impl From<TlsError> for StartError {
    fn from(e: TlsError) -> Self {
        StartError::Tls(e)
    }
}
