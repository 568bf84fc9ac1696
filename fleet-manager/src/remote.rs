//! The CLI's client of a running FM's REST API (`fleet-manager plan|apply`):
//! one call, then, for an action, its future (or rollout) followed to the
//! end.

use crate::error::{Error, Result};
use serde_json::Value;
use std::time::Duration;

/// Where FM runs and the API key to use.
#[derive(Debug, Clone, clap::Args)]
pub struct Remote {
    /// FM's base URL.
    #[arg(long, env = "FM_URL", default_value = "http://127.0.0.1:10000")]
    pub url: String,
    /// API key id.
    #[arg(long, env = "FM_API_KEY_ID")]
    pub key_id: String,
    /// API key secret.
    #[arg(long, env = "FM_API_KEY_SECRET", hide_env_values = true)]
    pub key_secret: String,
    #[arg(long, default_value = "main")]
    pub tenant: String,
}

impl Remote {
    fn endpoint(&self, path: &str) -> String {
        format!(
            "{}/api/public/tenants/{}{path}",
            self.url.trim_end_matches('/'),
            self.tenant
        )
    }

    /// One call; the answer's JSON, or FM's `{errorType, message}` as the
    /// error.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let mut req = reqwest::Client::new()
            .request(method, self.endpoint(path))
            .basic_auth(&self.key_id, Some(&self.key_secret))
            .timeout(Duration::from_secs(60));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| Error::invalid(format!("can't reach FM at {}: {e}", self.url)))?;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            Ok(v)
        } else {
            Err(Error::invalid(format!(
                "HTTP {status}: {} {}",
                v["errorType"].as_str().unwrap_or_default(),
                v["message"].as_str().unwrap_or_default()
            )))
        }
    }

    /// Follows a future until it ends; a failed one is an error with its
    /// message.
    pub async fn wait(&self, future: Value) -> Result<Value> {
        let Some(job) = future["jobId"].as_str().map(str::to_owned) else {
            return Ok(future);
        };
        let mut f = future;
        while f["alive"] == true || f["state"] == "pending" || f["state"] == "running" {
            tokio::time::sleep(Duration::from_millis(500)).await;
            f = self
                .call(
                    reqwest::Method::GET,
                    &format!("/futures/{job}?peek=true"),
                    None,
                )
                .await?;
        }
        if f["state"] == "done" {
            Ok(f["result"].clone())
        } else {
            Err(Error::invalid(format!(
                "{job} {}: {}",
                f["state"].as_str().unwrap_or("failed"),
                f["error"]["message"].as_str().unwrap_or("no message")
            )))
        }
    }

    /// Follows a rollout until it ends, a line on stderr each time its
    /// counts change; one that ends failed or cancelled is an error.
    pub async fn wait_rollout(&self, rollout: Value) -> Result<Value> {
        let id = rollout["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| Error::internal("the answer names no rollout"))?;
        let mut r = rollout;
        let mut shown = String::new();
        loop {
            let c = &r["counts"];
            let line = format!(
                "{id} {}: {}/{} done, {} running, {} failed, {} skipped",
                r["state"].as_str().unwrap_or("?"),
                c["done"],
                c["targets"],
                c["running"],
                c["failed"],
                c["skipped"]
            );
            if line != shown {
                eprintln!("{line}");
                shown = line;
            }
            match r["state"].as_str() {
                Some("done") => return Ok(r),
                Some("failed") | Some("cancelled") => {
                    return Err(Error::invalid(format!(
                        "{id} {}: {}",
                        r["state"].as_str().unwrap_or_default(),
                        r["reason"].as_str().unwrap_or("no reason given")
                    )));
                }
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            r = self
                .call(reqwest::Method::GET, &format!("/rollouts/{id}"), None)
                .await?;
        }
    }
}
