//! The admin surface of the Event Bus: EventActivations, Subscriptions (with the
//! sub-validator's condition), dead letters and their replay, the delivery figures.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::bugs::bug_on;
use crate::effects::Effects;

use super::state::*;
use super::*;

impl EventBus {
    /// Handles a request to the bus.
    pub fn handle(&mut self, fx: &mut Effects<'_>, request: BusRequest) -> BusReply {
        let reply = match request {
            BusRequest::Publish {
                method,
                source_id_header,
                body,
                headers,
            } => self.publish(fx, &method, source_id_header.as_deref(), &body, &headers),
            BusRequest::ApplyActivation {
                namespace,
                name,
                spec,
            } => self.apply_activation(fx, namespace, name, spec),
            BusRequest::DeleteActivation { namespace, name } => {
                let key = ResourceKey::new(namespace, name);
                if self.activations.contains_key(&key) {
                    let at = fx.now;
                    self.commit(
                        fx,
                        BusRecord::ActivationDeleted {
                            activation: key,
                            at,
                        },
                    );
                    BusReply::NoContent
                } else {
                    BusReply::ResourceRefused(ResourceError::NotFound {
                        kind: "EventActivation",
                        key,
                    })
                }
            }
            BusRequest::GetActivation { namespace, name } => {
                let key = ResourceKey::new(namespace, name);
                match self.activations.get(&key) {
                    Some(spec) => BusReply::Resource {
                        status: 200,
                        body: subscription::activation_resource(&key, spec),
                    },
                    None => BusReply::ResourceRefused(ResourceError::NotFound {
                        kind: "EventActivation",
                        key,
                    }),
                }
            }
            BusRequest::ListActivations { namespace } => BusReply::Resource {
                status: 200,
                body: self
                    .activations
                    .iter()
                    .filter(|(k, _)| namespace.as_ref().is_none_or(|n| *n == k.namespace))
                    .map(|(k, spec)| subscription::activation_resource(k, spec))
                    .collect(),
            },
            BusRequest::ApplySubscription {
                namespace,
                name,
                spec,
            } => self.apply_subscription(fx, namespace, name, spec),
            BusRequest::DeleteSubscription { namespace, name } => {
                let key = ResourceKey::new(namespace, name);
                if let Some(record) = self.deletion(&key) {
                    self.commit(fx, record);
                    BusReply::NoContent
                } else {
                    BusReply::ResourceRefused(ResourceError::NotFound {
                        kind: "Subscription",
                        key,
                    })
                }
            }
            BusRequest::GetSubscription { namespace, name } => {
                let key = ResourceKey::new(namespace, name);
                match self.subscription_resource(&key) {
                    Some(body) => BusReply::Resource { status: 200, body },
                    None => BusReply::ResourceRefused(ResourceError::NotFound {
                        kind: "Subscription",
                        key,
                    }),
                }
            }
            BusRequest::ListSubscriptions { namespace } => BusReply::Resource {
                status: 200,
                body: self
                    .subscription_ids
                    .keys()
                    .filter(|k| namespace.as_ref().is_none_or(|n| *n == k.namespace))
                    .filter_map(|k| self.subscription_resource(k))
                    .collect(),
            },
            BusRequest::DeliveryFigures => BusReply::Figures(
                self.subscription_ids
                    .iter()
                    .map(|(key, id)| (key.clone(), self.subscriptions[id].stats()))
                    .collect(),
            ),
            BusRequest::ListDeadLetters {
                namespace,
                after,
                limit,
            } => self.dead_letters(namespace.as_deref(), after.as_ref(), limit),
            BusRequest::ReplayDeadLetters {
                namespace,
                name,
                selection,
            } => self.replay_dead_letters(fx, namespace, name, selection),
        };
        self.pump(fx.now);
        reply
    }

    pub(super) fn apply_activation(
        &mut self,
        fx: &mut Effects<'_>,
        namespace: String,
        name: String,
        spec: ActivationSpec,
    ) -> BusReply {
        if let Err(e) = subscription::check_names("EventActivation", &namespace, &name) {
            return BusReply::ResourceRefused(e);
        }
        if spec.source_id.is_empty() {
            return BusReply::ResourceRefused(ResourceError::InvalidSpec {
                kind: "EventActivation",
                problem: "spec.sourceId must not be empty".to_owned(),
            });
        }
        let key = ResourceKey::new(namespace, name);
        let status = match self.activations.get(&key) {
            Some(old) if *old == spec => 200,
            old => {
                let status = if old.is_some() { 200 } else { 201 };
                let at = fx.now;
                self.commit(
                    fx,
                    BusRecord::ActivationApplied {
                        activation: key.clone(),
                        spec: spec.clone(),
                        at,
                    },
                );
                status
            }
        };
        BusReply::Resource {
            status,
            body: subscription::activation_resource(&key, &spec),
        }
    }

    pub(super) fn apply_subscription(
        &mut self,
        fx: &mut Effects<'_>,
        namespace: String,
        name: String,
        spec: SubscriptionSpec,
    ) -> BusReply {
        if let Err(e) = subscription::check_names("Subscription", &namespace, &name) {
            return BusReply::ResourceRefused(e);
        }
        if let Some(problem) = spec.problem() {
            return BusReply::ResourceRefused(ResourceError::InvalidSpec {
                kind: "Subscription",
                problem,
            });
        }
        if let Err(refusal) = self.egress.check_url(&spec.endpoint) {
            return BusReply::ResourceRefused(ResourceError::InvalidSpec {
                kind: "Subscription",
                problem: format!(
                    "spec.endpoint {:?} is refused by ACE's egress policy: {refusal}",
                    spec.endpoint
                ),
            });
        }
        let key = ResourceKey::new(namespace, name);
        let existing = self
            .subscription_ids
            .get(&key)
            .map(|id| &self.subscriptions[id].spec);
        let status = match existing {
            Some(old) if *old == spec => 200,
            old => {
                let status = if old.is_some() { 200 } else { 201 };
                let at = fx.now;
                if old.is_some() && bug_on!(self.bugs, LossOnSubscriptionUpdate) {
                    // Kyma 0.5 recreated an updated subscription: what it was owed is lost.
                    if let Some(record) = self.deletion(&key) {
                        self.commit(fx, record);
                    }
                }
                self.commit(
                    fx,
                    BusRecord::SubscriptionApplied {
                        subscription: key.clone(),
                        spec,
                        at,
                    },
                );
                status
            }
        };
        let body = self.subscription_resource(&key).unwrap_or(Value::Null);
        BusReply::Resource { status, body }
    }

    pub(super) fn subscription_resource(&self, key: &ResourceKey) -> Option<Value> {
        let sub = &self.subscriptions[self.subscription_ids.get(key)?];
        Some(subscription::subscription_resource(
            key,
            &sub.spec,
            sub.condition,
            sub.stats(),
        ))
    }

    /// The record deleting subscription `key`, if it exists: it names the events no other
    /// subscription owes or holds, which the store may then forget.
    fn deletion(&self, key: &ResourceKey) -> Option<BusRecord> {
        let id = *self.subscription_ids.get(key)?;
        let sub = &self.subscriptions[&id];
        let mut held = sub.owed.clone();
        held.add_all(&sub.dead);
        Some(BusRecord::SubscriptionDeleted {
            subscription: key.clone(),
            released: self.released(id, &held),
        })
    }

    pub(super) fn dead_letters(
        &self,
        namespace: Option<&str>,
        after: Option<&DeadLetterRef>,
        limit: usize,
    ) -> BusReply {
        let mut entries = Vec::new();
        let mut more = None;
        let keys = self
            .subscription_ids
            .iter()
            .filter(|(key, _)| namespace.is_none_or(|n| n == key.namespace))
            .filter(|(key, _)| after.is_none_or(|a| **key >= a.subscription));
        'subscriptions: for (key, id) in keys {
            let from = match after {
                Some(a) if a.subscription == *key => a.seq.saturating_add(1),
                _ => 0,
            };
            for seq in self.subscriptions[id].dead.range(from..) {
                if entries.len() == limit {
                    more = entries.last().cloned();
                    break 'subscriptions;
                }
                entries.push(DeadLetterRef {
                    subscription: key.clone(),
                    seq,
                });
            }
        }
        BusReply::DeadLetters { entries, more }
    }

    pub(super) fn replay_dead_letters(
        &mut self,
        fx: &mut Effects<'_>,
        namespace: String,
        name: String,
        selection: ReplaySelection,
    ) -> BusReply {
        let key = ResourceKey::new(namespace, name);
        let Some(&id) = self.subscription_ids.get(&key) else {
            return BusReply::ResourceRefused(ResourceError::NotFound {
                kind: "Subscription",
                key,
            });
        };
        let sub = &self.subscriptions[&id];
        let seqs = match selection {
            ReplaySelection::All => sub.dead.clone(),
            ReplaySelection::Seqs(seqs) => {
                let mut seqs: SeqSet = seqs.into_iter().collect();
                seqs.intersect_with(&sub.dead);
                seqs
            }
            ReplaySelection::EventId(event_id) => {
                return BusReply::ReplayNeedsEvents {
                    subscription: key,
                    event_id,
                    seqs: sub.dead.iter().collect(),
                };
            }
        };
        let replayed = seqs.len();
        if !seqs.is_empty() {
            let at = fx.now;
            self.commit(
                fx,
                BusRecord::DeadLettersReplayed {
                    subscription: Arc::clone(&sub.key),
                    seqs,
                    at,
                },
            );
        }
        self.pump(fx.now);
        BusReply::Resource {
            status: 200,
            body: json!({ "replayed": replayed }),
        }
    }

    /// Creates the EventActivation made by provisioning a service that has events
    /// (reference §6.3: named after the service id, `sourceId` = the RE).
    pub fn create_activation(
        &mut self,
        fx: &mut Effects<'_>,
        namespace: &str,
        name: &str,
        source_id: &str,
        display_name: &str,
    ) {
        let key = ResourceKey::new(namespace, name);
        let spec = ActivationSpec {
            source_id: source_id.to_owned(),
            display_name: display_name.to_owned(),
        };
        if self.activations.get(&key) != Some(&spec) {
            let at = fx.now;
            self.commit(
                fx,
                BusRecord::ActivationApplied {
                    activation: key,
                    spec,
                    at,
                },
            );
        }
        self.pump(fx.now);
    }

    /// Removes the EventActivation made by provisioning, on deprovisioning.
    pub fn delete_activation(&mut self, fx: &mut Effects<'_>, namespace: &str, name: &str) {
        let key = ResourceKey::new(namespace, name);
        if self.activations.contains_key(&key) {
            let at = fx.now;
            self.commit(
                fx,
                BusRecord::ActivationDeleted {
                    activation: key,
                    at,
                },
            );
        }
        self.pump(fx.now);
    }
}
