//! The object store every table of the fleet lives in.
//!
//! Built with `object_store`'s own S3 client: commits to a Delta log are
//! create-only writes (`If-None-Match: *`), which S3 and its compatible
//! servers answer with 412 for the loser of a race, so no lock service is
//! needed.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::prefix::PrefixStore;

use crate::config::FleetConfig;
use crate::error::{Error, Result};

/// The bucket, with credentials from the config where given, else from
/// the usual `AWS_*` environment (or an instance role).
pub fn bucket_store(config: &FleetConfig) -> Result<Arc<dyn ObjectStore>> {
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(&config.bucket)
        .with_allow_http(config.allow_http)
        .with_conditional_put(S3ConditionalPut::ETagMatch);
    if let Some(region) = &config.region {
        builder = builder.with_region(region);
    }
    if let Some(endpoint) = &config.endpoint {
        // Compatible servers are addressed by path, not by bucket host.
        builder = builder
            .with_endpoint(endpoint)
            .with_virtual_hosted_style_request(false);
    }
    if let Some(id) = &config.access_key_id {
        builder = builder.with_access_key_id(id);
    }
    if let Some(secret) = &config.secret_access_key {
        builder = builder.with_secret_access_key(secret);
    }
    let store = builder
        .build()
        .map_err(|e| Error::Config(format!("fleet object store: {e}")))?;
    Ok(Arc::new(store))
}

/// Where the fleet's tables live: an object store, the URL of its root,
/// and the folder under it that stands for the bucket's root.
#[derive(Clone)]
pub struct Bucket {
    pub store: Arc<dyn ObjectStore>,
    root: url::Url,
    base: String,
    /// The folder, when the bucket is one on the local disk.
    dir: Option<std::path::PathBuf>,
}

impl Bucket {
    /// The configured S3 bucket.
    pub fn s3(config: &FleetConfig) -> Result<Bucket> {
        Ok(Bucket {
            store: bucket_store(config)?,
            root: url::Url::parse(&format!("s3://{}/", config.bucket))
                .map_err(|e| Error::Config(format!("fleet.bucket: {e}")))?,
            base: String::new(),
            dir: None,
        })
    }

    /// A folder on the local disk standing in for a bucket (benchmarks
    /// and tests without an S3 server).
    pub fn local(dir: &std::path::Path) -> Result<Bucket> {
        let dir = dir
            .to_str()
            .ok_or_else(|| Error::Config(format!("{}: not UTF-8", dir.display())))?;
        Ok(Bucket {
            store: Arc::new(object_store::local::LocalFileSystem::new()),
            root: url::Url::parse("file:///").map_err(|e| Error::Config(e.to_string()))?,
            base: dir.trim_matches('/').to_string(),
            dir: Some(std::path::PathBuf::from(dir)),
        })
    }

    /// A path of the bucket, as an object path of the store.
    pub fn path(&self, path: &str) -> String {
        if self.base.is_empty() {
            path.to_string()
        } else {
            format!("{}/{path}", self.base)
        }
    }

    /// The store rooted at one table's folder, and the folder's URL.
    pub fn table(&self, path: &str) -> Result<(Arc<dyn ObjectStore>, url::Url)> {
        if let Some(dir) = &self.dir {
            // Delta's reader wants a table's folder to exist; S3 has none.
            let folder = dir.join(path);
            std::fs::create_dir_all(&folder)
                .map_err(|e| Error::Config(format!("creating {}: {e}", folder.display())))?;
        }
        let full = self.path(path);
        let url = self
            .root
            .join(&format!("{full}/"))
            .map_err(|e| Error::Config(format!("fleet table location {full}: {e}")))?;
        Ok((Arc::new(PrefixStore::new(self.store.clone(), full)), url))
    }
}

/// Refuses a store that does not honour create-only writes: there, two
/// sites committing the same log version would both succeed and one
/// site's commit would be lost. The probe lies in the site's own folder
/// of a table, where `fleet maintain`'s vacuum removes it.
pub async fn check_create_only(bucket: &Bucket, config: &FleetConfig) -> Result<()> {
    use object_store::{PutMode, PutOptions};
    let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
    let path = object_store::path::Path::from(bucket.path(&format!(
        "{}/site={}/_probe-{nanos:x}",
        config.table_path("readings"),
        config.site
    )));
    let bucket = &bucket.store;
    let create = || PutOptions::from(PutMode::Create);
    bucket.put_opts(&path, "1".into(), create()).await?;
    match bucket.put_opts(&path, "2".into(), create()).await {
        Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e.into()),
        Ok(_) => Err(Error::Config(format!(
            "the object store at {} overwrote an object on a create-only write (If-None-Match); \
             publishing there could lose commits",
            config.endpoint.as_deref().unwrap_or("AWS S3")
        ))),
    }
}
