//! Sweep summaries: what a sweep, or one shard of it, found, as JSON that any batch system
//! (a CI matrix, Kubernetes Jobs) can collect; and the merge of a sweep's shards into the
//! summary of the whole sweep.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The summary format written by this version.
pub const FORMAT: u32 = 1;

/// Shard `index` of `count` (1-based): it runs the seeds `from + k` with `k % count ==
/// index - 1`, so shards of one sweep share its seeds out evenly and never overlap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Shard {
    /// Which shard, from 1.
    pub index: u64,
    /// How many shards the sweep has.
    pub count: u64,
}

impl Shard {
    /// The whole sweep as one shard.
    pub const WHOLE: Shard = Shard { index: 1, count: 1 };

    /// `I/N`, with `1 <= I <= N`.
    pub fn parse(text: &str) -> Result<Shard, String> {
        let (i, n) = text
            .split_once('/')
            .ok_or_else(|| format!("shard {text:?}: expected I/N, such as 3/8"))?;
        let number = |s: &str| {
            s.trim()
                .parse::<u64>()
                .map_err(|_| format!("shard {text:?}: {s:?} is not a number"))
        };
        let (index, count) = (number(i)?, number(n)?);
        if count == 0 || index == 0 || index > count {
            return Err(format!(
                "shard {text:?}: the index must be between 1 and the count"
            ));
        }
        Ok(Shard { index, count })
    }

    /// Whether this shard runs `seed` of a sweep starting at `from`.
    pub fn takes(&self, from: u64, seed: u64) -> bool {
        seed >= from && (seed - from) % self.count == self.index - 1
    }
}

/// A world that failed a check, or could not be run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// Its seed.
    pub seed: u64,
    /// The world could not be run at all (not a broken guarantee).
    pub broke: bool,
    /// The broken guarantees, or why it could not run.
    pub what: String,
    /// The command that replays it.
    pub replay: String,
}

/// What a sweep (or some of its shards) found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// [`FORMAT`].
    pub format: u32,
    /// The sweep's first seed.
    pub from: u64,
    /// How many seeds the whole sweep has.
    pub seeds: u64,
    /// How many shards the sweep is cut into.
    pub shard_count: u64,
    /// The shards this summary covers (one for a shard; all once merged).
    pub shards: Vec<u64>,
    /// The bugs switched on, by name.
    pub bugs: Vec<String>,
    /// ACE's replicas in each world (1: the single node).
    #[serde(default = "one")]
    pub replicas: u64,
    /// Worlds run.
    pub worlds: u64,
    /// The worlds that failed, by seed.
    pub failures: Vec<Failure>,
    /// Worlds with each kind of fault on.
    pub faults: BTreeMap<String, u64>,
    /// Worlds that took each rare path.
    pub rare: BTreeMap<String, u64>,
}

fn one() -> u64 {
    1
}

impl Summary {
    /// An empty summary of shard `shard` of the sweep `from..from + seeds` with `bugs`, on
    /// `replicas` replicas.
    pub fn new(from: u64, seeds: u64, shard: Shard, bugs: Vec<String>, replicas: u64) -> Summary {
        Summary {
            format: FORMAT,
            from,
            seeds,
            shard_count: shard.count,
            shards: vec![shard.index],
            bugs,
            replicas,
            worlds: 0,
            failures: Vec::new(),
            faults: BTreeMap::new(),
            rare: crate::world::rare_paths(replicas as usize)
                .iter()
                .map(|(path, _)| ((*path).to_owned(), 0))
                .collect(),
        }
    }

    /// The summary of the shards in `parts`, which must be of one sweep (same seeds, shard
    /// count, bugs and format) and cover each shard at most once.
    pub fn merge(parts: Vec<Summary>) -> Result<Summary, String> {
        let mut parts = parts.into_iter();
        let mut all = parts.next().ok_or("no summaries to merge")?;
        for part in parts {
            if part.format != all.format {
                return Err(format!(
                    "summary format {} and {} cannot be merged",
                    all.format, part.format
                ));
            }
            if (
                part.from,
                part.seeds,
                part.shard_count,
                &part.bugs,
                part.replicas,
            ) != (
                all.from,
                all.seeds,
                all.shard_count,
                &all.bugs,
                all.replicas,
            ) {
                return Err(format!(
                    "these summaries are of different sweeps: seeds {}..+{} in {} shards with bugs {:?} on {} replicas, and seeds {}..+{} in {} shards with bugs {:?} on {} replicas",
                    all.from,
                    all.seeds,
                    all.shard_count,
                    all.bugs,
                    all.replicas,
                    part.from,
                    part.seeds,
                    part.shard_count,
                    part.bugs,
                    part.replicas
                ));
            }
            if let Some(twice) = part.shards.iter().find(|s| all.shards.contains(s)) {
                return Err(format!("shard {twice}/{} is given twice", all.shard_count));
            }
            all.shards.extend(&part.shards);
            all.worlds += part.worlds;
            all.failures.extend(part.failures);
            for (kind, n) in part.faults {
                *all.faults.entry(kind).or_default() += n;
            }
            for (path, n) in part.rare {
                *all.rare.entry(path).or_default() += n;
            }
        }
        all.shards.sort_unstable();
        all.failures.sort_by_key(|f| f.seed);
        Ok(all)
    }

    /// The shards of the sweep this summary does not cover.
    pub fn missing_shards(&self) -> Vec<u64> {
        (1..=self.shard_count)
            .filter(|s| !self.shards.contains(s))
            .collect()
    }

    /// The rare paths `--require-rare` asks for that no world of the summary took.
    pub fn never_taken(&self) -> Vec<&str> {
        let required = crate::world::required_paths(self.replicas as usize);
        self.rare
            .iter()
            .filter(|(path, n)| **n == 0 && required.iter().any(|(p, _)| p == path))
            .map(|(path, _)| path.as_str())
            .collect()
    }

    /// The summary as text, as `ace-sim sweep` prints it.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for f in &self.failures {
            let verb = if f.broke { "BROKE" } else { "FAILED" };
            out += &format!(
                "seed={} {verb}: {}\n  replay with: {}\n",
                f.seed, f.what, f.replay
            );
        }
        let shards = if self.shard_count == 1 {
            String::new()
        } else {
            format!("; shards {:?} of {}", self.shards, self.shard_count)
        };
        let bugs = if self.bugs.is_empty() {
            "none".to_owned()
        } else {
            self.bugs.join(", ")
        };
        let replicas = if self.replicas > 1 {
            format!("; {} replicas", self.replicas)
        } else {
            String::new()
        };
        out += &format!(
            "seeds run: {} (of {}..{}){shards}; bugs: {bugs}{replicas}\n",
            self.worlds,
            self.from,
            self.from + self.seeds.saturating_sub(1)
        );
        out += "faults (worlds with each on):\n";
        for (kind, n) in &self.faults {
            out += &format!("  {kind:<28} {n}\n");
        }
        out += "rare paths (worlds that took each):\n";
        for (path, description) in crate::world::rare_paths(self.replicas as usize) {
            let n = self.rare.get(path).copied().unwrap_or(0);
            let mark = if n == 0 { "  NEVER TAKEN" } else { "" };
            out += &format!("  {path:<28} {n:>5}  {description}{mark}\n");
        }
        let seeds: Vec<u64> = self.failures.iter().map(|f| f.seed).collect();
        out += &format!("failures: {} {seeds:?}\n", seeds.len());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_share_the_seeds_out_without_overlap() {
        assert_eq!(Shard::parse("3/8"), Ok(Shard { index: 3, count: 8 }));
        for bad in ["0/4", "5/4", "1/0", "x/2", "3"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        let shards: Vec<Shard> = (1..=3).map(|i| Shard { index: i, count: 3 }).collect();
        for seed in 10..40 {
            let owners = shards.iter().filter(|s| s.takes(10, seed)).count();
            assert_eq!(owners, 1, "seed {seed}");
        }
        assert!(!Shard::WHOLE.takes(10, 9));
        assert!(Shard::WHOLE.takes(10, 10));
    }

    fn part(index: u64, worlds: u64, failed: Option<u64>) -> Summary {
        let mut s = Summary::new(1, 10, Shard { index, count: 2 }, vec![], 1);
        s.worlds = worlds;
        s.faults.insert("partition".into(), worlds);
        if let Some(path) = crate::world::RARE.first() {
            s.rare.insert(path.0.to_owned(), index - 1);
        }
        s.failures.extend(failed.map(|seed| Failure {
            seed,
            broke: false,
            what: "x".into(),
            replay: "r".into(),
        }));
        s
    }

    #[test]
    fn merged_shards_add_up_and_bad_sets_are_refused() {
        let merged = Summary::merge(vec![part(2, 5, Some(4)), part(1, 5, Some(3))])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(merged.worlds, 10);
        assert_eq!(merged.shards, [1, 2]);
        assert!(merged.missing_shards().is_empty());
        assert_eq!(merged.faults["partition"], 10);
        assert_eq!(
            merged.failures.iter().map(|f| f.seed).collect::<Vec<_>>(),
            [3, 4]
        );
        let first = crate::world::RARE[0].0;
        assert_eq!(merged.rare[first], 1);
        assert!(!merged.never_taken().contains(&first));
        assert_eq!(part(1, 5, None).missing_shards(), [2]);
        let twice = Summary::merge(vec![part(1, 5, None), part(1, 5, None)]);
        assert!(twice.is_err_and(|e| e.contains("twice")));
        let mut other = part(2, 5, None);
        other.seeds = 20;
        let mixed = Summary::merge(vec![part(1, 5, None), other]);
        assert!(mixed.is_err_and(|e| e.contains("different sweeps")));
        let mut replicated = part(2, 5, None);
        replicated.replicas = 2;
        let mixed = Summary::merge(vec![part(1, 5, None), replicated]);
        assert!(mixed.is_err_and(|e| e.contains("on 2 replicas")));
        let text = merged.render();
        assert!(
            text.contains("seeds run: 10 (of 1..10); shards [1, 2] of 2; bugs: none"),
            "{text}"
        );
        assert!(text.contains("failures: 2 [3, 4]"), "{text}");
        let json = serde_json::to_string(&merged).unwrap_or_default();
        let back: Summary = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, merged);
    }
}
