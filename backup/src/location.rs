//! Where backups live: `file:///DIR` (a directory, for the local cloud) or
//! `s3://BUCKET[/PREFIX]` (S3 or an S3-compatible endpoint).

use crate::{Result, err};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, RetryConfig};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// A backup location as FM configures it and sends it to agents.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Location {
    /// `file:///DIR` or `s3://BUCKET[/PREFIX]`.
    pub url: String,
    /// An S3-compatible endpoint instead of AWS's (`http://` allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_region: Option<String>,
    /// Static credentials; without them the SDK's usual sources (the
    /// environment, the instance profile) are used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<String>,
    /// The session token of temporary credentials (STS), with the two above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Location")
            .field("url", &self.url)
            .field("s3_endpoint", &self.s3_endpoint)
            .field("s3_region", &self.s3_region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "***"),
            )
            .field("session_token", &self.session_token.as_ref().map(|_| "***"))
            .finish()
    }
}

impl Location {
    /// Checks the URL's shape without opening anything.
    pub fn validate(&self) -> Result<()> {
        self.parts().map(|_| ())
    }

    fn parts(&self) -> Result<(Kind, String)> {
        if let Some(dir) = self.url.strip_prefix("file://") {
            if !dir.starts_with('/') {
                return Err(err(format!(
                    "backup location {:?}: a file:// URL needs an absolute path",
                    self.url
                )));
            }
            return Ok((
                Kind::Dir(dir.trim_end_matches('/').to_owned()),
                String::new(),
            ));
        }
        if let Some(rest) = self.url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(err(format!("backup location {:?}: no bucket", self.url)));
            }
            return Ok((
                Kind::S3(bucket.to_owned()),
                prefix.trim_matches('/').to_owned(),
            ));
        }
        Err(err(format!(
            "backup location {:?} must be file:///DIR or s3://BUCKET[/PREFIX]",
            self.url
        )))
    }

    /// Opens the store (no request is made yet).
    pub fn open(&self) -> Result<Store> {
        let (kind, prefix) = self.parts()?;
        let inner: Arc<dyn ObjectStore> = match kind {
            Kind::Dir(dir) => {
                std::fs::create_dir_all(&dir)
                    .map_err(|e| err(format!("can't create the backup dir {dir}: {e}")))?;
                Arc::new(LocalFileSystem::new_with_prefix(&dir)?.with_automatic_cleanup(true))
            }
            Kind::S3(bucket) => {
                let mut b = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    // Unreachable storage fails the operation in about a
                    // minute, not after the library's default three.
                    .with_retry(RetryConfig {
                        max_retries: 4,
                        retry_timeout: Duration::from_secs(60),
                        ..Default::default()
                    })
                    .with_client_options(
                        ClientOptions::new()
                            .with_connect_timeout(Duration::from_secs(10))
                            .with_timeout(Duration::from_secs(300)),
                    );
                if let Some(r) = &self.s3_region {
                    b = b.with_region(r);
                }
                if let Some(e) = &self.s3_endpoint {
                    b = b.with_endpoint(e).with_allow_http(e.starts_with("http://"));
                }
                if let (Some(k), Some(s)) = (&self.access_key_id, &self.secret_access_key) {
                    b = b.with_access_key_id(k).with_secret_access_key(s);
                    if let Some(t) = &self.session_token {
                        b = b.with_token(t);
                    }
                }
                Arc::new(b.build()?)
            }
        };
        Ok(Store {
            inner,
            prefix,
            url: self.url.clone(),
        })
    }
}

enum Kind {
    Dir(String),
    S3(String),
}

/// An opened location.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<dyn ObjectStore>,
    prefix: String,
    url: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("url", &self.url).finish()
    }
}

impl Store {
    /// The path of object `name` of backup `backup_id` of `instance_id`.
    pub fn object(&self, instance_id: &str, backup_id: &str, name: &str) -> Path {
        let rel = format!("{instance_id}/{backup_id}/{name}");
        if self.prefix.is_empty() {
            Path::from(rel)
        } else {
            Path::from(format!("{}/{rel}", self.prefix))
        }
    }

    /// A human-readable address of `path` in this location.
    pub fn display(&self, path: &Path) -> String {
        let base = self.url.trim_end_matches('/');
        let rel = path.as_ref();
        let rel = rel
            .strip_prefix(self.prefix.as_str())
            .unwrap_or(rel)
            .trim_start_matches('/');
        format!("{base}/{rel}")
    }

    /// Deletes a backup's objects; absent ones are fine.
    pub async fn delete_backup(&self, instance_id: &str, backup_id: &str) -> Result<()> {
        for name in [crate::MANIFEST, crate::ARCHIVE] {
            match self
                .inner
                .delete(&self.object(instance_id, backup_id, name))
                .await
            {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Whether a backup's manifest (its commit point) is there.
    pub async fn has_manifest(&self, instance_id: &str, backup_id: &str) -> Result<bool> {
        match self
            .inner
            .head(&self.object(instance_id, backup_id, crate::MANIFEST))
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads a whole (small) object.
    pub async fn read(&self, path: &Path) -> Result<bytes::Bytes> {
        match self.inner.get(path).await {
            Ok(r) => Ok(r.bytes().await?),
            Err(object_store::Error::NotFound { .. }) => Err(err(format!(
                "{} is not there (deleted, or the backup never completed)",
                self.display(path)
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes a whole (small) object.
    pub async fn write(&self, path: &Path, data: bytes::Bytes) -> Result<()> {
        self.inner.put(path, data.into()).await?;
        Ok(())
    }

    /// The store itself, for tests and tools.
    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(url: &str) -> Location {
        Location {
            url: url.into(),
            ..Default::default()
        }
    }

    #[test]
    fn urls_of_both_kinds_are_accepted_and_others_named() {
        assert!(loc("file:///var/backups").validate().is_ok());
        assert!(loc("s3://bucket/some/prefix").validate().is_ok());
        assert!(loc("s3://bucket").validate().is_ok());
        let e = loc("ftp://x").validate().unwrap_err();
        assert!(e.0.contains("file:///DIR or s3://BUCKET"), "{e}");
        assert!(loc("file://relative").validate().is_err());
        assert!(loc("s3:///p").validate().is_err());
    }

    #[test]
    fn object_paths_carry_the_prefix() {
        let s = loc("s3://b/team/fm/").open().unwrap();
        let p = s.object("inst", "bk-1", "manifest");
        assert_eq!(p.as_ref(), "team/fm/inst/bk-1/manifest");
        assert_eq!(s.display(&p), "s3://b/team/fm/inst/bk-1/manifest");
    }

    #[test]
    fn the_secret_key_is_not_in_debug_output() {
        let mut l = loc("s3://b");
        l.secret_access_key = Some("hunter2".into());
        assert!(!format!("{l:?}").contains("hunter2"));
    }
}
