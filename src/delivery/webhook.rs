//! Webhooks: each event POSTed as its JSON object (the API's event
//! shape). 2xx delivers; 408, 429, 5xx and network errors are retried;
//! other 4xx answers are permanent.
//!
//! A tenant chooses the URL, so unless `alerts.webhook_private` allows it,
//! a host that resolves to a loopback, private, link-local or otherwise
//! non-public address is refused (no POSTs into the appliance's own
//! network on a tenant's behalf). Logs name the URL without its path and
//! query, which often carry a secret.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use wattline_storage::{Due, Recipient};
use wattline_web::EventOut;

use super::Outcome;

const TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct Webhooks {
    client: reqwest::Client,
    allow_private: bool,
}

impl Webhooks {
    pub(crate) fn new(allow_private: bool) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("wattline/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            allow_private,
        })
    }

    pub(crate) async fn post(&self, due: &Due) -> Outcome {
        let Recipient::Webhook(url) = &due.recipient else {
            return Outcome::Permanent("not a webhook".into());
        };
        let Ok(parsed) = reqwest::Url::parse(url) else {
            return Outcome::Permanent("the webhook URL does not parse".into());
        };
        let shown = shown(&parsed);
        if !self.allow_private
            && let Err(outcome) = public_only(&parsed, &shown).await
        {
            return outcome;
        }
        let body = EventOut::from(&due.event);
        match self
            .client
            .post(parsed)
            .header("X-Wattline-Event-Id", due.event.event_id.to_string())
            .json(&body)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => Outcome::Delivered,
            Ok(r) => {
                let s = r.status();
                let msg = format!("{shown} answered {s}");
                if s.is_server_error() || s.as_u16() == 408 || s.as_u16() == 429 {
                    Outcome::Transient(msg)
                } else {
                    Outcome::Permanent(msg)
                }
            }
            Err(e) if e.is_builder() => Outcome::Permanent(format!("{shown}: bad request")),
            Err(e) if e.is_timeout() => Outcome::Transient(format!("{shown}: timed out")),
            Err(_) => Outcome::Transient(format!("{shown}: cannot connect")),
        }
    }
}

/// Scheme, host and port only.
fn shown(url: &reqwest::Url) -> String {
    match url.port() {
        Some(p) => format!("{}://{}:{p}", url.scheme(), url.host_str().unwrap_or("")),
        None => format!("{}://{}", url.scheme(), url.host_str().unwrap_or("")),
    }
}

/// Refuses a host any of whose addresses is not public.
async fn public_only(url: &reqwest::Url, shown: &str) -> Result<(), Outcome> {
    let host = url.host_str().unwrap_or("");
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs: Vec<IpAddr> = match host.trim_matches(['[', ']']).parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => match tokio::net::lookup_host((host, port)).await {
            Ok(a) => a.map(|a| a.ip()).collect(),
            Err(_) => return Err(Outcome::Transient(format!("{shown}: cannot resolve"))),
        },
    };
    if addrs.is_empty() || addrs.iter().any(|ip| !is_public(*ip)) {
        return Err(Outcome::Permanent(format!(
            "{shown} is not a public address (set alerts.webhook_private = true to allow it)"
        )));
    }
    Ok(())
}

fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => !is_private_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 198 && (18..20).contains(&b))
        || a >= 240)
}

fn is_private_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_pass() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:2800:220:1::1", "8.8.8.8"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }
}
