//! Cooldowns that outlive the pool's hold on an address. The policy may give an address back to EC2 while
//! it still cools down after a pod's deletion (as the original does), and EC2 may hand the very same
//! address back at the next growth; without this, it would come back fresh and go to a new pod before its
//! cooldown ends, while the old pod's connections may still be in flight (user complaint: stale conntrack
//! entries). The daemon remembers when such addresses were released by their pods, re-applies that when
//! they return, and keeps them in the checkpoint's cooling list so a restart remembers too.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Mutex;

use ipnet::Ipv4Net;
use vpcni_engine::{Cidr, Millis, Pool};

/// Addresses given back to EC2 while cooling down, with when their pod released them.
#[derive(Debug, Default)]
pub struct ReturnedCooldowns {
    released: Mutex<HashMap<Ipv4Addr, Millis>>,
}

impl ReturnedCooldowns {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Ipv4Addr, Millis>> {
        self.released
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Remembers the cooling addresses of CIDRs about to leave the pool.
    pub fn remember<'a>(&self, cidrs: impl IntoIterator<Item = &'a Cidr>, cooldown: Millis, now: Millis) {
        let mut released = self.lock();
        released.retain(|_, at| now < at.saturating_add(cooldown));
        for cidr in cidrs {
            for slot in cidr.slots.iter().filter(|s| s.is_cooling(now, cooldown)) {
                if let Some(at) = slot.unassigned_at {
                    released.insert(slot.ip, at);
                }
            }
        }
    }

    /// Remembers the cooling addresses of `nets` on `eni_id`, about to be given back.
    pub fn remember_nets(&self, pool: &Pool, eni_id: &str, nets: &[Ipv4Net], now: Millis) {
        let Some(eni) = pool.eni(eni_id) else { return };
        let cidrs = nets.iter().filter_map(|n| eni.cidrs.get(n));
        self.remember(cidrs, pool.config().ip_cooldown_ms, now);
    }

    /// Adds cooldowns read from a checkpoint.
    pub fn load(&self, entries: impl IntoIterator<Item = (Ipv4Addr, Millis)>) {
        self.lock().extend(entries);
    }

    /// Re-applies remembered cooldowns to addresses back in the pool.
    pub fn reapply(&self, pool: &mut Pool, now: Millis) {
        let cooldown = pool.config().ip_cooldown_ms;
        let mut released = self.lock();
        released.retain(|_, at| now < at.saturating_add(cooldown));
        for (ip, at) in released.iter() {
            pool.restore_cooldown(*ip, *at);
        }
    }

    /// Remembered cooldowns still running at `now`.
    pub fn running(&self, cooldown: Millis, now: Millis) -> Vec<(Ipv4Addr, Millis)> {
        self.lock()
            .iter()
            .filter(|(_, at)| now < at.saturating_add(cooldown))
            .map(|(ip, at)| (*ip, *at))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use vpcni_engine::{Eni, EniFlags, NodeLimits, PodInfo, PodKey, PoolConfig};

    use super::*;

    #[test]
    fn an_address_back_from_ec2_keeps_cooling() {
        let limits = NodeLimits {
            max_enis: 3,
            max_eni_configured: false,
            unmanaged_enis: 0,
            reserve_trunk_slot: false,
            slots_per_eni: 9,
            max_pods: 29,
        };
        let mut pool = Pool::new(PoolConfig::default(), limits);
        let eni = Eni::new(
            "eni-1",
            0,
            EniFlags {
                primary: true,
                ..EniFlags::default()
            },
            "10.0.0.0/24".parse().unwrap(),
            "10.0.0.4".parse().unwrap(),
            0,
        );
        pool.add_eni(eni).unwrap();
        let net: Ipv4Net = "10.0.0.5/32".parse().unwrap();
        pool.add_cidrs("eni-1", &[net]).unwrap();
        let key = PodKey::new("n", "c", "eth0");
        pool.assign(&key, &PodInfo::default(), 1_000).unwrap();
        pool.unassign(&key, 2_000).unwrap();

        let returned = ReturnedCooldowns::default();
        returned.remember_nets(&pool, "eni-1", &[net], 3_000);
        pool.remove_cidrs("eni-1", &[net]).unwrap();
        pool.add_cidrs("eni-1", &[net]).unwrap();
        returned.reapply(&mut pool, 4_000);
        assert!(
            pool.assign(&PodKey::new("n", "d", "eth0"), &PodInfo::default(), 4_000)
                .is_err()
        );
        assert_eq!(returned.running(30_000, 4_000), vec![(net.addr(), 2_000)]);
        // Past the cooldown it is an ordinary address again.
        returned.reapply(&mut pool, 40_000);
        assert!(returned.running(30_000, 40_000).is_empty());
    }
}
