//! EC2's request throttling: a token bucket per API action, sized by the action's class.
//!
//! Defaults follow AWS's published figures ("Request throttling for the Amazon EC2 API", EC2 developer
//! guide): non-mutating actions hold 100 tokens and refill 20 per second; mutating actions hold 200 and
//! refill 5; resource-intensive actions (RunInstances, TerminateInstances) hold 50 and refill 5. Each API is
//! evaluated on its own bucket, as on EC2.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Which bucket sizes an action gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionClass {
    /// Describe*.
    NonMutating,
    /// Create/Attach/Assign/…
    Mutating,
    /// RunInstances, TerminateInstances.
    ResourceIntensive,
}

impl ActionClass {
    /// The class of an EC2 action name.
    pub fn of(action: &str) -> Self {
        if action.starts_with("Describe") {
            Self::NonMutating
        } else if matches!(action, "RunInstances" | "TerminateInstances") {
            Self::ResourceIntensive
        } else {
            Self::Mutating
        }
    }
}

/// Size and refill of one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BucketSpec {
    /// Tokens when full.
    pub capacity: f64,
    /// Tokens added per second.
    pub refill_per_second: f64,
}

/// Throttling settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThrottleConfig {
    /// Off: never throttle.
    pub enabled: bool,
    /// Describe*.
    pub non_mutating: BucketSpec,
    /// Mutating actions.
    pub mutating: BucketSpec,
    /// RunInstances, TerminateInstances.
    pub resource_intensive: BucketSpec,
    /// Per-action overrides.
    #[serde(default)]
    pub per_action: BTreeMap<String, BucketSpec>,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            non_mutating: BucketSpec {
                capacity: 100.0,
                refill_per_second: 20.0,
            },
            mutating: BucketSpec {
                capacity: 200.0,
                refill_per_second: 5.0,
            },
            resource_intensive: BucketSpec {
                capacity: 50.0,
                refill_per_second: 5.0,
            },
            per_action: BTreeMap::new(),
        }
    }
}

impl ThrottleConfig {
    fn spec(&self, action: &str) -> BucketSpec {
        if let Some(spec) = self.per_action.get(action) {
            return *spec;
        }
        match ActionClass::of(action) {
            ActionClass::NonMutating => self.non_mutating,
            ActionClass::Mutating => self.mutating,
            ActionClass::ResourceIntensive => self.resource_intensive,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Bucket {
    tokens: f64,
    updated_ms: u64,
}

/// The buckets of one account.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Throttle {
    buckets: BTreeMap<String, Bucket>,
}

impl Throttle {
    /// Takes a token for `action` at `now_ms`; false when the bucket is empty (RequestLimitExceeded).
    pub fn admit(&mut self, config: &ThrottleConfig, action: &str, now_ms: u64) -> bool {
        if !config.enabled {
            return true;
        }
        let spec = config.spec(action);
        let bucket = self.buckets.entry(action.to_owned()).or_insert(Bucket {
            tokens: spec.capacity,
            updated_ms: now_ms,
        });
        let elapsed = now_ms.saturating_sub(bucket.updated_ms) as f64 / 1000.0;
        bucket.tokens = (bucket.tokens + elapsed * spec.refill_per_second).min(spec.capacity);
        bucket.updated_ms = now_ms;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
