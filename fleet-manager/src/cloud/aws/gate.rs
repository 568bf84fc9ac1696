//! The rate gate: one EC2 client per account identity and region, and in
//! front of it a client-side token bucket per request class, sized by the
//! buckets EC2 publishes per account and region.
//!
//! Invariants: every EC2 call takes a token of its class from its gate
//! first (`retry::send` and `retry::create_once` do, for each attempt);
//! a gate is made once per (identity, region) and kept for the process, so
//! all of FM's calls in one account and region share its buckets. The SDK's
//! own retries are off: retrying is `retry`'s, through this gate.

use super::AwsCloud;
use crate::cloud::{CloudAuth, Placement};
use crate::error::{Error, Result};
use aws_sdk_ec2::Client;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long connecting to EC2 may take before the attempt counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one attempt of a call may take (a hung connection is a failed
/// attempt, retried like one).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);

/// EC2's request-rate classes, each a token bucket (burst, refill per
/// second), as EC2 publishes them per account and region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Class {
    RunInstances,
    Mutating,
    Describe,
}

impl Class {
    fn bucket(self) -> (f64, f64) {
        match self {
            Class::RunInstances => (5.0, 2.0),
            Class::Mutating => (200.0, 5.0),
            Class::Describe => (100.0, 20.0),
        }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
    burst: f64,
    rate: f64,
}

/// A client and its rate limits, per account identity and region.
#[derive(Debug)]
pub(super) struct Gate {
    pub(super) client: Client,
    buckets: Mutex<HashMap<Class, Bucket>>,
}

impl Bucket {
    fn new(class: Class, now: Instant) -> Bucket {
        let (burst, rate) = class.bucket();
        Bucket {
            tokens: burst,
            last: now,
            burst,
            rate,
        }
    }

    /// Takes a token at `now`, or tells how long until one is there.
    fn take(&mut self, now: Instant) -> Option<Duration> {
        let refill = now.saturating_duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            None
        } else {
            Some(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

impl Gate {
    /// Waits for a token of `class`.
    pub(super) async fn take(&self, class: Class) {
        loop {
            let wait = {
                let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                match b
                    .entry(class)
                    .or_insert_with(|| Bucket::new(class, now))
                    .take(now)
                {
                    None => return,
                    Some(w) => w,
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// A client for `at`'s account identity and region, with full buckets.
    async fn open(at: &Placement, endpoint_url: Option<&str>) -> Gate {
        let loader = || {
            let mut l = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new(at.region.clone()))
                .retry_config(aws_config::retry::RetryConfig::disabled())
                .timeout_config(
                    aws_config::timeout::TimeoutConfig::builder()
                        .connect_timeout(CONNECT_TIMEOUT)
                        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                        .build(),
                );
            if let Some(ep) = endpoint_url {
                l = l.endpoint_url(ep.to_string());
            }
            l
        };
        let conf = match &at.auth {
            CloudAuth::Default => loader().load().await,
            CloudAuth::Keypair {
                access_key_id,
                secret_access_key,
            } => {
                loader()
                    .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                        access_key_id.clone(),
                        secret_access_key.0.clone(),
                        None,
                        None,
                        "fleet-manager",
                    ))
                    .load()
                    .await
            }
            CloudAuth::Role { arn } => {
                let base = loader().load().await;
                let role = aws_config::sts::AssumeRoleProvider::builder(arn.clone())
                    .session_name("fleet-manager")
                    .configure(&base)
                    .build()
                    .await;
                loader().credentials_provider(role).load().await
            }
        };
        Gate {
            client: Client::new(&conf),
            buckets: Mutex::new(HashMap::new()),
        }
    }
}

impl AwsCloud {
    /// The gate of `at`'s account identity and region, made on first use.
    pub(super) async fn gate(&self, at: &Placement) -> Result<Arc<Gate>> {
        if at.region.is_empty() {
            return Err(Error::invalid(format!(
                "the virtual network of instance '{}' names no AWS region",
                at.instance_id
            )));
        }
        let key = (at.auth.clone(), at.region.clone());
        let mut gates = self.gates.lock().await;
        if let Some(g) = gates.get(&key) {
            return Ok(g.clone());
        }
        let g = Arc::new(Gate::open(at, self.settings.endpoint_url.as_deref()).await);
        gates.insert(key, g.clone());
        Ok(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_instances_gets_its_burst_then_two_calls_a_second() {
        let t0 = Instant::now();
        let mut b = Bucket::new(Class::RunInstances, t0);
        for _ in 0..5 {
            assert_eq!(b.take(t0), None, "the burst of 5 is free");
        }
        let wait = b.take(t0).expect("the sixth call waits");
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6, "{wait:?}");
        assert_eq!(b.take(t0 + Duration::from_millis(500)), None);
        assert!(b.take(t0 + Duration::from_millis(600)).is_some());
        // A quiet minute refills the burst, no more.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..5 {
            assert_eq!(b.take(later), None);
        }
        assert!(b.take(later).is_some());
    }
}
