//! Reception times given to MQTT messages that carry no time of their
//! own, kept so that a message the broker sends again gets the same time.
//!
//! Readings are keyed by sensor and time, so a message sent again that
//! carries its time overwrites itself. One without a time is stamped when
//! received; if the broker sends it again (the process died after the
//! commit but before the acknowledgement reached the broker, or the
//! connection dropped in between), a fresh stamp would store the reading
//! twice. So each such stamp is made durable before the readings' commit,
//! under the message's packet id, and a redelivery (MQTT's DUP flag, the
//! same packet id, topic and payload) takes the stamp it had.
//!
//! A packet id names one unacknowledged message at a time (the broker
//! reuses it only once the message is acknowledged). The one case still
//! wrong: a redelivery of a message never received before (lost on the
//! way) whose packet id, topic and payload all equal an earlier,
//! acknowledged message's: it then lands on that reading's time instead
//! of adding one. Stamps are forgotten when the broker keeps no session
//! for the appliance (it sends nothing again) or the broker address or
//! client id change.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

/// Packet id -> stamp (ms, little-endian), topic length (u32), topic, payload.
const STAMPS: TableDefinition<u16, &[u8]> = TableDefinition::new("stamps");
/// "session" -> the broker address and client id the stamps are from.
const SESSION: TableDefinition<&str, &str> = TableDefinition::new("session");

/// The file of stamps in the data directory.
pub(super) const FILE: &str = "mqtt.redb";

/// A message as the broker identifies it, with the time it was stamped.
pub(super) struct Stamp<'a> {
    pub(super) pkid: u16,
    pub(super) topic: &'a str,
    pub(super) payload: &'a [u8],
    pub(super) ts_ms: i64,
}

pub(super) struct Stamps {
    db: Database,
}

impl Stamps {
    /// Opens (or creates) the stamps of `data_dir`, forgetting them if
    /// they are from another broker session than `session`.
    pub(super) fn open(data_dir: &Path, session: &str) -> Result<Self, redb::Error> {
        let db = Database::create(data_dir.join(FILE))?;
        let txn = db.begin_write()?;
        {
            let mut meta = txn.open_table(SESSION)?;
            let same = meta.get("session")?.is_some_and(|s| s.value() == session);
            if !same {
                txn.delete_table(STAMPS)?;
                meta.insert("session", session)?;
            }
            txn.open_table(STAMPS)?;
        }
        txn.commit()?;
        Ok(Self { db })
    }

    /// The time a message was stamped with when it was received before.
    pub(super) fn earlier(
        &self,
        pkid: u16,
        topic: &str,
        payload: &[u8],
    ) -> Result<Option<i64>, redb::Error> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(STAMPS)?;
        let Some(record) = table.get(pkid)? else {
            return Ok(None);
        };
        Ok(decode(record.value())
            .filter(|s| s.topic == topic && s.payload == payload)
            .map(|s| s.ts_ms))
    }

    /// Makes `stamps` durable (one commit), replacing what their packet
    /// ids held.
    pub(super) fn remember(&self, stamps: &[Stamp<'_>]) -> Result<(), redb::Error> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(STAMPS)?;
            for s in stamps {
                table.insert(s.pkid, encode(s).as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Forgets every stamp: the broker will send nothing again.
    pub(super) fn forget(&self) -> Result<(), redb::Error> {
        let txn = self.db.begin_write()?;
        txn.delete_table(STAMPS)?;
        txn.open_table(STAMPS)?;
        txn.commit()?;
        Ok(())
    }
}

fn encode(s: &Stamp<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + s.topic.len() + s.payload.len());
    out.extend_from_slice(&s.ts_ms.to_le_bytes());
    out.extend_from_slice(&(s.topic.len() as u32).to_le_bytes());
    out.extend_from_slice(s.topic.as_bytes());
    out.extend_from_slice(s.payload);
    out
}

/// `None` for a record that is not one [`encode`] wrote.
fn decode(bytes: &[u8]) -> Option<Stamp<'_>> {
    let ts_ms = i64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let len = u32::from_le_bytes(bytes.get(8..12)?.try_into().ok()?) as usize;
    let topic = std::str::from_utf8(bytes.get(12..12usize.checked_add(len)?)?).ok()?;
    Some(Stamp {
        pkid: 0,
        topic,
        payload: bytes.get(12 + len..)?,
        ts_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn a_message_sent_again_gets_its_first_stamp() -> TestResult {
        let dir = tempfile::tempdir()?;
        let stamps = Stamps::open(dir.path(), "broker:1883/a")?;
        let first = Stamp {
            pkid: 7,
            topic: "plain/m1",
            payload: b"5.5",
            ts_ms: 1_000,
        };
        stamps.remember(&[first])?;
        assert_eq!(stamps.earlier(7, "plain/m1", b"5.5")?, Some(1_000));
        // Another message under the id, or another id: no stamp.
        assert_eq!(stamps.earlier(7, "plain/m1", b"5.6")?, None);
        assert_eq!(stamps.earlier(7, "plain/m2", b"5.5")?, None);
        assert_eq!(stamps.earlier(8, "plain/m1", b"5.5")?, None);
        drop(stamps);
        // Kept across a restart with the same session, not with another.
        let stamps = Stamps::open(dir.path(), "broker:1883/a")?;
        assert_eq!(stamps.earlier(7, "plain/m1", b"5.5")?, Some(1_000));
        stamps.forget()?;
        assert_eq!(stamps.earlier(7, "plain/m1", b"5.5")?, None);
        stamps.remember(&[Stamp {
            pkid: 7,
            topic: "t",
            payload: b"",
            ts_ms: 2,
        }])?;
        drop(stamps);
        let stamps = Stamps::open(dir.path(), "broker:1883/b")?;
        assert_eq!(stamps.earlier(7, "t", b"")?, None);
        Ok(())
    }

    #[test]
    fn a_damaged_record_is_no_stamp() {
        assert!(decode(b"short").is_none());
        let mut bytes = encode(&Stamp {
            pkid: 1,
            topic: "abc",
            payload: b"1",
            ts_ms: 3,
        });
        bytes[8] = 200;
        assert!(decode(&bytes).is_none());
    }
}
