//! The faults of a world, all decided by its seed. Swarm testing: the seed first picks which
//! kinds of fault are on (each with probability one half), then when and how hard each
//! strikes, so that some worlds face one fault alone and others several at once.

use std::fmt;
use std::time::Duration;

/// splitmix64: the seed's decisions, independent of every other generator.
pub fn mix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The hosts a partition or a clog can cut ACE off from.
pub const PEERS: [&str; 6] = [
    "solution-1",
    "solution-2",
    "operator",
    "sub-a",
    "sub-b",
    "api",
];

/// How a subscriber host treats its first requests (the rest it answers 200 at once).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misbehaviour {
    /// Answers every request 200.
    None,
    /// Answers the first N requests 500.
    Fail5xx(usize),
    /// Answers the first N requests 200, but only after the push deadline has passed.
    Late(usize),
    /// Resets the connection of the first N requests without answering.
    Reset(usize),
    /// Never answers the first N requests (the connection stays open).
    Drop(usize),
}

impl Misbehaviour {
    /// How many first requests are treated badly.
    pub fn first(self) -> usize {
        match self {
            Misbehaviour::None => 0,
            Misbehaviour::Fail5xx(n)
            | Misbehaviour::Late(n)
            | Misbehaviour::Reset(n)
            | Misbehaviour::Drop(n) => n,
        }
    }
}

/// A partition between ACE and one peer, both ways or one way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    /// When it strikes (simulated time).
    pub at: Duration,
    /// How long it lasts.
    pub len: Duration,
    /// The host cut off from `ace`.
    pub peer: &'static str,
    /// `None`: both ways; `Some(true)`: only what ACE sends is lost; `Some(false)`: only what
    /// the peer sends.
    pub oneway: Option<bool>,
}

/// Links from ACE that hold every message (nothing lost, nothing delivered) for a while, then
/// release them one link at a time in the listed order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Clog {
    /// When the links are clogged.
    pub at: Duration,
    /// How long until the first release; the others follow 50 ms apart.
    pub len: Duration,
    /// The peers, in release order.
    pub peers: Vec<&'static str>,
}

/// Links that break at random (a broken TCP link drops what is in flight on it) and heal
/// after a few milliseconds, during a window.
#[derive(Clone, Debug, PartialEq)]
pub struct Loss {
    /// When it starts.
    pub at: Duration,
    /// How long it lasts.
    pub len: Duration,
    /// Probability, per link and per millisecond, that a healthy link breaks.
    pub rate: f64,
}

/// A subscriber host that is down (crashed: nothing reaches it) for a long while, during which
/// the second solution publishes a burst of events it is owed: a backlog far beyond the
/// server's window of loaded events, built while the subscription backs off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadSubscriber {
    /// The host.
    pub host: &'static str,
    /// When it goes down.
    pub at: Duration,
    /// How long it stays down.
    pub len: Duration,
    /// Events published while it is down.
    pub burst: usize,
}

/// The faults a seed switched on.
#[derive(Clone, Debug, PartialEq)]
pub struct Faults {
    /// Message latency range, in milliseconds.
    pub latency_ms: (u64, u64),
    /// Random link failures during a window.
    pub loss: Option<Loss>,
    /// A partition between ACE and one peer.
    pub partition: Option<Partition>,
    /// Clogged links from ACE, released in a random order.
    pub clog: Option<Clog>,
    /// ACE crashes and restarts (memory lost, store kept) at these times.
    pub crashes: Vec<Duration>,
    /// At a crash, the writes the disk had not synced yet are lost (otherwise they survive).
    pub lose_unsynced: bool,
    /// How long a sync of the disk takes, in milliseconds (a range).
    pub sync_ms: (u64, u64),
    /// How subscribers `sub-a` and `sub-b` treat their first requests.
    pub subscribers: [Misbehaviour; 2],
    /// The first solution waits past its token's TTL between the info call and its CSR, once.
    pub token_expiry: bool,
    /// A subscriber down for a long while, owed a large backlog.
    pub dead_subscriber: Option<DeadSubscriber>,
}

/// The workload runs from about 0.2 s to 1.5 s of simulated time: faults strike within it.
const WINDOW: (u64, u64) = (200, 1300);

impl Faults {
    /// The faults of `seed`.
    pub fn of(seed: u64) -> Faults {
        let mut s = seed;
        let mut coin = || mix(&mut s).is_multiple_of(2);
        let on: [bool; 9] = std::array::from_fn(|_| coin());
        let [
            slow,
            loss,
            partition,
            clog,
            crash,
            unsynced,
            sub_a,
            sub_b,
            expiry,
        ] = on;
        let mut pick = |lo: u64, hi: u64| lo + mix(&mut s) % (hi - lo + 1);
        let misbehaviour = |on: bool, pick: &mut dyn FnMut(u64, u64) -> u64| {
            if !on {
                return Misbehaviour::None;
            }
            let n = pick(1, 5) as usize;
            match pick(0, 3) {
                0 => Misbehaviour::Fail5xx(n),
                1 => Misbehaviour::Late(n),
                2 => Misbehaviour::Reset(n),
                _ => Misbehaviour::Drop(n),
            }
        };
        let latency_ms = if slow { (1, pick(5, 50)) } else { (1, 2) };
        let loss = loss.then(|| Loss {
            at: Duration::from_millis(pick(WINDOW.0, WINDOW.1)),
            len: Duration::from_millis(pick(100, 1500)),
            rate: [0.001, 0.005, 0.02][pick(0, 2) as usize],
        });
        let partition = partition.then(|| Partition {
            at: Duration::from_millis(pick(WINDOW.0, WINDOW.1)),
            len: Duration::from_millis(pick(200, 2000)),
            peer: PEERS[pick(0, PEERS.len() as u64 - 1) as usize],
            oneway: match pick(0, 2) {
                0 => None,
                1 => Some(true),
                _ => Some(false),
            },
        });
        let clog = clog.then(|| {
            let mut peers = PEERS.to_vec();
            // Fisher-Yates, then keep a few.
            for i in (1..peers.len()).rev() {
                peers.swap(i, pick(0, i as u64) as usize);
            }
            peers.truncate(pick(1, 3) as usize);
            Clog {
                at: Duration::from_millis(pick(WINDOW.0, WINDOW.1)),
                len: Duration::from_millis(pick(100, 1000)),
                peers,
            }
        });
        let crashes = if crash {
            let mut at: Vec<Duration> = (0..pick(1, 2))
                .map(|_| Duration::from_millis(pick(250, 1400)))
                .collect();
            at.sort();
            at
        } else {
            Vec::new()
        };
        let sync_ms = (pick(0, 1), pick(2, 15));
        let subscribers = [
            misbehaviour(sub_a, &mut pick),
            misbehaviour(sub_b, &mut pick),
        ];
        // Drawn last, so that the faults above stay what they were for every seed; on in a
        // quarter of the worlds, which it makes several times longer.
        let dead_subscriber = (pick(0, 3) == 0).then(|| DeadSubscriber {
            host: "sub-b",
            at: Duration::from_millis(pick(1500, 2500)),
            len: Duration::from_secs(pick(10, 40)),
            burst: pick(16, 40) as usize * 4,
        });
        Faults {
            latency_ms,
            loss,
            partition,
            clog,
            crashes,
            lose_unsynced: unsynced,
            sync_ms,
            subscribers,
            token_expiry: expiry,
            dead_subscriber,
        }
    }

    /// When the last fault has struck and healed (simulated time); a restarted server may
    /// still be starting.
    pub fn healed_by(&self) -> Duration {
        let loss = self.loss.as_ref().map(|l| l.at + l.len);
        let partition = self.partition.as_ref().map(|p| p.at + p.len);
        let clog = self
            .clog
            .as_ref()
            .map(|c| c.at + c.len + Duration::from_millis(50 * c.peers.len() as u64));
        let dead = self.dead_subscriber.as_ref().map(|d| d.at + d.len);
        loss.into_iter()
            .chain(partition)
            .chain(clog)
            .chain(dead)
            .chain(self.crashes.iter().copied())
            .max()
            .unwrap_or_default()
    }

    /// The kinds of fault that are on, by name (for the sweep's summary).
    pub fn kinds(&self) -> Vec<&'static str> {
        let mut kinds = Vec::new();
        if self.latency_ms.1 > 2 {
            kinds.push("latency");
        }
        if self.loss.is_some() {
            kinds.push("message loss");
        }
        match &self.partition {
            Some(p) if p.oneway.is_some() => kinds.push("one-way partition"),
            Some(_) => kinds.push("partition"),
            None => {}
        }
        if self.clog.is_some() {
            kinds.push("clog");
        }
        if !self.crashes.is_empty() {
            kinds.push("crash");
        }
        if self.crashes.len() > 1 {
            kinds.push("two crashes");
        }
        if !self.crashes.is_empty() && self.lose_unsynced {
            kinds.push("unsynced writes lost");
        }
        for m in self.subscribers {
            kinds.push(match m {
                Misbehaviour::None => continue,
                Misbehaviour::Fail5xx(_) => "subscriber 5xx",
                Misbehaviour::Late(_) => "subscriber late",
                Misbehaviour::Reset(_) => "subscriber reset",
                Misbehaviour::Drop(_) => "subscriber drop",
            });
        }
        if self.token_expiry {
            kinds.push("token expiry");
        }
        if self.dead_subscriber.is_some() {
            kinds.push("dead subscriber");
        }
        kinds
    }
}

impl fmt::Display for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| d.as_millis();
        write!(f, "latency {}-{}ms", self.latency_ms.0, self.latency_ms.1)?;
        if let Some(l) = &self.loss {
            write!(
                f,
                "; message loss {} per link-ms from {}ms for {}ms",
                l.rate,
                ms(l.at),
                ms(l.len)
            )?;
        }
        if let Some(p) = &self.partition {
            let how = match p.oneway {
                None => format!("ace | {}", p.peer),
                Some(true) => format!("ace -> {} lost", p.peer),
                Some(false) => format!("{} -> ace lost", p.peer),
            };
            write!(
                f,
                "; partition {how} from {}ms for {}ms",
                ms(p.at),
                ms(p.len)
            )?;
        }
        if let Some(c) = &self.clog {
            write!(
                f,
                "; clog ace with {} from {}ms for {}ms",
                c.peers.join(", "),
                ms(c.at),
                ms(c.len)
            )?;
        }
        for at in &self.crashes {
            write!(f, "; crash at {}ms", ms(*at))?;
        }
        if !self.crashes.is_empty() {
            let fate = if self.lose_unsynced { "lost" } else { "kept" };
            write!(f, " (unsynced writes {fate})")?;
        }
        write!(f, "; disk sync {}-{}ms", self.sync_ms.0, self.sync_ms.1)?;
        for (host, m) in ["sub-a", "sub-b"].iter().zip(self.subscribers) {
            if m != Misbehaviour::None {
                write!(f, "; {host} {m:?}")?;
            }
        }
        if self.token_expiry {
            write!(f, "; token expires mid-onboarding")?;
        }
        if let Some(d) = &self.dead_subscriber {
            write!(
                f,
                "; {} down from {}ms for {}s, owed a burst of {}",
                d.host,
                ms(d.at),
                d.len.as_secs(),
                d.burst
            )?;
        }
        Ok(())
    }
}

/// What a replicated world adds to [`Faults`], drawn from the seed apart so that a seed's
/// other faults stay what they are in the single-node world.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaFaults {
    /// The replica that the partition, the clog and the crashes of [`Faults`] strike.
    pub target: usize,
    /// The replica holding the lease then crashes and restarts (pushes in flight).
    pub leader_crash: Option<Duration>,
    /// The stream's leader moves at these times; each election takes the second value.
    pub leader_moves: Vec<(Duration, Duration)>,
    /// A replica cut off the log (and the lease) for a while: (replica, from, for).
    pub cut: Option<(usize, Duration, Duration)>,
    /// A replica paused for longer than the lease: (replica, from, for). Everything it sends
    /// or is sent waits (its links held, its log requests unanswered), as for a stopped
    /// process, until it resumes; then it all arrives at once.
    pub pause: Option<(usize, Duration, Duration)>,
}

impl ReplicaFaults {
    /// When these faults have healed: a crashed leader's lease has passed to another (the
    /// world's lease is 2 s) with a second to spare, a leader move's election is over (it
    /// strikes at the first publish after its time, under traffic at once) with a second to
    /// spare, a cut or paused replica is back.
    pub fn healed_by(&self) -> Duration {
        let second = Duration::from_secs(1);
        let crash = self
            .leader_crash
            .map(|at| at + Duration::from_secs(2) + second);
        let moves = self
            .leader_moves
            .iter()
            .map(|(at, len)| *at + *len + second);
        let cut = self.cut.map(|(_, at, len)| at + len);
        let pause = self.pause.map(|(_, at, len)| at + len);
        crash
            .into_iter()
            .chain(moves)
            .chain(cut)
            .chain(pause)
            .max()
            .unwrap_or_default()
    }

    /// The replicated faults of `seed` for `replicas` replicas.
    pub fn of(seed: u64, replicas: usize) -> ReplicaFaults {
        let mut s = seed ^ 0x7265_706c_6963_6173;
        let mut pick = |lo: u64, hi: u64| lo + mix(&mut s) % (hi - lo + 1);
        let n = replicas.max(1) as u64;
        let target = pick(0, n - 1) as usize;
        // Once a replica leads and traffic flows (the lease is taken at about 0.5 s).
        let leader_crash = (pick(0, 2) > 0).then(|| Duration::from_millis(pick(700, 1800)));
        let leader_moves = (0..pick(0, 2))
            .map(|_| {
                (
                    Duration::from_millis(pick(WINDOW.0, WINDOW.1)),
                    Duration::from_millis(pick(200, 3000)),
                )
            })
            .collect();
        let cut = (pick(0, 2) == 0).then(|| {
            (
                pick(0, n - 1) as usize,
                Duration::from_millis(pick(WINDOW.0, WINDOW.1)),
                Duration::from_millis(pick(500, 4000)),
            )
        });
        // Drawn last, so that the faults above stay what they were before pauses.
        let pause = (pick(0, 3) == 0).then(|| {
            (
                pick(0, n - 1) as usize,
                Duration::from_millis(pick(WINDOW.0, WINDOW.1)),
                Duration::from_millis(pick(2500, 5000)),
            )
        });
        ReplicaFaults {
            target,
            leader_crash,
            leader_moves,
            cut,
            pause,
        }
    }
}
