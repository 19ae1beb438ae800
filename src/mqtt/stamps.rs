//! Reception times given to MQTT messages that carry no time of their
//! own, kept so that a message the broker sends again gets the same time.
//!
//! Readings are keyed by sensor and time, so a message sent again that
//! carries its time overwrites itself. One without a time is stamped when
//! received; if the broker sends it again (the process died after the
//! commit but before the acknowledgement reached the broker, or the
//! connection dropped in between), a fresh stamp would store the reading
//! twice. So the stamp of each such message that became a reading is made
//! durable before the readings' commit, under the message's packet id with
//! a hash of its topic and payload, and a redelivery (MQTT's DUP flag, the
//! same packet id, topic and payload) takes the stamp it had.
//!
//! A packet id names one unacknowledged message at a time: the broker may
//! reuse it once the message is acknowledged. So a message that arrives
//! for the first time (no DUP flag) ends its id's stamp, also when the
//! message is left for later for lack of room. One case stays wrong: a
//! redelivery of a message never seen before (lost on the way) whose id,
//! topic and payload equal the message that last had the id, when nothing
//! with that id arrived in between; it then lands on that reading's time.
//! Stamps are forgotten when the broker keeps no session for the appliance
//! (it sends nothing again) or the broker address or client id change.
//!
//! At most one stamp per packet id (65,535) of 16 bytes: the file stays
//! small whatever is published. The stamps are also held in memory, so
//! looking one up reads no disk.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use redb::{Database, ReadableTable, TableDefinition};

/// Packet id -> stamp (ms) and hash of topic and payload, little-endian.
const STAMPS: TableDefinition<u16, [u8; 16]> = TableDefinition::new("stamps");
/// "session" -> the broker address and client id the stamps are from.
const SESSION: TableDefinition<&str, &str> = TableDefinition::new("session");

/// The file of stamps in the data directory.
pub(super) const FILE: &str = "mqtt.redb";

/// A message's stamp: when it was received first, and what it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp {
    pub(super) ts_ms: i64,
    pub(super) hash: u64,
}

/// What one batch changes: per packet id, its new stamp, or `None`
/// where its stamp ended.
#[derive(Debug, Default)]
pub(super) struct Changes {
    ids: HashMap<u16, Option<Stamp>>,
}

impl Changes {
    pub(super) fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The time for a message without one of its own: for a redelivery,
    /// the stamp its id holds (as this batch left it) if it is of this
    /// message; else `now`. A message arriving for the first time (not a
    /// redelivery) ends its id's stamp.
    pub(super) fn time_for(
        &mut self,
        stamps: &Stamps,
        (pkid, dup): (u16, bool),
        topic: &str,
        payload: &[u8],
        now: i64,
    ) -> i64 {
        if pkid == 0 {
            return now;
        }
        if !dup {
            self.end(stamps, pkid);
            return now;
        }
        let held = match self.ids.get(&pkid) {
            Some(changed) => *changed,
            None => stamps.get(pkid),
        };
        held.filter(|s| s.hash == hash(topic, payload))
            .map_or(now, |s| s.ts_ms)
    }

    /// Ends `pkid`'s stamp.
    pub(super) fn end(&mut self, stamps: &Stamps, pkid: u16) {
        if stamps.holds(pkid) || self.ids.contains_key(&pkid) {
            self.ids.insert(pkid, None);
        }
    }

    /// The message under `pkid` became a reading stamped `ts_ms`.
    pub(super) fn keep(&mut self, pkid: u16, topic: &str, payload: &[u8], ts_ms: i64) {
        let hash = hash(topic, payload);
        self.ids.insert(pkid, Some(Stamp { ts_ms, hash }));
    }
}

pub(super) struct Stamps {
    db: Database,
    held: Mutex<HashMap<u16, Stamp>>,
}

impl Stamps {
    /// Opens (or creates) the stamps of `data_dir`, forgetting them if
    /// they are from another broker session than `session`.
    pub(super) fn open(data_dir: &Path, session: &str) -> Result<Self, redb::Error> {
        let db = Database::create(data_dir.join(FILE))?;
        let txn = db.begin_write()?;
        let mut held = HashMap::new();
        {
            let mut meta = txn.open_table(SESSION)?;
            let same = meta.get("session")?.is_some_and(|s| s.value() == session);
            if !same {
                txn.delete_table(STAMPS)?;
                meta.insert("session", session)?;
            }
            let table = txn.open_table(STAMPS)?;
            for entry in table.iter()? {
                let (id, value) = entry?;
                held.insert(id.value(), decode(value.value()));
            }
        }
        txn.commit()?;
        Ok(Self {
            db,
            held: Mutex::new(held),
        })
    }

    /// The stamp packet id `pkid` holds.
    pub(super) fn get(&self, pkid: u16) -> Option<Stamp> {
        self.held.lock().ok()?.get(&pkid).copied()
    }

    /// Whether packet id `pkid` holds a stamp.
    pub(super) fn holds(&self, pkid: u16) -> bool {
        self.get(pkid).is_some()
    }

    /// Makes `changes` durable in one commit.
    pub(super) fn apply(&self, changes: &Changes) -> Result<(), redb::Error> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(STAMPS)?;
            for (id, stamp) in &changes.ids {
                match stamp {
                    Some(s) => table.insert(*id, encode(s)).map(drop)?,
                    None => table.remove(*id).map(drop)?,
                }
            }
        }
        txn.commit()?;
        if let Ok(mut held) = self.held.lock() {
            for (id, stamp) in &changes.ids {
                match stamp {
                    Some(s) => held.insert(*id, *s),
                    None => held.remove(id),
                };
            }
        }
        Ok(())
    }

    /// Forgets every stamp: the broker will send nothing again.
    pub(super) fn forget(&self) -> Result<(), redb::Error> {
        let txn = self.db.begin_write()?;
        txn.delete_table(STAMPS)?;
        txn.open_table(STAMPS)?;
        txn.commit()?;
        if let Ok(mut held) = self.held.lock() {
            held.clear();
        }
        Ok(())
    }
}

/// FNV-1a (64 bits) of the topic, a zero byte and the payload: stable
/// across versions, unlike the standard library's hasher.
pub(super) fn hash(topic: &str, payload: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in topic.as_bytes().iter().chain(&[0]).chain(payload) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn encode(s: &Stamp) -> [u8; 16] {
    let mut out = [0; 16];
    out[..8].copy_from_slice(&s.ts_ms.to_le_bytes());
    out[8..].copy_from_slice(&s.hash.to_le_bytes());
    out
}

fn decode(bytes: [u8; 16]) -> Stamp {
    let (ts, hash) = bytes.split_at(8);
    let word = |b: &[u8]| {
        let mut w = [0; 8];
        w.copy_from_slice(b);
        w
    };
    Stamp {
        ts_ms: i64::from_le_bytes(word(ts)),
        hash: u64::from_le_bytes(word(hash)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn stamps_are_kept_per_session_and_ended_by_id() -> TestResult {
        let dir = tempfile::tempdir()?;
        let stamps = Stamps::open(dir.path(), "broker:1883/a")?;
        let mut changes = Changes::default();
        changes.keep(7, "plain/m1", b"5.5", 1_000);
        changes.keep(8, "plain/m2", b"1", 2_000);
        stamps.apply(&changes)?;
        drop(stamps);
        // Kept across a restart with the same session.
        let stamps = Stamps::open(dir.path(), "broker:1883/a")?;
        let mut batch = Changes::default();
        assert_eq!(
            batch.time_for(&stamps, (7, true), "plain/m1", b"5.5", 9),
            1_000
        );
        // Another message under the id, or not a redelivery: now.
        assert_eq!(batch.time_for(&stamps, (7, true), "plain/m1", b"5.6", 9), 9);
        assert_eq!(batch.time_for(&stamps, (8, true), "plain/m1", b"1", 9), 9);
        assert!(batch.is_empty(), "lookups change nothing");
        // A first arrival under id 7 ends its stamp, also for a redelivery
        // later in the same batch.
        assert_eq!(
            batch.time_for(&stamps, (7, false), "plain/m1", b"5.5", 9),
            9
        );
        assert_eq!(batch.time_for(&stamps, (7, true), "plain/m1", b"5.5", 9), 9);
        stamps.apply(&batch)?;
        assert!(!stamps.holds(7));
        assert!(stamps.holds(8));
        stamps.forget()?;
        assert!(!stamps.holds(8));
        let mut changes = Changes::default();
        changes.keep(9, "t", b"", 3);
        stamps.apply(&changes)?;
        drop(stamps);
        // Another broker or client id: none.
        let stamps = Stamps::open(dir.path(), "broker:1883/b")?;
        assert!(!stamps.holds(9));
        Ok(())
    }

    #[test]
    fn the_hash_tells_topic_from_payload() {
        assert_ne!(hash("a", b"b1"), hash("ab", b"1"));
        assert_ne!(hash("plain/m1", b"5.5"), hash("plain/m1", b"5.6"));
        assert_eq!(hash("plain/m1", b"5.5"), hash("plain/m1", b"5.5"));
    }
}
