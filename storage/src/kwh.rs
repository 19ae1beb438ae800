//! Energy sums as people read them.
//!
//! Readings carry decimal kWh (a meter's resolution is a watt-hour or
//! finer), but a double holds only a binary approximation of most decimals,
//! and summing approximations piles up their errors: ten readings of 0.1
//! add up to 0.9999999999999999. Sums here are taken in whole milliwatt-
//! hours (1e-6 kWh, finer than any meter) as integers, which add exactly,
//! and turned back into the double nearest the decimal result, which
//! prints as that decimal (`1`, `699.566`). Exact for values with up to
//! six decimals and totals up to 9 TWh.

/// Milliwatt-hours per kWh.
const UNITS: f64 = 1e6;

fn to_units(kwh: f64) -> i64 {
    // `as` saturates; NaN (never stored) becomes 0.
    (kwh * UNITS).round() as i64
}

fn from_units(units: i64) -> f64 {
    units as f64 / UNITS
}

/// `a + b`, exact to a milliwatt-hour.
pub(crate) fn add_kwh(a: f64, b: f64) -> f64 {
    from_units(to_units(a).saturating_add(to_units(b)))
}

/// `kwh` rounded to the milliwatt-hour: a sum taken in binary elsewhere
/// (SQL's `sum`) back to the decimal it stands for.
pub fn round_kwh(kwh: f64) -> f64 {
    from_units(to_units(kwh))
}

/// The sum of `values`, exact to a milliwatt-hour.
pub fn kwh_sum(values: impl IntoIterator<Item = f64>) -> f64 {
    from_units(
        values
            .into_iter()
            .fold(0i64, |sum, v| sum.saturating_add(to_units(v))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_of_decimals_are_the_decimal_sums() {
        let naive: f64 = [0.1; 10].iter().sum();
        assert_ne!(naive, 1.0, "the binary noise this removes");
        assert_eq!(kwh_sum([0.1; 10]), 1.0);
        assert_eq!(add_kwh(0.1, 0.2), 0.3);
        // Three-decimal readings of a day: the sum prints as its decimal.
        let day = [233.187, 233.189, 233.19];
        assert_eq!(kwh_sum(day).to_string(), "699.566");
        assert_eq!(kwh_sum([-1.5, 0.25]), -1.25);
        assert_eq!(kwh_sum([]), 0.0);
        assert_eq!(round_kwh([0.1; 10].iter().sum()), 1.0);
        // A million readings of 0.001 kWh: exactly 1,000 kWh.
        assert_eq!(kwh_sum(std::iter::repeat_n(0.001, 1_000_000)), 1000.0);
    }
}
