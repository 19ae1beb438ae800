//! Time-of-use tariffs: what a kWh costs at a local weekday and time, and
//! what a month's peak demand costs.
//!
//! A tariff belongs to a tenant and applies to all its buildings, or to
//! one building (which then ignores the tenant's). It takes effect on a
//! local date and holds until the next tariff of the same scope takes
//! effect. Periods name weekdays and a local time span in quarter hours
//! (`07:00`-`22:00`, `to` may be `24:00`); times no period covers cost the
//! base `price_per_kwh`. Periods of a tariff may not overlap, so every
//! quarter hour has exactly one price. All of a tenant's tariffs share one
//! currency, so sums of costs mean something.

use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike, Weekday};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ids::{BuildingId, TenantId};

/// One tariff, as stored and shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tariff {
    pub id: String,
    pub tenant_id: TenantId,
    /// Only this building; `None`: every building of the tenant without
    /// a tariff of its own.
    pub building_id: Option<BuildingId>,
    /// ISO 4217 code, e.g. `EUR`.
    pub currency: String,
    /// First local day it applies (`YYYY-MM-DD`).
    #[serde(with = "date_text")]
    pub effective_from: NaiveDate,
    /// Price outside every period.
    pub price_per_kwh: f64,
    #[serde(default)]
    pub periods: Vec<Period>,
    /// Charged per kW of a month's peak demand.
    #[serde(default)]
    pub demand_charge_per_kw: Option<f64>,
}

/// A date as `YYYY-MM-DD` (chrono's serde support is not built here).
mod date_text {
    use chrono::NaiveDate;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &NaiveDate, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&d.format("%Y-%m-%d"))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveDate, D::Error> {
        let text = String::deserialize(d)?;
        NaiveDate::parse_from_str(&text, "%Y-%m-%d")
            .map_err(|_| serde::de::Error::custom(format!("{text:?} is not a date YYYY-MM-DD")))
    }
}

/// A span of local time on some weekdays with its own price.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Period {
    /// `mon` ... `sun`.
    pub days: Vec<Day>,
    /// `HH:MM`, a multiple of 15 minutes.
    pub from: String,
    /// `HH:MM` after `from`, at most `24:00`.
    pub to: String,
    pub price_per_kwh: f64,
}

/// A weekday, by its three-letter English name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Day {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Day {
    fn of(w: Weekday) -> Day {
        match w {
            Weekday::Mon => Day::Mon,
            Weekday::Tue => Day::Tue,
            Weekday::Wed => Day::Wed,
            Weekday::Thu => Day::Thu,
            Weekday::Fri => Day::Fri,
            Weekday::Sat => Day::Sat,
            Weekday::Sun => Day::Sun,
        }
    }
}

/// The catalog key of tariff `id` of `tenant`.
pub fn tariff_key(tenant: &str, id: &str) -> String {
    format!("{tenant}/{id}")
}

/// Minutes after local midnight of `HH:MM`, if it is a quarter hour
/// between 00:00 and 24:00.
fn minutes(text: &str) -> Option<u32> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 || !(h.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    let total = h * 60 + m;
    (m < 60 && total <= 24 * 60 && total % 15 == 0).then_some(total)
}

fn price_ok(p: f64) -> bool {
    p.is_finite() && (-1e6..=1e6).contains(&p)
}

impl Tariff {
    /// Its key in the catalog: ids are the tenant's own, so two tenants
    /// may use the same one without learning of each other.
    pub fn key(&self) -> String {
        tariff_key(self.tenant_id.as_str(), &self.id)
    }

    /// Refuses what cannot be meant: a bad currency code, prices that are
    /// not numbers, times off the quarter hour, empty or overlapping periods.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidArgument(m));
        if self.currency.len() != 3 || !self.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return bad("currency must be an ISO 4217 code such as EUR".into());
        }
        if !price_ok(self.price_per_kwh) {
            return bad("price_per_kwh must be a number".into());
        }
        if let Some(c) = self.demand_charge_per_kw
            && !(price_ok(c) && c >= 0.0)
        {
            return bad("demand_charge_per_kw must be a number of at least 0".into());
        }
        if self.periods.len() > 64 {
            return bad("a tariff has at most 64 periods".into());
        }
        let mut spans: Vec<(Day, u32, u32)> = Vec::new();
        for (i, p) in self.periods.iter().enumerate() {
            let (Some(from), Some(to)) = (minutes(&p.from), minutes(&p.to)) else {
                return bad(format!(
                    "periods[{i}]: from and to must be HH:MM on the quarter hour, 00:00 to 24:00"
                ));
            };
            if from >= to {
                return bad(format!(
                    "periods[{i}]: to must be after from (split a span over midnight in two)"
                ));
            }
            if p.days.is_empty() {
                return bad(format!("periods[{i}]: days must name at least one weekday"));
            }
            if !price_ok(p.price_per_kwh) {
                return bad(format!("periods[{i}]: price_per_kwh must be a number"));
            }
            for &d in &p.days {
                if spans
                    .iter()
                    .any(|&(od, of, ot)| od == d && from < ot && of < to)
                {
                    return bad(format!("periods[{i}] overlaps an earlier period"));
                }
                spans.push((d, from, to));
            }
        }
        Ok(())
    }

    /// The price of a kWh at local time `at`.
    pub fn price_at(&self, at: NaiveDateTime) -> f64 {
        let day = Day::of(at.weekday());
        let minute = at.hour() * 60 + at.minute();
        self.periods
            .iter()
            .find(|p| {
                p.days.contains(&day)
                    && minutes(&p.from).is_some_and(|f| f <= minute)
                    && minutes(&p.to).is_some_and(|t| minute < t)
            })
            .map_or(self.price_per_kwh, |p| p.price_per_kwh)
    }
}

/// The tariff in effect for `building` of `tenant` on local day `day`
/// among `tariffs`: the building's own latest one effective by then, else
/// the tenant's.
pub(crate) fn tariff_for<'a>(
    tariffs: impl Iterator<Item = &'a Tariff> + Clone,
    tenant: &str,
    building: &str,
    day: NaiveDate,
) -> Option<&'a Tariff> {
    let latest = |own: bool| {
        tariffs
            .clone()
            .filter(|t| t.tenant_id.as_str() == tenant && t.effective_from <= day)
            .filter(|t| match &t.building_id {
                Some(b) => own && b.as_str() == building,
                None => !own,
            })
            .max_by_key(|t| t.effective_from)
    };
    latest(true).or_else(|| latest(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tariff() -> Tariff {
        Tariff {
            id: "t1".into(),
            tenant_id: TenantId::parse("t").unwrap(),
            building_id: None,
            currency: "EUR".into(),
            effective_from: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            price_per_kwh: 0.2,
            periods: vec![Period {
                days: vec![Day::Mon, Day::Tue, Day::Wed, Day::Thu, Day::Fri],
                from: "07:00".into(),
                to: "22:00".into(),
                price_per_kwh: 0.3,
            }],
            demand_charge_per_kw: Some(10.0),
        }
    }

    fn at(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
    }

    #[test]
    fn prices_follow_weekday_and_time() {
        let t = tariff();
        assert!(t.validate().is_ok());
        // 2026-12-01 is a Tuesday.
        assert_eq!(t.price_at(at("2026-12-01 06:45")), 0.2);
        assert_eq!(t.price_at(at("2026-12-01 07:00")), 0.3);
        assert_eq!(t.price_at(at("2026-12-01 21:45")), 0.3);
        assert_eq!(t.price_at(at("2026-12-01 22:00")), 0.2);
        assert_eq!(t.price_at(at("2026-12-05 12:00")), 0.2, "a Saturday");
    }

    #[test]
    fn bad_tariffs_are_refused() {
        let mut t = tariff();
        t.currency = "euro".into();
        assert!(t.validate().is_err());
        let mut t = tariff();
        t.periods[0].from = "07:10".into();
        assert!(t.validate().is_err());
        let mut t = tariff();
        t.periods[0].to = "06:00".into();
        assert!(t.validate().is_err());
        for bad in ["+7:00", "7:00", "24:15", "-1:00", "07:60", "０7:00"] {
            let mut t = tariff();
            t.periods[0].from = bad.into();
            assert!(t.validate().is_err(), "{bad}");
        }
        let mut t = tariff();
        let mut overlap = t.periods[0].clone();
        overlap.days = vec![Day::Fri];
        overlap.from = "21:00".into();
        overlap.to = "24:00".into();
        t.periods.push(overlap);
        assert!(t.validate().is_err());
        let mut t = tariff();
        t.price_per_kwh = f64::NAN;
        assert!(t.validate().is_err());
    }

    #[test]
    fn the_latest_effective_tariff_applies_and_a_building_s_own_wins() {
        let old = tariff();
        let mut new = tariff();
        new.id = "t2".into();
        new.effective_from = NaiveDate::from_ymd_opt(2026, 7, 1).unwrap();
        let mut own = tariff();
        own.id = "t3".into();
        own.building_id = Some(BuildingId::parse("b2").unwrap());
        let all = [old, new, own];
        let day = |m| NaiveDate::from_ymd_opt(2026, m, 15).unwrap();
        let pick = |b: &str, m| tariff_for(all.iter(), "t", b, day(m)).map(|t| t.id.as_str());
        assert_eq!(pick("b1", 3), Some("t1"));
        assert_eq!(pick("b1", 8), Some("t2"));
        assert_eq!(pick("b2", 8), Some("t3"));
        assert_eq!(tariff_for(all.iter(), "other", "b1", day(8)), None);
        assert_eq!(
            tariff_for(
                all.iter(),
                "t",
                "b1",
                NaiveDate::from_ymd_opt(2025, 1, 1).unwrap()
            ),
            None
        );
    }
}
