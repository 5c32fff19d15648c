//! The write-ahead journal in front of the redb store.
//!
//! A redb commit that returns after fsync rewrites a handful of B-tree pages scattered over its
//! file; flushing them took about 2.3 times as long as one sequential append and `fdatasync`
//! on the same disk (BENCHMARKS.md, "Event Bus end to end"). So each group commit is made
//! durable by appending the batch to this journal, one checksummed frame per batch, with one
//! `fdatasync`; redb gets the batches later and together, in a commit that is not synced
//! (`Durability::None`; see [`crate::store`]). Once the journal is full, the next batch is
//! committed to redb durably instead (a checkpoint: every earlier batch becomes durable in
//! redb too) and the journal starts again from its beginning.
//!
//! The file is written with zeros up to its capacity when created, so appends overwrite
//! allocated blocks and the sync has no file size to record. Each frame carries the journal's
//! *generation*, which redb stores with every checkpoint, and the key of its first record:
//! after a crash, frames are replayed from the start while they are whole (length and CRC-32
//! check), of the current generation and contiguous, so neither a torn last frame nor the
//! frames of an earlier generation further on in the file are taken for new ones.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Marks the start of a frame.
const MAGIC: u32 = u32::from_le_bytes(*b"ACEJ");
/// Magic, payload length, CRC-32 of everything after it, record count, generation, first key.
const HEADER: usize = 4 + 4 + 4 + 4 + 8 + 8;

/// How many bytes of frames the journal holds before a checkpoint.
pub const DEFAULT_CAPACITY: u64 = 8 << 20;

/// One batch read back from the journal.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    /// The store key of the batch's first record.
    pub first_key: u64,
    /// How many records the batch holds.
    pub count: u64,
    /// The batch as appended.
    pub payload: Vec<u8>,
}

/// An open journal.
#[derive(Debug)]
pub struct Journal {
    file: File,
    generation: u64,
    offset: u64,
    capacity: u64,
}

impl Journal {
    /// Opens the journal at `path` (creating it, written with zeros up to `capacity`) and
    /// returns it with the frames of `generation` it holds that reach `next_key` or beyond, in
    /// order. The first may begin before `next_key` (the store already has those of its
    /// records: redb keeps commits it did not sync when it is closed cleanly). Appends go
    /// after the last frame until [`Journal::restart`]. A journal whose first frame begins
    /// after `next_key` is an error: records between them are missing.
    pub fn open(
        path: &Path,
        generation: u64,
        next_key: u64,
        capacity: u64,
    ) -> io::Result<(Journal, Vec<Frame>)> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let len = file.metadata()?.len();
        if len < capacity {
            preallocate(&file, len, capacity)?;
            if let Some(dir) = path.parent() {
                File::open(dir)?.sync_all()?;
            }
        }
        let mut journal = Journal {
            file,
            generation,
            offset: 0,
            capacity,
        };
        let file_len = journal.file.metadata()?.len();
        let mut frames = Vec::new();
        let mut expected = None;
        while let Some((frame, end)) = journal.read_frame(journal.offset, file_len)? {
            match expected {
                None if frame.first_key > next_key => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "{}: the journal starts at record {} but the store ends before record {next_key}: records are missing",
                            path.display(),
                            frame.first_key
                        ),
                    ));
                }
                Some(key) if frame.first_key != key => break,
                _ => {}
            }
            let end_key = frame.first_key + frame.count;
            expected = Some(end_key);
            journal.offset = end;
            if end_key > next_key {
                frames.push(frame);
            }
        }
        Ok((journal, frames))
    }

    /// The frame at `at` and where it ends, if a whole frame of the current generation is there.
    /// A length reaching past `file_len` (a damaged header) is no frame, and is not allocated.
    fn read_frame(&self, at: u64, file_len: u64) -> io::Result<Option<(Frame, u64)>> {
        let mut header = [0u8; HEADER];
        if !self.read_whole(&mut header, at)? {
            return Ok(None);
        }
        let word =
            |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
        let long = |i: usize| u64::from(word(i)) | (u64::from(word(i + 4)) << 32);
        let (magic, len, crc, count) = (word(0), word(4), word(8), word(12));
        let (generation, first_key) = (long(16), long(24));
        let end = at + (HEADER as u64) + u64::from(len);
        if magic != MAGIC || generation != self.generation || end > file_len {
            return Ok(None);
        }
        let mut payload = vec![0u8; len as usize];
        if !self.read_whole(&mut payload, at + HEADER as u64)? {
            return Ok(None);
        }
        if checksum(&header[12..], &payload) != crc {
            return Ok(None);
        }
        let count = u64::from(count);
        Ok(Some((
            Frame {
                first_key,
                count,
                payload,
            },
            end,
        )))
    }

    /// Fills `buf` from `at`; `false` if the file ends first.
    fn read_whole(&self, buf: &mut [u8], at: u64) -> io::Result<bool> {
        match self.file.read_exact_at(buf, at) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether a frame with a payload of `len` bytes fits before the journal is full. (A frame
    /// longer than the whole journal fits into an empty one, which then grows.)
    pub fn fits(&self, len: usize) -> bool {
        self.offset == 0 || self.offset + (HEADER + len) as u64 <= self.capacity
    }

    /// Appends one frame, the batch of `count` records starting at key `first_key`, and
    /// returns once it is durable (`fdatasync`).
    pub fn append(&mut self, first_key: u64, count: u64, payload: &[u8]) -> io::Result<()> {
        let too_big = || io::Error::new(io::ErrorKind::InvalidInput, "batch over 4 GiB");
        let len = u32::try_from(payload.len()).map_err(|_| too_big())?;
        let count = u32::try_from(count).map_err(|_| too_big())?;
        let mut frame = Vec::with_capacity(HEADER + payload.len());
        let mut tail = [0u8; 20];
        tail[..4].copy_from_slice(&count.to_le_bytes());
        tail[4..12].copy_from_slice(&self.generation.to_le_bytes());
        tail[12..].copy_from_slice(&first_key.to_le_bytes());
        frame.extend_from_slice(&MAGIC.to_le_bytes());
        frame.extend_from_slice(&len.to_le_bytes());
        frame.extend_from_slice(&checksum(&tail, payload).to_le_bytes());
        frame.extend_from_slice(&tail);
        frame.extend_from_slice(payload);
        self.file.write_all_at(&frame, self.offset)?;
        self.file.sync_data()?;
        self.offset += frame.len() as u64;
        Ok(())
    }

    /// Starts generation `generation` at the beginning of the file (after redb has recorded
    /// it durably: every frame so far is then in redb).
    pub fn restart(&mut self, generation: u64) {
        self.generation = generation;
        self.offset = 0;
    }

    /// The current generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

fn checksum(tail: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(tail);
    hasher.update(payload);
    hasher.finalize()
}

fn preallocate(file: &File, from: u64, to: u64) -> io::Result<()> {
    const CHUNK: usize = 1 << 20;
    let zeros = vec![0u8; CHUNK];
    let mut at = from;
    while at < to {
        let n = usize::try_from(to - at).map_or(CHUNK, |left| left.min(CHUNK));
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(n: usize) -> Vec<u8> {
        serde_json::to_vec(&vec![n; n]).unwrap_or_default()
    }

    /// Appends a frame of `n` records from `key`, with [`payload`]`(n)`.
    fn put(j: &mut Journal, key: u64, n: usize) {
        j.append(key, n as u64, &payload(n))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    fn open(path: &Path, generation: u64, next: u64) -> (Journal, Vec<Frame>) {
        Journal::open(path, generation, next, 4096).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn frames_are_read_back_in_order_and_only_while_contiguous() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("j");
        let (mut j, frames) = open(&path, 1, 10);
        assert!(frames.is_empty());
        assert_eq!(std::fs::metadata(&path).map(|m| m.len()).ok(), Some(4096));
        for (key, n) in [(10, 2), (12, 3), (15, 1)] {
            put(&mut j, key, n);
        }
        drop(j);
        let (_, frames) = open(&path, 1, 10);
        let keys: Vec<u64> = frames.iter().map(|f| f.first_key).collect();
        assert_eq!(keys, vec![10, 12, 15]);
        assert_eq!(frames[1].payload, payload(3));
        // redb already holds keys 10 to 12: the frames from the one holding key 13 come back.
        let (_, frames) = open(&path, 1, 13);
        let keys: Vec<u64> = frames.iter().map(|f| f.first_key).collect();
        assert_eq!(keys, vec![12, 15]);
        let (_, frames) = open(&path, 1, 16);
        assert!(frames.is_empty(), "redb has every record");
        // redb ends before the journal begins: records are missing, and that is an error.
        let missing = Journal::open(&path, 1, 9, 4096).map(|_| ());
        assert_eq!(
            missing.map_err(|e| e.kind()),
            Err(io::ErrorKind::InvalidData)
        );
        // Another generation's frames are not this one's.
        let (_, frames) = open(&path, 2, 10);
        assert!(frames.is_empty());
    }

    #[test]
    fn a_torn_frame_ends_the_journal() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("j");
        let (mut j, _) = open(&path, 1, 0);
        put(&mut j, 0, 2);
        let second = j.offset;
        put(&mut j, 2, 2);
        drop(j);
        // Flip one byte of the second frame's payload, as a write cut short would leave it.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("{e}"));
        let at = second + HEADER as u64 + 1;
        let mut byte = [0u8; 1];
        file.read_exact_at(&mut byte, at)
            .unwrap_or_else(|e| panic!("{e}"));
        file.write_all_at(&[byte[0] ^ 0x20], at)
            .unwrap_or_else(|e| panic!("{e}"));
        let (j, frames) = open(&path, 1, 0);
        assert_eq!(frames.len(), 1);
        assert_eq!(
            j.offset, second,
            "the next append overwrites the torn frame"
        );
    }

    #[test]
    fn a_restarted_journal_does_not_read_the_older_generation_behind_its_end() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("j");
        let (mut j, _) = open(&path, 1, 0);
        put(&mut j, 0, 3);
        put(&mut j, 3, 3);
        put(&mut j, 6, 3);
        // A checkpoint made keys 0..9 durable in redb; generation 2 starts at the beginning.
        j.restart(2);
        put(&mut j, 9, 4);
        drop(j);
        let (_, frames) = open(&path, 2, 9);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].first_key, 9);
    }

    #[test]
    fn the_journal_is_full_at_its_capacity_but_takes_any_batch_when_empty() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (mut j, _) = open(&dir.path().join("j"), 1, 0);
        assert!(
            j.fits(10_000),
            "an empty journal takes a batch over its capacity"
        );
        put(&mut j, 0, 2);
        assert!(j.fits(100));
        assert!(!j.fits(4096));
    }
}
