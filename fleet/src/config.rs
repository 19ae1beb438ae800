//! The `[fleet]` settings.

use std::fmt;
use std::time::Duration;

use crate::error::{Error, Result};

/// Where and as whom this appliance publishes.
#[derive(Clone)]
pub struct FleetConfig {
    /// This appliance's site id: the `site` partition of every table.
    pub site: String,
    pub bucket: String,
    /// Tables live at `s3://<bucket>/<prefix>/<table>/`.
    pub prefix: String,
    /// An S3-compatible endpoint (MinIO, Ceph, moto); `None` for AWS.
    pub endpoint: Option<String>,
    /// `None`: `AWS_REGION` or the default.
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Plain-HTTP endpoints are refused unless this is set.
    pub allow_http: bool,
    /// How often the change feed is looked at.
    pub interval: Duration,
    /// The feed id of another data directory that published this site
    /// last, to take the site over from: for an appliance that replaces
    /// one stopped for good.
    pub take_over: Option<u64>,
}

impl FleetConfig {
    /// Checks what the object store cannot: the site id becomes a
    /// partition value and a path segment, and the prefix a path.
    pub fn validate(&self) -> Result<()> {
        let ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !ok(&self.site) {
            return Err(Error::Config(format!(
                "fleet.site {:?}: 1 to 64 letters, digits, '-' or '_'",
                self.site
            )));
        }
        let bucket_ok = (3..=63).contains(&self.bucket.len())
            && self
                .bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !bucket_ok {
            return Err(Error::Config(format!(
                "fleet.bucket {:?}: 3 to 63 lowercase letters, digits, '-' or '.'",
                self.bucket
            )));
        }
        let prefix = self.prefix.trim_matches('/');
        let segment_ok = |p: &str| {
            !p.is_empty()
                && p != "."
                && p != ".."
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        if !prefix.is_empty() && !prefix.split('/').all(segment_ok) {
            return Err(Error::Config(format!(
                "fleet.prefix {:?}: folders of letters, digits, '-', '_' or '.' separated by '/'",
                self.prefix
            )));
        }
        if self.interval.is_zero() {
            return Err(Error::Config("fleet.interval: must be above zero".into()));
        }
        Ok(())
    }

    /// The table's folder within the bucket.
    pub fn table_path(&self, table: &str) -> String {
        let prefix = self.prefix.trim_matches('/');
        if prefix.is_empty() {
            table.to_string()
        } else {
            format!("{prefix}/{table}")
        }
    }
}

impl FleetConfig {
    /// A site publishing to a local folder standing in for the bucket
    /// (tests).
    #[cfg(test)]
    pub(crate) fn local_test(site: &str, take_over: Option<u64>) -> Self {
        FleetConfig {
            site: site.into(),
            bucket: "local".into(),
            prefix: "t".into(),
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
            allow_http: false,
            interval: Duration::from_secs(1),
            take_over,
        }
    }
}

/// Credentials are never printed.
impl fmt::Debug for FleetConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetConfig")
            .field("site", &self.site)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field(
                "access_key_id",
                &self.access_key_id.as_ref().map(|_| "<set>"),
            )
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<set>"),
            )
            .field("allow_http", &self.allow_http)
            .field("interval", &self.interval)
            .field("take_over", &self.take_over.map(|id| format!("{id:016x}")))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> FleetConfig {
        FleetConfig {
            site: "site-1".into(),
            bucket: "bkt".into(),
            prefix: "fleet/".into(),
            endpoint: None,
            region: None,
            access_key_id: Some("AKIDEXAMPLE".into()),
            secret_access_key: Some("very-secret".into()),
            allow_http: false,
            interval: Duration::from_secs(30),
            take_over: None,
        }
    }

    #[test]
    fn credentials_never_show_in_debug_output() {
        let shown = format!("{:?}", config());
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(!shown.contains("AKIDEXAMPLE"), "{shown}");
        assert!(shown.contains("site-1"));
    }

    #[test]
    fn a_site_id_that_is_no_path_segment_is_refused() {
        for bad in ["", "a/b", "../x", "site 1", "s=1", &"x".repeat(65)] {
            let c = FleetConfig {
                site: bad.to_string(),
                ..config()
            };
            assert!(c.validate().is_err(), "{bad:?}");
        }
        assert!(config().validate().is_ok());
        for bad in ["a/../b", "a//b", "a?b", "a#b", "a b"] {
            let c = FleetConfig {
                prefix: bad.into(),
                ..config()
            };
            assert!(c.validate().is_err(), "{bad:?}");
        }
        for bad in ["", "ab", "Upper", "a/b", "a?b"] {
            let c = FleetConfig {
                bucket: bad.into(),
                ..config()
            };
            assert!(c.validate().is_err(), "{bad:?}");
        }
        assert_eq!(config().table_path("readings"), "fleet/readings");
    }
}
