//! A replica's driver while it does not lead: it applies what the leader appends, forwards
//! requests to the leader, and takes the lead when its lease says so.
//!
//! The lease only decides who should lead (liveness); the log decides who may (safety): a
//! leader's every append is guarded by the log's end as it saw it, and a new leader's first
//! append (its claim) moves that end, so a previous leader that still believes it leads is
//! fenced at its next append and decides nothing more. A leader also stops starting pushes
//! and deciding once its lease has lapsed by its own clock, before another can take it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ace_model::error::CommonError;
use ace_model::{Model, Reply, Request, RequestError};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{Driver, Job};
use crate::store::{self, Position, Store, StoreError};

/// What the lease says of this replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lease {
    /// Another replica leads (`leader`), or none does now.
    Follow {
        /// Whether some replica holds the lease.
        leader: bool,
    },
    /// This replica leads until `until` unless the lease is renewed by then.
    Lead {
        /// When the lead lapses by this replica's clock (before the lease can pass to
        /// another).
        until: Instant,
    },
}

/// Sends a request to the replica that leads and returns its reply.
pub trait Forward: Send + Sync + std::fmt::Debug + 'static {
    /// The leader's reply to `request`, or a 503 (no leader in time) or 413 (too large to
    /// forward) made here.
    fn forward(&self, request: Request) -> Pin<Box<dyn Future<Output = Reply> + Send>>;
}

/// How a replica's driver takes part in a deployment on a shared log.
pub struct ReplicaPorts {
    /// Who leads, as the lease says.
    pub lease: watch::Receiver<Lease>,
    /// Where requests go while another replica leads.
    pub forward: Arc<dyn Forward>,
    /// A model with nothing applied yet, for rebuilding the state from the log after the lead
    /// was lost (with a generator seeded afresh each time).
    pub fresh_model: Box<dyn FnMut() -> Model + Send>,
    /// Where the state is in the log ([`Store::applied_seq`]), told after every append and
    /// every catch-up: a leader says how far an answer's change is; a follower waits until it
    /// has applied that far before it answers (read-your-writes on the replica written to).
    pub applied: watch::Sender<u64>,
}

impl std::fmt::Debug for ReplicaPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaPorts")
            .field("lease", &*self.lease.borrow())
            .field("forward", &self.forward)
            .finish_non_exhaustive()
    }
}

/// How long to wait before trying the log again when it cannot be reached.
const RETRY: Duration = Duration::from_secs(1);

/// Records read from the log at a time while catching up.
const PAGE: usize = 4096;

/// A 503 in the common error shape.
pub fn unavailable_reply(message: &str) -> Reply {
    Reply::Error(RequestError::Common(CommonError::new(503, message)))
}

/// Whether `lease` says this replica leads now.
pub fn leads(lease: &watch::Receiver<Lease>) -> bool {
    matches!(*lease.borrow(), Lease::Lead { until } if Instant::now() < until)
}

/// Whether the lease task still names this replica the leader, whatever this replica's
/// clock says (a lead given up while it does has lapsed by that clock).
pub fn named_leader(lease: &watch::Receiver<Lease>) -> bool {
    matches!(*lease.borrow(), Lease::Lead { .. })
}

/// Whether `lease` says this replica leads; with `lease-outlived` (`outlive`), trusting it
/// past its lapse.
pub fn still_leads(lease: &watch::Receiver<Lease>, outlive: bool) -> bool {
    if outlive {
        named_leader(lease)
    } else {
        leads(lease)
    }
}

/// Resolves once the lead is lost: the lease says so, or it lapsed without a renewal (not
/// with `lease-outlived`: `outlive`). Never resolves for a server alone (`None`).
pub async fn lease_lost(lease: Option<&mut watch::Receiver<Lease>>, outlive: bool) {
    let Some(lease) = lease else {
        return std::future::pending().await;
    };
    loop {
        let seen = *lease.borrow_and_update();
        let until = match seen {
            Lease::Lead { .. } if outlive => {
                if lease.changed().await.is_err() {
                    return;
                }
                continue;
            }
            Lease::Lead { until } => until,
            Lease::Follow { .. } => return,
        };
        if Instant::now() >= until {
            return;
        }
        tokio::select! {
            biased;
            () = tokio::time::sleep_until(until) => {}
            changed = lease.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

impl<S: Store> Driver<S> {
    /// Follows the log until the lease says this replica leads (`true`) or every handle is
    /// dropped (`false`).
    pub(super) async fn follow(&mut self, replica: &mut ReplicaPorts) -> Result<bool, StoreError> {
        self.metrics.set_leading(false);
        let mut from = self.store.end();
        loop {
            match self.catch_up(&mut from, &replica.applied).await {
                Ok(()) => {}
                Err(StoreError::Fenced(e)) => {
                    tracing::warn!(error = %e, "this follower fell behind a compaction: rebuilding its state from the log");
                    self.rebuild(replica).await?;
                    from = self.store.end();
                    continue;
                }
                Err(StoreError::Unavailable(e)) => {
                    tracing::warn!(error = %e, "the log cannot be read now; this follower tries again");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
                Err(e) => return Err(e),
            }
            if matches!(*replica.lease.borrow_and_update(), Lease::Lead { .. }) {
                return Ok(true);
            }
            tokio::select! {
                biased;
                changed = replica.lease.changed() => {
                    if changed.is_err() {
                        return Err(StoreError::Unavailable("the lease is no longer kept".into()));
                    }
                }
                job = self.requests.recv() => {
                    let Some(job) = job else {
                        return Ok(false);
                    };
                    self.pass_on(job, replica);
                }
                // A push started while this replica led and ended after: the log has what
                // counts, and the leader delivers again what was not acknowledged in it.
                Some(_) = self.outcomes.recv() => {}
                grown = self.store.follow(from) => {
                    if let Err(e) = grown {
                        tracing::warn!(error = %e, "cannot watch the log; this follower tries again");
                        tokio::time::sleep(RETRY).await;
                    }
                }
            }
        }
    }

    /// Applies every record after `from` and moves `from` past them.
    async fn catch_up(
        &mut self,
        from: &mut Position,
        applied_to: &watch::Sender<u64>,
    ) -> Result<(), StoreError> {
        loop {
            let page = self.store.read(*from, PAGE).await?;
            let Some(last) = page.last() else {
                break;
            };
            *from = Position(last.position.0 + 1);
            for entry in &page {
                self.model.apply_record(&entry.record);
            }
        }
        // The proxy on this replica works from what it applied.
        self.install_proxy_table();
        let applied = self.store.applied_seq();
        let latest = self.store.latest_seq().await.unwrap_or(applied);
        self.metrics.set_applied(applied, latest);
        applied_to.send_replace(applied);
        Ok(())
    }

    /// Answers a request while following: readiness here, anything else at the leader.
    fn pass_on(&self, job: Job, replica: &ReplicaPorts) {
        if job.forwarded {
            // Sent here as to the leader, which this replica no longer is: dropping the reply
            // tells the sender nothing was decided.
            return;
        }
        if let Request::StateDigest = job.request {
            let _ = job.reply.send(self.state_digest(false));
            return;
        }
        if let Request::Readiness = job.request {
            let reply = match *replica.lease.borrow() {
                Lease::Follow { leader: true } | Lease::Lead { .. } => Reply::Ready,
                Lease::Follow { leader: false } => {
                    unavailable_reply("No replica leads the deployment now.")
                }
            };
            let _ = job.reply.send(reply);
            return;
        }
        self.metrics.replica_forwarded();
        let forward = Arc::clone(&replica.forward);
        tokio::spawn(async move {
            let mut reply_to = job.reply;
            // Once the caller is gone (it gave up waiting), the request is not sent again: a
            // send long after would decide it after the caller's later requests (a deletion
            // it gave up on undoing the creation that followed it).
            tokio::select! {
                biased;
                () = reply_to.closed() => {}
                reply = forward.forward(job.request) => {
                    let _ = reply_to.send(reply);
                }
            }
        });
    }

    /// Takes the lead: catches up, claims the log, takes the state over. `false` if the lease
    /// lapsed meanwhile or the claim kept losing to another writer.
    pub(super) async fn take_lead(
        &mut self,
        replica: &mut ReplicaPorts,
    ) -> Result<bool, StoreError> {
        let mut from = self.store.end();
        for _ in 0..10 {
            if !leads(&replica.lease) {
                return Ok(false);
            }
            match self.catch_up(&mut from, &replica.applied).await {
                Ok(()) => {}
                Err(StoreError::Fenced(_)) => {
                    self.rebuild(replica).await?;
                    from = self.store.end();
                    continue;
                }
                Err(StoreError::Unavailable(e)) => {
                    tracing::warn!(error = %e, "cannot read the log to take the lead; trying again");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
                Err(e) => return Err(e),
            }
            match self.store.claim().await {
                Ok(_) => {
                    self.model.take_over();
                    self.metrics.replica_takeover();
                    self.metrics.set_leading(true);
                    self.metrics
                        .set_applied(self.store.applied_seq(), self.store.applied_seq());
                    tracing::info!(
                        applied = self.store.applied_seq(),
                        "this replica leads the deployment"
                    );
                    return Ok(true);
                }
                Err(StoreError::Fenced(e)) => {
                    // The previous leader appended after what was read: read it too.
                    self.metrics.replica_conflict();
                    tracing::info!(error = %e, "the log moved while this replica claimed it; catching up");
                }
                Err(StoreError::Unavailable(e)) => {
                    tracing::warn!(error = %e, "cannot claim the log now; trying again");
                    tokio::time::sleep(RETRY).await;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }

    /// Rebuilds the state from the log, as a restarted server does (what was decided but not
    /// appended is gone with the old state).
    pub(super) async fn rebuild(&mut self, replica: &mut ReplicaPorts) -> Result<(), StoreError> {
        self.metrics.set_leading(false);
        loop {
            let mut model = (replica.fresh_model)();
            match store::replay(&mut self.store, |record| model.apply_record(&record)).await {
                Ok(records) => {
                    self.model = model;
                    self.full = false;
                    tracing::info!(records, "rebuilt this replica's state from the log");
                    return Ok(());
                }
                Err(e @ (StoreError::Unavailable(_) | StoreError::Fenced(_))) => {
                    tracing::warn!(error = %e, "cannot read the log to rebuild; trying again");
                    tokio::time::sleep(RETRY).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}
