//! The client-side API budget: a node waits for a token before each EC2 call, so a burst of pods or a
//! reconcile storm can never hammer the account's shared EC2 rate limit (aws/amazon-vpc-cni-k8s#887, #617).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

// tokio's clock rather than std's: the same in production, and a test on tokio's paused clock sees exact
// refills instead of however long the machine took between two calls.
use tokio::time::Instant;

/// Bucket sizes: describe calls and mutating calls draw from separate buckets, as EC2 meters them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetConfig {
    /// Describe* burst.
    pub describe_capacity: f64,
    /// Describe* per second.
    pub describe_per_second: f64,
    /// Mutating burst.
    pub mutate_capacity: f64,
    /// Mutating per second.
    pub mutate_per_second: f64,
}

impl Default for BudgetConfig {
    /// A tenth of the account's default EC2 rates per node: a hundred nodes starting together still fit.
    fn default() -> Self {
        Self {
            describe_capacity: 20.0,
            describe_per_second: 2.0,
            mutate_capacity: 20.0,
            mutate_per_second: 1.0,
        }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    capacity: f64,
    per_second: f64,
    updated: Instant,
}

impl Bucket {
    fn new(capacity: f64, per_second: f64) -> Self {
        Self {
            tokens: capacity,
            capacity,
            per_second,
            updated: Instant::now(),
        }
    }

    /// Takes a token now, or says how long until one is there.
    fn take(&mut self) -> Option<Duration> {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.updated).as_secs_f64() * self.per_second)
            .min(self.capacity);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            None
        } else {
            Some(Duration::from_secs_f64(
                (1.0 - self.tokens) / self.per_second.max(f64::MIN_POSITIVE),
            ))
        }
    }
}

/// Calls, errors and time spent waiting for the budget.
#[derive(Debug, Default)]
pub struct CallStats {
    calls: Mutex<BTreeMap<String, u64>>,
    errors: Mutex<BTreeMap<String, u64>>,
    waited_ns: AtomicU64,
}

impl CallStats {
    /// Calls per EC2 action.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.calls.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Errors per `Action/Code`.
    pub fn errors(&self) -> BTreeMap<String, u64> {
        self.errors.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Total time calls waited for the budget.
    pub fn waited(&self) -> Duration {
        Duration::from_nanos(self.waited_ns.load(Ordering::Relaxed))
    }

    pub(crate) fn record_call(&self, action: &str) {
        if let Ok(mut calls) = self.calls.lock() {
            *calls.entry(action.to_owned()).or_default() += 1;
        }
    }

    pub(crate) fn record_error(&self, action: &str, code: &str) {
        if let Ok(mut errors) = self.errors.lock() {
            *errors.entry(format!("{action}/{code}")).or_default() += 1;
        }
    }
}

/// The budget.
#[derive(Debug)]
pub struct ApiBudget {
    describe: Mutex<Bucket>,
    mutate: Mutex<Bucket>,
    stats: CallStats,
}

impl ApiBudget {
    /// A full budget.
    pub fn new(config: BudgetConfig) -> Self {
        Self {
            describe: Mutex::new(Bucket::new(config.describe_capacity, config.describe_per_second)),
            mutate: Mutex::new(Bucket::new(config.mutate_capacity, config.mutate_per_second)),
            stats: CallStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> &CallStats {
        &self.stats
    }

    /// Waits until `action` may be sent, and counts it.
    pub async fn acquire(&self, action: &str) {
        self.stats.record_call(action);
        let bucket = if action.starts_with("Describe") {
            &self.describe
        } else {
            &self.mutate
        };
        loop {
            let wait = match bucket.lock() {
                Ok(mut bucket) => bucket.take(),
                Err(_) => None,
            };
            let Some(wait) = wait else { return };
            self.stats
                .waited_ns
                .fetch_add(wait.as_nanos() as u64, Ordering::Relaxed);
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn calls_beyond_the_burst_wait_for_refill() {
        let budget = ApiBudget::new(BudgetConfig {
            mutate_capacity: 2.0,
            mutate_per_second: 1.0,
            ..Default::default()
        });
        let start = Instant::now();
        budget.acquire("AssignPrivateIpAddresses").await;
        budget.acquire("AssignPrivateIpAddresses").await;
        assert_eq!(budget.stats().waited(), Duration::ZERO);
        // The burst is spent: the third call waits exactly one refill (1 token at 1 per second).
        budget.acquire("AssignPrivateIpAddresses").await;
        assert_eq!(budget.stats().waited(), Duration::from_secs(1));
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        // Describe calls have their own bucket: no wait.
        budget.acquire("DescribeInstances").await;
        assert_eq!(budget.stats().waited(), Duration::from_secs(1));
        assert_eq!(budget.stats().calls()["AssignPrivateIpAddresses"], 3);
        // A second later the bucket holds one token again, not more than it was refilled by.
        tokio::time::advance(Duration::from_secs(1)).await;
        budget.acquire("AssignPrivateIpAddresses").await;
        assert_eq!(budget.stats().waited(), Duration::from_secs(1));
        budget.acquire("AssignPrivateIpAddresses").await;
        assert_eq!(budget.stats().waited(), Duration::from_secs(2));
    }
}
