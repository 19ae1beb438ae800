//! Webhooks: each event POSTed as its JSON object (the API's event
//! shape). 2xx delivers; 408, 429, 5xx and network errors are retried;
//! other 4xx answers are permanent.

use std::time::Duration;

use wattline_storage::{Due, Recipient};
use wattline_web::EventOut;

use super::Outcome;

const TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct Webhooks {
    client: reqwest::Client,
}

impl Webhooks {
    pub(crate) fn new() -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("wattline/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { client })
    }

    pub(crate) async fn post(&self, due: &Due) -> Outcome {
        let Recipient::Webhook(url) = &due.recipient else {
            return Outcome::Permanent("not a webhook".into());
        };
        let body = EventOut::from(&due.event);
        match self
            .client
            .post(url)
            .header("X-Wattline-Event-Id", due.event.event_id.to_string())
            .json(&body)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => Outcome::Delivered,
            Ok(r) => {
                let s = r.status();
                let msg = format!("{url} answered {s}");
                if s.is_server_error() || s.as_u16() == 408 || s.as_u16() == 429 {
                    Outcome::Transient(msg)
                } else {
                    Outcome::Permanent(msg)
                }
            }
            Err(e) if e.is_builder() => Outcome::Permanent(format!("{url}: {e}")),
            Err(e) => Outcome::Transient(format!("{url}: {e}")),
        }
    }
}
