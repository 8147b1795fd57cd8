//! MariaDB's GTID position, stored beside the binlog file and offset: the last GTID of each
//! replication domain, in the form `@@gtid_binlog_pos` and `BINLOG_GTID_POS()` write
//! (`0-1-1234,1-2-77`). With it an operator can point a replica of another server of the same
//! replication topology at the same place (`SET GLOBAL gtid_slave_pos = '…'`); the CDC itself
//! resumes from the file and offset, which its own server always has.
//!
//! The position advances with each transaction the stream reads: MariaDB opens every
//! transaction with a GTID event (type 162), which the binlog crate does not decode, so its
//! first 12 bytes are read here (sequence number, then domain id, little-endian). MySQL's GTIDs
//! (`uuid:1-100` sets) are not tracked yet: there the stored GTID stays empty.

use std::collections::BTreeMap;
use std::fmt;

/// MariaDB's event type of a GTID event.
pub const MARIADB_GTID_EVENT: u8 = 162;

/// One GTID: domain, server, sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gtid {
    pub domain: u32,
    pub server: u32,
    pub seq: u64,
}

impl Gtid {
    /// The GTID of a MariaDB GTID event: `data` is the event after its header, `server` the
    /// header's server id.
    pub fn of_event(server: u32, data: &[u8]) -> Option<Self> {
        let seq = u64::from_le_bytes(data.get(..8)?.try_into().ok()?);
        let domain = u32::from_le_bytes(data.get(8..12)?.try_into().ok()?);
        Some(Self { domain, server, seq })
    }
}

/// The last GTID of each domain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GtidPos(BTreeMap<u32, (u32, u64)>);

impl GtidPos {
    /// `0-1-1234,1-2-77` (empty: no transaction yet). `None` when it is not such a list.
    pub fn parse(s: &str) -> Option<Self> {
        let mut pos = BTreeMap::new();
        for g in s.split(',').map(str::trim).filter(|g| !g.is_empty()) {
            let mut parts = g.splitn(3, '-');
            let domain = parts.next()?.parse().ok()?;
            let server = parts.next()?.parse().ok()?;
            let seq = parts.next()?.parse().ok()?;
            pos.insert(domain, (server, seq));
        }
        Some(Self(pos))
    }

    /// The position after the transaction `g`.
    pub fn advance(&mut self, g: Gtid) {
        self.0.insert(g.domain, (g.server, g.seq));
    }
}

impl fmt::Display for GtidPos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (domain, (server, seq))) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{domain}-{server}-{seq}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_event_and_keeps_one_gtid_per_domain() {
        let mut data = 1234_u64.to_le_bytes().to_vec();
        data.extend(7_u32.to_le_bytes());
        data.push(0); // flags
        let g = Gtid::of_event(3, &data).unwrap();
        assert_eq!(
            g,
            Gtid {
                domain: 7,
                server: 3,
                seq: 1234
            }
        );
        assert_eq!(Gtid::of_event(3, &data[..10]), None);

        let mut pos = GtidPos::parse("0-1-10,7-1-5").unwrap();
        pos.advance(g);
        pos.advance(Gtid {
            domain: 0,
            server: 2,
            seq: 11,
        });
        assert_eq!(pos.to_string(), "0-2-11,7-3-1234");
        assert_eq!(GtidPos::parse("").unwrap().to_string(), "");
        assert_eq!(GtidPos::parse("0-1"), None);
        assert_eq!(GtidPos::parse("a-1-2"), None);
    }
}
