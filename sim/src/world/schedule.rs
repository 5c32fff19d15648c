//! The fault schedule: when each fault the seed picked strikes, and how.

use std::time::Duration;

pub use crate::faults::{Faults, ReplicaFaults};
use ace_server::nats::standin::StandIn;

/// The deployment the faults strike: one `ace`, or replicas on a JetStream stand-in.
#[derive(Clone, Debug)]
pub(super) struct Deployment {
    /// Its hosts.
    pub(super) hosts: Vec<&'static str>,
    /// The host the partition, clog and crashes strike.
    pub(super) target: &'static str,
    /// The replicas' JetStream, if replicated.
    pub(super) standin: Option<StandIn>,
}

impl Deployment {
    /// The replica holding the lease now, if any.
    pub(super) fn leader(&self) -> Option<&'static str> {
        let standin = self.standin.as_ref()?;
        let holder = standin.kv_value(LEASE_BUCKET, "leader")?;
        self.hosts
            .iter()
            .find(|h| h.as_bytes() == holder.as_ref())
            .copied()
    }
}

/// The lease bucket of the replicas' stream.
pub(super) const LEASE_BUCKET: &str = "ACE_LEASE";

/// A fault's action at its time.
#[derive(Clone, Debug)]
pub(super) enum Action {
    Partition(&'static str, Option<bool>),
    Repair(&'static str, Option<bool>),
    Hold(&'static str),
    Release(&'static str),
    Loss(f64),
    Crash,
    /// A host goes down: nothing reaches it until it is revived.
    Down(&'static str),
    /// A host that was down starts again.
    Revive(&'static str),
    /// The replica holding the lease crashes and restarts.
    LeaderCrash,
    /// The stream's leader moves as the next publish to the log is replicated (interrupting
    /// it); the election takes this long.
    MoveLeader(Duration),
    /// A replica is cut off the log, or connected again.
    Cut(usize, bool),
    /// A replica is paused (its links held, its log requests unanswered), or resumed.
    Pause(usize, bool),
}

/// The world's hosts besides ACE's.
const NOT_ACE: [&str; 6] = [
    "operator",
    "solution-1",
    "solution-2",
    "sub-a",
    "sub-b",
    "api",
];

/// The timed actions of `faults` (and `replicated`'s), in order.
pub(super) fn schedule(
    faults: &Faults,
    replicated: Option<&ReplicaFaults>,
) -> Vec<(Duration, Action)> {
    let mut plan = Vec::new();
    if let Some(r) = replicated {
        if let Some(at) = r.leader_crash {
            plan.push((at, Action::LeaderCrash));
        }
        for (at, election) in &r.leader_moves {
            plan.push((*at, Action::MoveLeader(*election)));
        }
        if let Some((replica, at, len)) = r.cut {
            plan.push((at, Action::Cut(replica, true)));
            plan.push((at + len, Action::Cut(replica, false)));
        }
        if let Some((replica, at, len)) = r.pause {
            plan.push((at, Action::Pause(replica, true)));
            plan.push((at + len, Action::Pause(replica, false)));
        }
    }
    if let Some(p) = &faults.partition {
        plan.push((p.at, Action::Partition(p.peer, p.oneway)));
        plan.push((p.at + p.len, Action::Repair(p.peer, p.oneway)));
    }
    if let Some(c) = &faults.clog {
        for (i, peer) in c.peers.iter().enumerate() {
            plan.push((c.at, Action::Hold(peer)));
            plan.push((
                c.at + c.len + Duration::from_millis(50 * i as u64),
                Action::Release(peer),
            ));
        }
    }
    if let Some(l) = &faults.loss {
        plan.push((l.at, Action::Loss(l.rate)));
        plan.push((l.at + l.len, Action::Loss(0.0)));
    }
    for at in &faults.crashes {
        plan.push((*at, Action::Crash));
    }
    if let Some(d) = &faults.dead_subscriber {
        plan.push((d.at, Action::Down(d.host)));
        plan.push((d.at + d.len, Action::Revive(d.host)));
    }
    plan.sort_by_key(|(at, _)| *at);
    plan
}

pub(super) fn strike(sim: &mut turmoil::Sim<'_>, action: &Action, d: &Deployment) -> String {
    let ace = d.target;
    match *action {
        Action::Partition(peer, None) => {
            sim.partition(ace, peer);
            format!("partition {ace} | {peer}")
        }
        Action::Repair(peer, None) => {
            sim.repair(ace, peer);
            format!("repair {ace} | {peer}")
        }
        Action::Partition(peer, Some(from_ace)) | Action::Repair(peer, Some(from_ace)) => {
            let (from, to) = if from_ace { (ace, peer) } else { (peer, ace) };
            if matches!(action, Action::Partition(..)) {
                sim.partition_oneway(from, to);
                format!("partition: {from} -> {to} lost")
            } else {
                sim.repair_oneway(from, to);
                format!("repair {from} -> {to}")
            }
        }
        Action::Hold(peer) => {
            sim.hold(ace, peer);
            format!("clog {ace} | {peer}")
        }
        Action::Release(peer) => {
            sim.release(ace, peer);
            format!("release {ace} | {peer}")
        }
        Action::Loss(rate) => {
            sim.set_fail_rate(rate);
            if rate > 0.0 {
                format!("links break at random ({rate} per link-ms)")
            } else {
                "links stop breaking".to_owned()
            }
        }
        Action::Crash => {
            sim.bounce(ace);
            format!("crash and restart {ace} (memory lost)")
        }
        Action::Down(host) => {
            sim.crash(host);
            format!("{host} goes down")
        }
        Action::Revive(host) => {
            sim.bounce(host);
            format!("{host} is up again")
        }
        Action::LeaderCrash => match d.leader() {
            Some(leader) => {
                sim.bounce(leader);
                format!("crash and restart the leading replica {leader} (memory lost)")
            }
            None => "no replica leads: nothing to crash".to_owned(),
        },
        Action::MoveLeader(election) => {
            if let Some(standin) = &d.standin {
                standin.move_leader_under_traffic(election);
            }
            format!(
                "the stream leader moves as the next publish to the log is replicated (election {} ms)",
                election.as_millis()
            )
        }
        Action::Pause(replica, paused) => {
            let host = d.hosts.get(replica).copied().unwrap_or(ace);
            if let Some(standin) = &d.standin {
                standin.pause(host, paused);
            }
            let others = d.hosts.iter().copied().filter(|h| *h != host);
            for peer in others.chain(NOT_ACE) {
                if paused {
                    sim.hold(host, peer);
                } else {
                    sim.release(host, peer);
                }
            }
            if paused {
                format!("{host} pauses: everything it sends or is sent waits")
            } else {
                format!("{host} resumes")
            }
        }
        Action::Cut(replica, cut) => {
            let host = d.hosts.get(replica).copied().unwrap_or(ace);
            if let Some(standin) = &d.standin {
                standin.cut(host, cut);
            }
            if cut {
                format!("{host} is cut off the log")
            } else {
                format!("{host} reaches the log again")
            }
        }
    }
}
