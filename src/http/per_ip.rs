//! `--max-clients-per-ip`: open streams per client address. HTTP policy, so it lives here; the
//! hub's own slots stay the global limit. Taken before a hub slot, so one address flooding the
//! hub cannot use up the slots everyone shares.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// Streams per address, at most `max` (0: no limit).
#[derive(Debug, Default)]
pub(crate) struct PerIp {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl PerIp {
    pub(crate) fn new(max: usize) -> Arc<PerIp> {
        Arc::new(PerIp {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Counts one more stream for `ip`, or refuses if it has `max` already. With no limit the
    /// guard counts nothing.
    pub(crate) fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<IpGuard> {
        if self.max == 0 {
            return Some(IpGuard(None));
        }
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(IpGuard(Some((self.clone(), ip))))
    }

    pub(crate) fn max(&self) -> usize {
        self.max
    }
}

/// One counted stream; dropping it uncounts it (and forgets the address at zero).
#[derive(Debug)]
pub(crate) struct IpGuard(Option<(Arc<PerIp>, IpAddr)>);

impl Drop for IpGuard {
    fn drop(&mut self) {
        if let Some((per_ip, ip)) = self.0.take() {
            let mut open = per_ip.open.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(n) = open.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    open.remove(&ip);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_address_and_forgets_at_zero() {
        let limit = PerIp::new(2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let g1 = limit.try_acquire(a).unwrap();
        let _g2 = limit.try_acquire(a).unwrap();
        assert!(limit.try_acquire(a).is_none());
        assert!(limit.try_acquire(b).is_some());
        drop(g1);
        assert!(limit.try_acquire(a).is_some());
        let unlimited = PerIp::new(0);
        let all: Vec<_> = (0..100)
            .map(|_| unlimited.try_acquire(a).unwrap())
            .collect();
        assert_eq!(all.len(), 100);
        assert!(unlimited.open.lock().unwrap().is_empty());
    }
}
