//! The files of ACE's identity: PEM certificates and keys, written atomically, secrets
//! readable by their owner only.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::PkiError;

/// Reads a text file of the identity.
pub fn read_file(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| PkiError::File {
        path: path.to_owned(),
        source,
    })
}

/// Parses PEM certificates.
pub fn certs_from_pem(pem_text: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    pem::parse_many(pem_text)
        .map_err(|e| PkiError::Pem(e.to_string()))
        .map(|blocks| {
            blocks
                .into_iter()
                .filter(|b| b.tag() == "CERTIFICATE")
                .map(|b| CertificateDer::from(b.into_contents()))
                .collect()
        })
}

/// Parses a PKCS#8 PEM private key.
pub fn key_from_pem(pem_text: &str) -> Result<PrivateKeyDer<'static>, PkiError> {
    let block = pem::parse_many(pem_text)
        .map_err(|e| PkiError::Pem(e.to_string()))?
        .into_iter()
        .find(|b| b.tag().ends_with("PRIVATE KEY"))
        .ok_or_else(|| PkiError::Pem("no private key".into()))?;
    match block.tag() {
        "PRIVATE KEY" => Ok(PrivateKeyDer::Pkcs8(block.into_contents().into())),
        "RSA PRIVATE KEY" => Ok(PrivateKeyDer::Pkcs1(block.into_contents().into())),
        "EC PRIVATE KEY" => Ok(PrivateKeyDer::Sec1(block.into_contents().into())),
        other => Err(PkiError::Pem(format!("unsupported key type {other}"))),
    }
}

/// Writes a file atomically (temporary file, sync, rename).
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), PkiError> {
    in_file(path, write_atomic_io(path, contents))
}

/// Writes a secret file readable by its owner only.
pub fn write_private(path: &Path, contents: &str) -> Result<(), PkiError> {
    in_file(path, write_private_io(path, contents))
}

fn in_file<T>(path: &Path, result: io::Result<T>) -> Result<T, PkiError> {
    result.map_err(|source| PkiError::File {
        path: path.to_owned(),
        source,
    })
}

fn write_atomic_io(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let tmp: PathBuf = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp)?;
    f.write_all(contents)?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}

fn write_private_io(path: &Path, contents: &str) -> io::Result<()> {
    use std::io::Write;
    let tmp: PathBuf = path.with_extension("tmp");
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(&tmp)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}
