//! The fault schedule: when each fault the seed picked strikes, and how.

use std::time::Duration;

pub use crate::faults::Faults;

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
}

/// The timed actions of `faults`, in order.
pub(super) fn schedule(faults: &Faults) -> Vec<(Duration, Action)> {
    let mut plan = Vec::new();
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

pub(super) fn strike(sim: &mut turmoil::Sim<'_>, action: &Action) -> String {
    match *action {
        Action::Partition(peer, None) => {
            sim.partition("ace", peer);
            format!("partition ace | {peer}")
        }
        Action::Repair(peer, None) => {
            sim.repair("ace", peer);
            format!("repair ace | {peer}")
        }
        Action::Partition(peer, Some(from_ace)) | Action::Repair(peer, Some(from_ace)) => {
            let (from, to) = if from_ace {
                ("ace", peer)
            } else {
                (peer, "ace")
            };
            if matches!(action, Action::Partition(..)) {
                sim.partition_oneway(from, to);
                format!("partition: {from} -> {to} lost")
            } else {
                sim.repair_oneway(from, to);
                format!("repair {from} -> {to}")
            }
        }
        Action::Hold(peer) => {
            sim.hold("ace", peer);
            format!("clog ace | {peer}")
        }
        Action::Release(peer) => {
            sim.release("ace", peer);
            format!("release ace | {peer}")
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
            sim.bounce("ace");
            "crash and restart ace (memory lost)".to_owned()
        }
        Action::Down(host) => {
            sim.crash(host);
            format!("{host} goes down")
        }
        Action::Revive(host) => {
            sim.bounce(host);
            format!("{host} is up again")
        }
    }
}
