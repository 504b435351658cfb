//! Time for the simulator: a virtual clock the caller moves (the planner runs a day in seconds, tests are
//! deterministic), or the wall clock (the lab and `vpcnictl sim serve`).

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + Debug {
    /// Now.
    fn now_ms(&self) -> u64;
    /// Lets simulated call latency pass: a virtual clock moves forward; the wall clock cannot, the server
    /// in front of the simulator sleeps instead.
    fn spend(&self, _ms: u64) {}
    /// Whether time moves only when told to: then nothing in front of the simulator may wait on the wall
    /// clock for simulated latency, the [`spend`](Clock::spend) above already moved it.
    fn is_virtual(&self) -> bool {
        false
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Clone, Default)]
pub struct VirtualClock(Arc<AtomicU64>);

impl VirtualClock {
    /// A clock at `start_ms`.
    pub fn new(start_ms: u64) -> Self {
        Self(Arc::new(AtomicU64::new(start_ms)))
    }

    /// Moves the clock forward.
    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for VirtualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    fn spend(&self, ms: u64) {
        self.advance(ms);
    }

    fn is_virtual(&self) -> bool {
        true
    }
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct WallClock;

impl Clock for WallClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}
