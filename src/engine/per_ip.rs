//! Open connections per client IP, for `limits.max_connections_per_ip`.
//!
//! Touched once when a connection opens and once when it closes (never per request); sharded so
//! workers rarely meet on one lock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{LazyLock, Mutex};

const SHARDS: usize = 16;

static TABLE: LazyLock<[Mutex<HashMap<IpAddr, u32>>; SHARDS]> =
    LazyLock::new(|| std::array::from_fn(|_| Mutex::new(HashMap::new())));

fn shard(ip: &IpAddr) -> &'static Mutex<HashMap<IpAddr, u32>> {
    let h = match ip {
        IpAddr::V4(v4) => u32::from(*v4) as usize,
        IpAddr::V6(v6) => v6
            .octets()
            .iter()
            .fold(0usize, |h, &b| h.wrapping_mul(31) ^ usize::from(b)),
    };
    &TABLE[h % SHARDS]
}

/// One open connection counted against its IP; released on drop.
#[derive(Debug)]
pub struct Slot(IpAddr);

/// Count a connection from `ip`, unless it already has `cap` open (`None`: refuse it).
pub fn enter(ip: IpAddr, cap: u32) -> Option<Slot> {
    let mut table = shard(&ip).lock().unwrap_or_else(|p| p.into_inner());
    let open = table.entry(ip).or_insert(0);
    if *open >= cap {
        return None;
    }
    *open += 1;
    Some(Slot(ip))
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut table = shard(&self.0).lock().unwrap_or_else(|p| p.into_inner());
        if let Some(open) = table.get_mut(&self.0) {
            *open -= 1;
            if *open == 0 {
                table.remove(&self.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_holds_and_slots_come_back() {
        let ip: IpAddr = "192.0.2.55".parse().unwrap();
        let slots: Vec<_> = (0..3).map(|_| enter(ip, 3).unwrap()).collect();
        assert!(enter(ip, 3).is_none());
        assert!(
            enter("192.0.2.56".parse().unwrap(), 3).is_some(),
            "other IPs are unaffected"
        );
        drop(slots);
        assert!(enter(ip, 3).is_some());
    }
}
