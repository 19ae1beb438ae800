//! The `[fleet]` section and the publisher's task (`fleet` feature): see
//! the `wattline-fleet` crate. Without the feature a `[fleet]` section is
//! refused rather than ignored, so no appliance silently publishes nothing.

use anyhow::{Result, bail};
use serde::Deserialize;

/// The section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(feature = "fleet"), allow(dead_code))]
pub(crate) struct RawFleet {
    site: Option<String>,
    bucket: Option<String>,
    prefix: Option<String>,
    endpoint: Option<String>,
    region: Option<String>,
    access_key_id: Option<String>,
    /// Better given as `WATTLINE_FLEET_SECRET_ACCESS_KEY` (the systemd
    /// unit's environment file) than in the config file.
    secret_access_key: Option<String>,
    allow_http: Option<bool>,
    interval: Option<String>,
    /// The feed id (16 hex digits) of the data directory this appliance
    /// takes the site over from.
    take_over: Option<String>,
}

#[cfg(feature = "fleet")]
pub(crate) type FleetSettings = wattline_fleet::FleetConfig;
/// Never built without the feature.
#[cfg(not(feature = "fleet"))]
pub(crate) type FleetSettings = std::convert::Infallible;

/// Validated settings, or `None` when the appliance does not publish.
pub(crate) fn resolve(raw: Option<RawFleet>) -> Result<Option<FleetSettings>> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    #[cfg(not(feature = "fleet"))]
    {
        let _ = raw;
        bail!(
            "fleet: this wattline was built without fleet publishing (cargo build --features fleet)"
        )
    }
    #[cfg(feature = "fleet")]
    {
        let required = |key: &str, v: Option<String>| match v {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(anyhow::anyhow!("fleet.{key}: required")),
        };
        let secret = raw
            .secret_access_key
            .or_else(|| std::env::var("WATTLINE_FLEET_SECRET_ACCESS_KEY").ok());
        let interval = raw.interval.unwrap_or_else(|| "5m".into());
        let config = wattline_fleet::FleetConfig {
            site: required("site", raw.site)?,
            bucket: required("bucket", raw.bucket)?,
            prefix: raw.prefix.unwrap_or_default(),
            endpoint: raw.endpoint,
            region: raw.region,
            access_key_id: raw.access_key_id,
            secret_access_key: secret,
            allow_http: raw.allow_http.unwrap_or(false),
            interval: crate::config::parse_duration(&interval)
                .map_err(|e| anyhow::anyhow!("fleet.interval: {e}"))?,
            take_over: raw
                .take_over
                .map(|id| {
                    u64::from_str_radix(id.trim(), 16).map_err(|_| {
                        anyhow::anyhow!(
                            "fleet.take_over: {id:?} is not a feed id (the 16 hex digits a refusal names)"
                        )
                    })
                })
                .transpose()?,
        };
        if let Err(e) = config.validate() {
            bail!("{e}");
        }
        Ok(Some(config))
    }
}

#[cfg(feature = "fleet")]
mod run {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::watch;
    use wattline_fleet::datasets::Retention;
    use wattline_fleet::{FleetConfig, Publisher};
    use wattline_storage::ReadingStore;

    /// Publishes until `stop`. The tables are opened (or created) first,
    /// tried again with a growing pause while the object store cannot be
    /// reached: the appliance serves meanwhile.
    pub(crate) fn spawn(
        config: FleetConfig,
        store: Arc<ReadingStore>,
        retention: Retention,
        mut stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut pause = Duration::from_secs(2);
            loop {
                match Publisher::open(config.clone(), store.clone(), retention).await {
                    Ok(publisher) => return publisher.run(stop).await,
                    Err(e) => {
                        metrics::counter!("wattline_fleet_failures_total").increment(1);
                        tracing::warn!(error = %e, retry_in_s = pause.as_secs(), "fleet: cannot open the tables");
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = stop.changed() => return,
                }
                pause = (pause * 2).min(Duration::from_secs(120));
            }
        })
    }

    /// Below this, a full vacuum could delete files an appliance has
    /// uploaded and is about to commit.
    const MIN_RETENTION: Duration = Duration::from_secs(3600);

    /// `wattline fleet maintain`.
    pub(crate) fn maintain(
        config: &FleetConfig,
        retention: Duration,
        allow_short: bool,
    ) -> anyhow::Result<()> {
        if retention < MIN_RETENTION && !allow_short {
            anyhow::bail!(
                "--retention below 1h could delete files appliances are committing; \
                 add --allow-short-retention only when no appliance publishes"
            );
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let done = rt.block_on(wattline_fleet::maintain::maintain(config, retention))?;
        for t in done {
            println!(
                "{}: {} site months compacted, checkpoint at version {}, {} unreferenced files deleted",
                t.table, t.compacted, t.version, t.files_deleted
            );
        }
        Ok(())
    }
}

#[cfg(feature = "fleet")]
pub(crate) use run::{maintain, spawn};
