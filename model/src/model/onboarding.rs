//! The Connector Service's handlers: tokens, info and client certificates (reference §1).

#[cfg(feature = "bug-zoo")]
use crate::bugs::Bug;
use crate::bugs::bug_on;
use crate::connector::{
    self, ConnectorError, CsrSubmission, IssuedCertificate, TokenDigest, TokenReply,
};
use crate::record::Record;
use crate::time::Timestamp;

use super::*;

impl Model {
    pub(super) fn issue_token(&mut self, now: Timestamp, re: &str) -> String {
        let token = self.rng.token(self.config.connector.token_length);
        self.commit(Record::TokenIssued {
            re: re.to_owned(),
            digest: TokenDigest::of(&token),
            expires_at: now.saturating_add(self.config.connector.token_ttl),
        });
        token
    }

    pub(super) fn create_token(&mut self, now: Timestamp, re: &str) -> Result<Reply, RequestError> {
        if self.state.remote_environment(re).is_none() {
            return Err(RequestError::Connector(
                ConnectorError::RemoteEnvironmentNotFound(re.to_owned()),
            ));
        }
        let token = self.issue_token(now, re);
        Ok(Reply::Token(TokenReply {
            url: connector::info_url(&self.config.connector, re, &token),
            token,
        }))
    }

    pub(super) fn check_token(
        &self,
        now: Timestamp,
        re: &str,
        token: Option<&str>,
    ) -> Result<(), RequestError> {
        let token = token
            .filter(|t| !t.is_empty())
            .ok_or(RequestError::Connector(ConnectorError::TokenNotProvided))?;
        match self.state.tokens.get(re) {
            Some(live) if live.accepts(token, now) => Ok(()),
            Some(live)
                if bug_on!(self.config.bugs, TokenTtlIgnored) && live.digest.matches(token) =>
            {
                Ok(())
            }
            _ => Err(RequestError::Connector(ConnectorError::InvalidToken)),
        }
    }

    pub(super) fn info(
        &mut self,
        now: Timestamp,
        re: &str,
        token: Option<&str>,
    ) -> Result<Reply, RequestError> {
        self.check_token(now, re, token)?;
        #[cfg(feature = "bug-zoo")]
        if self.config.bugs.has(Bug::TokenReusable)
            && let Some(token) = token
        {
            // The configuration URL's token is not consumed: it becomes the CSR token too.
            return Ok(Reply::Info(connector::info_reply(
                &self.config.connector,
                re,
                token,
            )));
        }
        let csr_token = self.issue_token(now, re);
        Ok(Reply::Info(connector::info_reply(
            &self.config.connector,
            re,
            &csr_token,
        )))
    }

    pub(super) fn client_certs(
        &mut self,
        now: Timestamp,
        re: &str,
        token: Option<&str>,
        csr: CsrSubmission,
    ) -> Result<Reply, RequestError> {
        self.check_token(now, re, token)?;
        let csr = connector::check_csr(re, &self.config.connector, csr)
            .map_err(RequestError::Connector)?;
        // A live token implies a live RE: deleting an RE deletes its token.
        let incarnation = self
            .state
            .remote_environment(re)
            .map(|r| r.incarnation)
            .ok_or(RequestError::Connector(ConnectorError::InvalidToken))?;
        // Unique among every certificate ever issued, even if the random numbers repeat (a
        // server restored from a snapshot, or restarted with the same seed): a serial that is
        // issued again would take over the first certificate's RE and revoke it.
        let serial = loop {
            let serial = self.rng.serial();
            if !self.state.certificates.contains_key(&serial) {
                break serial;
            }
        };
        let cert = IssuedCertificate {
            serial,
            re: re.to_owned(),
            incarnation,
            subject: csr.subject,
            not_before: now,
            not_after: now.saturating_add(self.config.connector.certificate_validity),
        };
        #[cfg(feature = "bug-zoo")]
        let live = self.state.tokens.get(re).cloned();
        self.commit(Record::CertificateIssued(cert.clone()));
        #[cfg(feature = "bug-zoo")]
        if self.config.bugs.has(Bug::TokenReusable)
            && let Some(live) = live
        {
            // Issuing the certificate consumed the token: issue the same one again.
            self.commit(Record::TokenIssued {
                re: re.to_owned(),
                digest: live.digest,
                expires_at: live.expires_at,
            });
        }
        Ok(Reply::Certificate(cert))
    }
}
