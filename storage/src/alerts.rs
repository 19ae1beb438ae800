//! Alerts: rules per building, evaluated for every building in one pass,
//! and a durable outbox their events are delivered from.
//!
//! - [`model`]: rules, events and recipients, validated here.
//! - [`db`]: `alerts.redb` (rules mirrored in memory, episode state,
//!   events, outbox).
//! - [`episodes`]: from over-windows to fired, resolved and renotified.
//! - [`offline`]: episodes of silent meters.
//! - [`evaluate`]: the pass, reading window energy from the rollups.
//!
//! Delivery (mail, webhooks) is the daemon's: it takes due outbox rows
//! with [`AlertStore::due`] and records outcomes with
//! [`AlertStore::settle`].

mod db;
mod episodes;
mod evaluate;
mod model;
mod offline;
#[cfg(test)]
mod tests;

pub use db::{AlertStore, Delivery, Due};
pub use evaluate::{EvalSettings, PassReport};
pub use model::{
    AlertEvent, AlertRule, EventKind, NewRule, Recipient, RuleKind, RulePatch, Silence,
    is_mail_address,
};
