//! Which core owns each outgoing connection, shared by the cores of one
//! dataplane whose NIC cannot be told where to steer return traffic (TAP, AF_XDP
//! on veth): a segment that reaches the wrong core is handed over to the owner.

use std::collections::HashMap;
use std::sync::Mutex;

use super::FourTuple;

/// Shards of the directory, each behind its own lock.
const SHARDS: usize = 16;

/// Outgoing connections by 4-tuple → the core whose stack holds them.
///
/// Only connections this dataplane opened are listed: incoming ones live on
/// the core the NIC delivered their SYN to, and their later segments follow
/// the same hash. Looked up only for segments that match no local flow, so
/// the lock is off the common path.
#[derive(Debug)]
pub struct FlowDirectory {
    shards: Box<[Mutex<HashMap<FourTuple, usize>>]>,
}

impl Default for FlowDirectory {
    fn default() -> Self {
        Self::new()
    }
}

impl FlowDirectory {
    /// An empty directory.
    pub fn new() -> Self {
        Self { shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect() }
    }

    fn shard(&self, tuple: &FourTuple) -> std::sync::MutexGuard<'_, HashMap<FourTuple, usize>> {
        // The remote port varies least predictably between flows to one
        // server; the local port varies per connection.
        let i = (usize::from(tuple.local.port()) ^ usize::from(tuple.remote.port()).rotate_left(3)) % SHARDS;
        // A poisoned shard only means another core panicked mid-insert of a
        // plain map entry: the map is still consistent.
        self.shards[i].lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records `tuple` for `core` unless another core holds it; true when
    /// `core` holds it now.
    pub fn claim(&self, tuple: FourTuple, core: usize) -> bool {
        *self.shard(&tuple).entry(tuple).or_insert(core) == core
    }

    /// The core holding `tuple`, if any.
    pub fn owner(&self, tuple: &FourTuple) -> Option<usize> {
        self.shard(tuple).get(tuple).copied()
    }

    /// Forgets `tuple` if `core` holds it.
    pub fn release(&self, tuple: &FourTuple, core: usize) {
        let mut shard = self.shard(tuple);
        if shard.get(tuple) == Some(&core) {
            shard.remove(tuple);
        }
    }

    /// Connections listed.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len()).sum()
    }

    /// Whether no connection is listed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddrV4};

    use super::*;

    fn tuple(local_port: u16) -> FourTuple {
        FourTuple {
            local: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), local_port),
            remote: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 80),
        }
    }

    #[test]
    fn a_tuple_has_one_owner_until_it_releases_it() {
        let dir = FlowDirectory::new();
        assert!(dir.claim(tuple(40000), 0));
        assert!(dir.claim(tuple(40000), 0), "claiming again is idempotent");
        assert!(!dir.claim(tuple(40000), 1), "another core cannot take it");
        assert_eq!(dir.owner(&tuple(40000)), Some(0));
        dir.release(&tuple(40000), 1);
        assert_eq!(dir.owner(&tuple(40000)), Some(0), "only the owner releases");
        dir.release(&tuple(40000), 0);
        assert_eq!(dir.owner(&tuple(40000)), None);
        assert!(dir.is_empty());
    }
}
