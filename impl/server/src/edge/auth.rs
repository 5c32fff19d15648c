//! The admin listener's bearer token: made once and kept in the data directory, checked in
//! constant time on every call but the health probes.

use std::path::Path;

use ace_model::error::CommonError;
use bytes::Bytes;
use hyper::header::{AUTHORIZATION, HeaderValue, WWW_AUTHENTICATE};
use subtle::ConstantTimeEq;

use super::reply::{Response, error};
use crate::options::AdminAuth;
use crate::pki::{PkiError, files};

/// The file the generated token is kept in, in the data directory.
pub const TOKEN_FILE: &str = "admin.token";

/// The admin API's token, if it has one.
#[derive(Clone)]
pub struct AdminToken(Bytes);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never printed.
        f.write_str("AdminToken(..)")
    }
}

impl AdminToken {
    /// The token as text (for the kubeconfig and the tests).
    pub fn expose(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// Whether `headers` carry `Authorization: Bearer <this token>`.
    pub fn admits(&self, headers: &hyper::HeaderMap) -> bool {
        let given = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
            .unwrap_or_default();
        given.ct_eq(&self.0).into()
    }
}

/// The token `auth` asks for: read from `dir`, or made there (from `random` bytes) at the first
/// start; `None` when authentication is off.
pub fn load_or_create(
    dir: &Path,
    auth: &AdminAuth,
    random: impl FnOnce() -> [u8; 32],
) -> Result<Option<AdminToken>, PkiError> {
    let token = match auth {
        AdminAuth::Off => return Ok(None),
        AdminAuth::Token(token) => token.clone(),
        AdminAuth::Generated => {
            let path = dir.join(TOKEN_FILE);
            if path.exists() {
                files::read_file(&path)?.trim().to_owned()
            } else {
                let token = ace_model::hex::lower(&random());
                files::write_private(&path, &format!("{token}\n"))?;
                token
            }
        }
    };
    Ok(Some(AdminToken(Bytes::from(token))))
}

/// The answer to a call without the token: 401 with the common error body.
pub fn unauthorized() -> Response {
    let mut r = error(&CommonError::new(
        401,
        format!(
            "The admin API needs a bearer token: send Authorization: Bearer <token>, the token \
             kept in {TOKEN_FILE} in ACE's data directory (ace apply, get and delete read it)."
        ),
    ));
    r.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"ace-admin\""),
    );
    r
}
