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

/// The store rooted at one table's folder.
pub fn table_store(bucket: &Arc<dyn ObjectStore>, path: &str) -> Arc<dyn ObjectStore> {
    Arc::new(PrefixStore::new(bucket.clone(), path))
}

/// Refuses a store that does not honour create-only writes: there, two
/// sites committing the same log version would both succeed and one
/// site's commit would be lost. The probe lies in the site's own folder
/// of a table, where `fleet maintain`'s vacuum removes it.
pub async fn check_create_only(bucket: &Arc<dyn ObjectStore>, config: &FleetConfig) -> Result<()> {
    use object_store::{PutMode, PutOptions};
    let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
    let path = object_store::path::Path::from(format!(
        "{}/site={}/_probe-{nanos:x}",
        config.table_path("readings"),
        config.site
    ));
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
