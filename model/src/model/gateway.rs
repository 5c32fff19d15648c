//! The gateway's handlers: the certificate check, then the Metadata Service (reference §2)
//! or the Event Service (§3).

#[cfg(feature = "bug-zoo")]
use crate::bugs::Bug;
use crate::bugs::bug_on;
use crate::connector::PeerCertificate;
use crate::record::Record;
use crate::registry::{self, MetadataError};
use crate::time::Timestamp;

use super::*;

impl Model {
    pub(super) fn gateway(
        &mut self,
        now: Timestamp,
        re: &str,
        peer: Option<&PeerCertificate>,
        call: GatewayCall,
    ) -> Result<Reply, RequestError> {
        self.state
            .authorize_with(now, re, peer, self.config.bugs)
            .map_err(RequestError::Gateway)?;
        let not_found =
            || RequestError::Metadata(MetadataError::RemoteEnvironmentNotFound(re.to_owned()));
        let remote = self.state.remote_environment(re).ok_or_else(not_found)?;
        match call {
            GatewayCall::MetadataRoot => Ok(Reply::Redirect {
                location: format!("/{re}/v1/metadata/api.yaml"),
            }),
            GatewayCall::MetadataSpec => Ok(Reply::MetadataSpec),
            GatewayCall::ListServices => Ok(Reply::ServiceList(remote.services.clone())),
            GatewayCall::GetService { id } => {
                let service = remote
                    .service(&id)
                    .ok_or(RequestError::Metadata(MetadataError::NotFound(id)))?;
                #[cfg(feature = "bug-zoo")]
                if self.config.bugs.has(Bug::SecretReturned) {
                    return Ok(Reply::Resource {
                        status: 200,
                        body: service.details_json_unmasked(),
                    });
                }
                Ok(Reply::ServiceDetails(Box::new(service.clone())))
            }
            GatewayCall::CreateService { body } => {
                let def =
                    registry::parse_service_definition(&body).map_err(RequestError::Metadata)?;
                if let Some(e) = def.egress_problem(&self.config.egress) {
                    return Err(RequestError::Metadata(e));
                }
                let identifier = def.identifier().to_owned();
                if !bug_on!(self.config.bugs, IdentifierNotUnique)
                    && !identifier.is_empty()
                    && remote.services.iter().any(|s| s.identifier == identifier)
                {
                    return Err(RequestError::Metadata(MetadataError::IdentifierExists(
                        identifier,
                    )));
                }
                // Unique in the registry, even if the random numbers repeat.
                let id = loop {
                    let id = self.rng.uuid_v4();
                    let taken = self
                        .state
                        .remote_environments
                        .values()
                        .any(|r| r.services.iter().any(|s| s.id == id));
                    if !taken {
                        break id;
                    }
                };
                let service = def.into_service(re, id.clone(), identifier, &self.config.registry);
                self.commit(Record::ServiceRegistered {
                    re: re.to_owned(),
                    service: Box::new(service),
                });
                Ok(Reply::ServiceCreated { id })
            }
            GatewayCall::UpdateService { id, body } => {
                let def =
                    registry::parse_service_definition(&body).map_err(RequestError::Metadata)?;
                if let Some(e) = def.egress_problem(&self.config.egress) {
                    return Err(RequestError::Metadata(e));
                }
                let stored = remote.service(&id).ok_or_else(|| {
                    RequestError::Metadata(MetadataError::UpdateNotFound(id.clone()))
                })?;
                let identifier = stored.identifier.clone();
                let service = Box::new(def.into_service(re, id, identifier, &self.config.registry));
                self.commit(Record::ServiceUpdated {
                    re: re.to_owned(),
                    service: service.clone(),
                });
                Ok(Reply::ServiceUpdated(service))
            }
            GatewayCall::DeleteService { id } => {
                if remote.service(&id).is_some() {
                    self.deprovision_instances_of(now, re, &id);
                    self.commit(Record::ServiceDeleted {
                        re: re.to_owned(),
                        id,
                    });
                }
                Ok(Reply::NoContent)
            }
            GatewayCall::PublishEvent(event) => {
                Ok(Reply::Bus(self.with_bus(now, |bus, fx| {
                    bus.publish_from_gateway(fx, re, event)
                })))
            }
        }
    }
}
