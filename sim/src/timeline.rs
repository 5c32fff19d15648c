//! The trace of a world and its readable timelines: one entry per observed step (a request
//! and its outcome, a push at a subscriber, a fault, a checker's verdict), in simulated order.
//! The same seed gives the same entries, so their hash identifies a run; a failed run is
//! written out as text and as an HTML page with a sequence diagram, one lifeline per host.

use std::fmt::{self, Write as _};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// What an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A request from `host` to `peer`, with its outcome.
    Request,
    /// Something a host saw or did by itself.
    Note,
    /// A fault striking or healing.
    Fault,
    /// A broken guarantee.
    Violation,
}

/// One observed step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Simulated time.
    pub at: Duration,
    /// The host that saw it (for a request: the sender).
    pub host: String,
    /// For a request: the host it went to.
    pub peer: Option<String>,
    /// What happened.
    pub what: String,
    /// Its kind.
    pub kind: Kind,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>7}ms {:<10} ", self.at.as_millis(), self.host)?;
        match (&self.peer, self.kind) {
            (Some(peer), _) => write!(f, "-> {peer:<10} {}", self.what),
            (None, Kind::Violation) => write!(f, "VIOLATION {}", self.what),
            (None, _) => f.write_str(&self.what),
        }
    }
}

/// The first 16 hex digits of the SHA-256 of the entries' lines.
pub fn hash(entries: &[Entry]) -> String {
    let mut hasher = Sha256::new();
    for e in entries {
        hasher.update(e.to_string().as_bytes());
        hasher.update(b"\n");
    }
    ace_model::hex::lower(&hasher.finalize()[..8])
}

/// What a timeline shows above the entries.
#[derive(Clone, Debug)]
pub struct Header<'a> {
    /// The run's seed.
    pub seed: u64,
    /// Its faults, in words.
    pub faults: String,
    /// The command that replays the run.
    pub replay: &'a str,
    /// The broken guarantees (empty if none).
    pub violations: &'a [String],
}

/// The timeline as text.
pub fn text(header: &Header<'_>, entries: &[Entry]) -> String {
    let mut out = format!(
        "seed={}\nfaults: {}\nreplay: {}\n",
        header.seed, header.faults, header.replay
    );
    for v in header.violations {
        let _ = writeln!(out, "VIOLATION {v}");
    }
    out.push('\n');
    for e in entries {
        let _ = writeln!(out, "{e}");
    }
    out
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The hosts in the order of their lifelines: the ones that start requests to ACE on its
/// left, ACE, then the ones it calls, then the rest in order of appearance.
fn lifelines(entries: &[Entry]) -> Vec<String> {
    const ORDER: [&str; 8] = [
        "operator",
        "solution-1",
        "solution-2",
        "ace",
        "sub-a",
        "sub-b",
        "api",
        "checker",
    ];
    let mut hosts: Vec<String> = Vec::new();
    for e in entries {
        for h in std::iter::once(&e.host).chain(e.peer.as_ref()) {
            if e.kind != Kind::Fault && !hosts.contains(h) {
                hosts.push(h.clone());
            }
        }
    }
    hosts.sort_by_key(|h| ORDER.iter().position(|o| o == h).unwrap_or(ORDER.len()));
    hosts
}

/// The timeline as a self-contained HTML page: a sequence diagram (a lifeline per host, an
/// arrow per request with its outcome, notes beside their host, faults and violations across
/// the page), then the same entries as text.
pub fn html(header: &Header<'_>, entries: &[Entry]) -> String {
    const COL: usize = 190;
    const ROW: usize = 18;
    const LEFT: usize = 80;
    const TOP: usize = 40;
    let hosts = lifelines(entries);
    let x = |h: &str| LEFT + COL / 2 + COL * hosts.iter().position(|o| o == h).unwrap_or(0);
    let width = LEFT + COL * hosts.len().max(1) + 20;
    let height = TOP + ROW * (entries.len() + 1);
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="monospace" font-size="11">
<defs><marker id="arrow" markerWidth="8" markerHeight="8" refX="7" refY="4" orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#444"/></marker></defs>
"##
    );
    for h in &hosts {
        let hx = x(h);
        let _ = writeln!(
            svg,
            r##"<text x="{hx}" y="20" text-anchor="middle" font-weight="bold">{}</text><line x1="{hx}" y1="28" x2="{hx}" y2="{height}" stroke="#bbb"/>"##,
            escape(h)
        );
    }
    for (i, e) in entries.iter().enumerate() {
        let y = TOP + ROW * i + ROW / 2;
        let _ = write!(
            svg,
            r##"<text x="4" y="{}" fill="#888">{}ms</text>"##,
            y + 4,
            e.at.as_millis()
        );
        let what = escape(&e.what);
        match (e.kind, &e.peer) {
            (Kind::Request, Some(peer)) => {
                let (x1, x2) = (x(&e.host), x(peer));
                let failed = !(e.what.contains("-> 2") || e.what.contains("-> 3"));
                let colour = if failed { "#c60" } else { "#444" };
                let _ = write!(
                    svg,
                    r#"<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" stroke="{colour}" marker-end="url(#arrow)"/><text x="{}" y="{}" text-anchor="middle" fill="{colour}">{what}</text>"#,
                    x1.midpoint(x2),
                    y - 3
                );
            }
            (Kind::Fault, _) => {
                let _ = write!(
                    svg,
                    r##"<rect x="{LEFT}" y="{}" width="{}" height="{ROW}" fill="#fde"/><text x="{}" y="{}" fill="#a00">⚡ {what}</text>"##,
                    y - ROW / 2,
                    width - LEFT,
                    LEFT + 6,
                    y + 4
                );
            }
            (Kind::Violation, _) => {
                let _ = write!(
                    svg,
                    r##"<rect x="{LEFT}" y="{}" width="{}" height="{ROW}" fill="#f88"/><text x="{}" y="{}" font-weight="bold">VIOLATION {what}</text>"##,
                    y - ROW / 2,
                    width - LEFT,
                    LEFT + 6,
                    y + 4
                );
            }
            _ => {
                let hx = x(&e.host);
                let _ = write!(
                    svg,
                    r##"<circle cx="{hx}" cy="{y}" r="3" fill="#36c"/><text x="{}" y="{}" fill="#36c">{what}</text>"##,
                    hx + 6,
                    y + 4
                );
            }
        }
        svg.push('\n');
    }
    svg.push_str("</svg>");
    let violations: String = header
        .violations
        .iter()
        .map(|v| format!("<li>{}</li>", escape(v)))
        .collect();
    let verdict = if header.violations.is_empty() {
        "<p class=ok>Every checked guarantee held.</p>".to_owned()
    } else {
        format!("<ul class=bad>{violations}</ul>")
    };
    let lines: String = entries
        .iter()
        .map(|e| escape(&e.to_string()) + "\n")
        .collect();
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>ace-sim seed {seed}</title>
<style>body{{font-family:sans-serif;margin:1em}} code,pre{{font-family:monospace}} .bad{{color:#a00;font-weight:bold}} .ok{{color:#080}} .diagram{{overflow:auto;border:1px solid #ddd}}</style>
</head><body>
<h1>ace-sim: seed {seed}</h1>
<p>Faults: {faults}</p>
<p>Replay: <code>{replay}</code></p>
{verdict}
<div class=diagram>{svg}</div>
<h2>Entries</h2>
<pre>{lines}</pre>
</body></html>
"#,
        seed = header.seed,
        faults = escape(&header.faults),
        replay = escape(header.replay),
    )
}

/// Writes the timeline of a run to `dir` as `seed-N.txt` and `seed-N.html`; returns both paths.
pub fn write(dir: &Path, header: &Header<'_>, entries: &[Entry]) -> io::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let txt = dir.join(format!("seed-{}.txt", header.seed));
    let page = dir.join(format!("seed-{}.html", header.seed));
    std::fs::write(&txt, text(header, entries))?;
    std::fs::write(&page, html(header, entries))?;
    Ok((txt, page))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ms: u64, host: &str, peer: Option<&str>, what: &str, kind: Kind) -> Entry {
        Entry {
            at: Duration::from_millis(ms),
            host: host.into(),
            peer: peer.map(Into::into),
            what: what.into(),
            kind,
        }
    }

    fn sample() -> Vec<Entry> {
        vec![
            entry(
                1,
                "solution-1",
                Some("ace"),
                "POST /ec/v1/events -> 200",
                Kind::Request,
            ),
            entry(2, "faults", None, "partition ace | sub-a", Kind::Fault),
            entry(3, "sub-a", None, "push <e1> for orders -> 500", Kind::Note),
            entry(
                4,
                "checker",
                None,
                "at-least-once: e1 & e2",
                Kind::Violation,
            ),
        ]
    }

    #[test]
    fn lines_name_host_peer_and_outcome_and_the_hash_follows_them() {
        let entries = sample();
        assert_eq!(
            entries[0].to_string(),
            "      1ms solution-1 -> ace        POST /ec/v1/events -> 200"
        );
        assert_eq!(
            entries[3].to_string(),
            "      4ms checker    VIOLATION at-least-once: e1 & e2"
        );
        let mut other = entries.clone();
        other[2].what = "push <e1> for orders -> 200".into();
        assert_ne!(hash(&entries), hash(&other));
        assert_eq!(hash(&entries), hash(&sample()));
        assert_eq!(hash(&entries).len(), 16);
    }

    #[test]
    fn the_html_page_draws_a_lifeline_per_host_and_escapes_text() {
        let entries = sample();
        let violations = vec!["at-least-once: <e1>".to_owned()];
        let header = Header {
            seed: 7,
            faults: "partition".into(),
            replay: "cargo run -p ace-sim --release -- run --seed 7",
            violations: &violations,
        };
        let page = html(&header, &entries);
        // Lifelines: solution-1, ace, sub-a, checker (faults get a band, not a lifeline).
        assert_eq!(page.matches(r##"stroke="#bbb""##).count(), 4, "{page}");
        assert!(!page.contains(">faults</text>"));
        assert!(page.contains("marker-end"), "a request is an arrow");
        assert!(page.contains("push &lt;e1&gt; for orders"));
        assert!(page.contains("at-least-once: &lt;e1&gt;"));
        assert!(!page.contains("<e1>"));
        assert!(page.contains("--seed 7"));
        let text = text(&header, &entries);
        assert!(text.starts_with("seed=7\nfaults: partition\nreplay: cargo run"));
        assert!(text.contains("VIOLATION at-least-once: <e1>\n"));
    }

    #[test]
    fn timelines_are_written_as_text_and_html() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let header = Header {
            seed: 9,
            faults: String::new(),
            replay: "r",
            violations: &[],
        };
        let (txt, page) = write(dir.path(), &header, &sample()).expect("written");
        assert!(
            std::fs::read_to_string(txt)
                .expect("text")
                .contains("partition ace | sub-a")
        );
        assert!(
            std::fs::read_to_string(page)
                .expect("html")
                .starts_with("<!doctype html>")
        );
    }
}
