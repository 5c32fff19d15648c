//! Publishing: the publish API's and the Event Service's checks, and the acceptance of an
//! event, owed to every matching, activated subscription.

use std::sync::Arc;

use crate::bugs::bug_on;
use crate::effects::Effects;
use crate::record::Record;

use super::state::*;
use super::*;

impl EventBus {
    pub(super) fn publish(
        &mut self,
        fx: &mut Effects<'_>,
        method: &str,
        source_id_header: Option<&str>,
        body: &[u8],
        headers: &[(String, String)],
    ) -> BusReply {
        if method != "POST" {
            return BusReply::PublishRefused(PublishError::BadRequest);
        }
        if body.len() > self.config.max_event_bytes {
            return BusReply::PublishRefused(PublishError::RequestBodyTooLarge);
        }
        let candidate = match publish::parse_publish(body, source_id_header)
            .and_then(|c| publish::validate_publish(&c).map(|()| c))
        {
            Ok(c) => c,
            Err(e) => return BusReply::PublishRefused(e),
        };
        if self.storage_full {
            return BusReply::PublishRefused(PublishError::InsufficientStorage);
        }
        self.accept(fx, candidate, headers)
    }

    /// Handles `POST /{re}/v1/events` from an authorized external solution of `re`: the
    /// Event Service's checks (reference §3.3), `source-id` = `re`, then the publish checks
    /// (§3.4, §4.1) whose refusal is relayed with its status.
    pub fn publish_from_gateway(
        &mut self,
        fx: &mut Effects<'_>,
        re: &str,
        event: GatewayEvent,
    ) -> BusReply {
        if event.body.len() > self.config.max_event_bytes {
            return BusReply::EventServiceRefused(EventServiceError::RequestBodyTooLarge);
        }
        let candidate = match publish::parse_gateway(&event.body, re) {
            Ok(c) => c,
            Err(e) => return BusReply::EventServiceRefused(e),
        };
        if let Err(e) = publish::validate_publish(&candidate) {
            return BusReply::EventServiceRefused(EventServiceError::Publish(e));
        }
        if self.storage_full {
            return BusReply::EventServiceRefused(EventServiceError::Publish(
                PublishError::InsufficientStorage,
            ));
        }
        let reply = self.accept(fx, candidate, &event.headers);
        self.pump(fx.now);
        reply
    }

    /// Accepts a validated event: owed to every matching, activated subscription, durable
    /// (its record queued) before the reply.
    pub(super) fn accept(
        &mut self,
        fx: &mut Effects<'_>,
        mut candidate: publish::Candidate,
        headers: &[(String, String)],
    ) -> BusReply {
        let event_id = if candidate.event_id.is_empty() {
            fx.rng.uuid_v4()
        } else {
            std::mem::take(&mut candidate.event_id)
        };
        let event = candidate.into_event(event_id.clone(), publish::trace_headers_of(headers));
        // The ids go into a list the bus keeps, to save an allocation per event.
        let mut ids = std::mem::take(&mut self.accepted_ids);
        ids.clear();
        let mut deliveries = Vec::new();
        let deliver_inactive = bug_on!(self.bugs, DeliverInactive);
        for (&id, s) in &self.subscriptions {
            if (s.condition.activated || deliver_inactive)
                && s.spec.matches(
                    &event.source_id,
                    &event.event_type,
                    &event.event_type_version,
                )
            {
                ids.push(id);
                deliveries.push(Arc::clone(&s.key));
            }
        }
        let (seq, at) = (self.next_seq, fx.now);
        // Committed with the ids at hand (see `apply`).
        self.store_event(seq, at, &event, &ids);
        fx.push_record(Record::Bus(BusRecord::EventAccepted {
            seq,
            at,
            event,
            deliveries,
        }));
        for &id in &ids {
            self.limit_backlog(fx, id);
        }
        self.accepted_ids = ids;
        BusReply::Published { event_id }
    }
}
