//! What an SDK error means, and sending a call until it holds.
//!
//! Invariants: every attempt takes a token from the gate first; only
//! throttling, server errors, timeouts and dispatch failures are retried,
//! with full-jitter exponential backoff (`base_backoff` doubling per attempt
//! up to `MAX_BACKOFF`), for at most `max_attempts` attempts; any other
//! error comes back at once as `Error::OperationFailed` whose `error_type`
//! is AWS's code. A create that must happen once looks for what an earlier
//! attempt made before each retry, since an answer may be lost.

use super::AwsCloud;
use super::gate::{Class, Gate};
use crate::error::{Error, Result};
use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use std::future::Future;
use std::time::Duration;

/// The longest backoff ceiling, however many attempts came before.
const MAX_BACKOFF: Duration = Duration::from_secs(20);
/// The backoff ceiling doubles at most this many times.
const MAX_DOUBLINGS: u32 = 10;
/// How often a call refused while an instance starts is repeated, and how
/// many times (five minutes).
const STARTING_POLL: Duration = Duration::from_secs(2);
const STARTING_TRIES: u32 = 150;

/// EC2's codes for a failure a later attempt may not see.
const TRANSIENT_CODES: &[&str] = &[
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "Unavailable",
    "RequestTimeout",
];

/// EC2's codes for a call refused because the instance is not yet
/// `running` (or not yet visible to every endpoint).
const STARTING_CODES: &[&str] = &[
    "IncorrectState",
    "IncorrectInstanceState",
    "InvalidInstanceID.NotFound",
];

/// What went wrong with one call, read off the SDK's error.
#[derive(Debug)]
struct Fault {
    code: Option<String>,
    message: String,
    retryable: bool,
}

fn fault<E>(e: SdkError<E, HttpResponse>) -> Fault
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = e.code().map(str::to_string);
    let status = e.raw_response().map(|r| r.status().as_u16());
    let message = e
        .message()
        .map(str::to_string)
        .unwrap_or_else(|| aws_sdk_ec2::error::DisplayErrorContext(&e).to_string());
    let transient_code = code
        .as_deref()
        .is_some_and(|c| TRANSIENT_CODES.contains(&c));
    let retryable = transient_code
        || status.is_some_and(|s| s >= 500 || s == 429)
        || matches!(
            e,
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
        );
    Fault {
        code,
        message,
        retryable,
    }
}

/// The result of a call whose goal already holds when EC2 answers `code`
/// (deleting what is gone, adding a rule that is there): that answer is
/// success.
pub(super) fn already<T>(r: Result<T>, code: &str) -> Result<()> {
    match r {
        Err(Error::OperationFailed { error_type, .. }) if error_type == code => Ok(()),
        other => other.map(|_| ()),
    }
}

impl AwsCloud {
    /// Sends one request through the gate: waits for a token of its class,
    /// retries throttling and server errors with full-jitter exponential
    /// backoff, and turns other errors into a failed operation carrying
    /// AWS's code and message. For requests that are safe to repeat.
    pub(super) async fn send<T, E, F, Fut>(
        &self,
        g: &Gate,
        class: Class,
        action: &str,
        f: F,
    ) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = std::result::Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let mut attempt = 0u32;
        loop {
            g.take(class).await;
            let e = match f().await {
                Ok(v) => return Ok(v),
                Err(e) => fault(e),
            };
            attempt += 1;
            self.retry_or_fail(action, e, attempt).await?;
        }
    }

    /// Creates a resource that must exist once: a create whose answer was
    /// lost may have happened (and the emulator ignores `ClientToken`;
    /// `CreateSnapshot` takes none), so before each retry this looks for
    /// what an earlier attempt made, by FM's tags.
    pub(super) async fn create_once<E, F, Fut, G, GFut>(
        &self,
        g: &Gate,
        class: Class,
        action: &str,
        create: F,
        find: G,
    ) -> Result<String>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = std::result::Result<String, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        G: Fn() -> GFut,
        GFut: Future<Output = Result<Option<String>>>,
    {
        let mut attempt = 0u32;
        loop {
            if attempt > 0
                && let Some(id) = find().await?
            {
                return Ok(id);
            }
            g.take(class).await;
            let e = match create().await {
                Ok(id) => return Ok(id),
                Err(e) => fault(e),
            };
            attempt += 1;
            self.retry_or_fail(action, e, attempt).await?;
        }
    }

    /// Sleeps before the next attempt, or gives the error up.
    async fn retry_or_fail(&self, action: &str, e: Fault, attempt: u32) -> Result<()> {
        if !e.retryable || attempt >= self.settings.max_attempts.max(1) {
            let code = e.code.clone().unwrap_or_else(|| "AwsError".into());
            return Err(Error::OperationFailed {
                error_type: code.clone(),
                message: format!("EC2 {action} failed: {code}: {}", e.message),
            });
        }
        let ceiling = self
            .settings
            .base_backoff
            .saturating_mul(1 << attempt.min(MAX_DOUBLINGS))
            .min(MAX_BACKOFF);
        let wait = ceiling.mul_f64(rand::random::<f64>());
        tracing::debug!(action, code = ?e.code, attempt, ?wait, "EC2 call retried");
        tokio::time::sleep(wait).await;
        Ok(())
    }

    /// Repeats a call EC2 refuses while a new instance is still `pending`
    /// (or not yet visible to every endpoint), for up to five minutes.
    pub(super) async fn while_starting<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        for _ in 0..STARTING_TRIES {
            match f().await {
                Err(Error::OperationFailed { error_type, .. })
                    if STARTING_CODES.contains(&error_type.as_str()) =>
                {
                    tokio::time::sleep(STARTING_POLL).await;
                }
                other => return other,
            }
        }
        f().await
    }
}
