//! The report as a PDF document (krilla): A4 pages with the building,
//! the period and its key figures, a chart of daily energy with the
//! forecast and its interval, the forecast's method and back-test, the
//! hourly profile and tables of days, anomalies and forecast days.
//!
//! The font (DejaVu Sans) is compiled in and embedded as a subset, so the
//! text shows in any viewer, also on a machine without fonts. Everything
//! is drawn as vectors.

use krilla::Document;
use krilla::color::rgb;
use krilla::geom::{PathBuilder, Point};
use krilla::num::NormalizedF32;
use krilla::page::PageSettings;
use krilla::paint::{Fill, Stroke};
use krilla::surface::Surface;
use krilla::text::{Font, TextDirection};

use super::content::Report;

static REGULAR: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
static BOLD: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-Bold.ttf");

const WIDTH: f32 = 595.0;
const HEIGHT: f32 = 842.0;
const MARGIN: f32 = 48.0;
const LINE: f32 = 14.0;

/// A colour as red, green, blue.
type Rgb = (u8, u8, u8);

const INK: Rgb = (33, 37, 41);
const MUTED: Rgb = (108, 117, 125);
const ACTUAL: Rgb = (31, 119, 180);
const FORECAST: Rgb = (230, 120, 20);
const GRID: Rgb = (222, 226, 230);

struct Fonts {
    regular: Font,
    bold: Font,
}

/// Text on a page, top to bottom.
struct Writer<'a, 'b> {
    surface: &'a mut Surface<'b>,
    fonts: &'a Fonts,
    y: f32,
}

impl Writer<'_, '_> {
    fn text_at(&mut self, x: f32, y: f32, size: f32, bold: bool, color: Rgb, text: &str) {
        self.surface.set_fill(Some(fill(color)));
        let font = if bold {
            self.fonts.bold.clone()
        } else {
            self.fonts.regular.clone()
        };
        self.surface.draw_text(
            Point::from_xy(x, y),
            font,
            size,
            text,
            false,
            TextDirection::Auto,
        );
    }

    /// A line of text at the left margin, moving down.
    fn line(&mut self, size: f32, bold: bool, color: Rgb, text: &str) {
        self.y += size * 1.35;
        self.text_at(MARGIN, self.y, size, bold, color, text);
    }

    /// Right-aligned text ending at `right`, by the advances of DejaVu
    /// Sans in its 2048 units per em (all digits alike; letters are taken
    /// as digits, close enough for column headings).
    fn number_at(&mut self, right: f32, y: f32, size: f32, text: &str) {
        let units: f32 = text
            .chars()
            .map(|c| match c {
                '.' | ',' => 651.0,
                '-' => 739.0,
                '%' => 1946.0,
                _ => 1303.0,
            })
            .sum();
        let width = units / 2048.0 * size;
        self.text_at(right - width, y, size, false, INK, text);
    }

    fn gap(&mut self, points: f32) {
        self.y += points;
    }
}

fn paint((r, g, b): Rgb) -> krilla::paint::Paint {
    rgb::Color::new(r, g, b).into()
}

fn fill(color: Rgb) -> Fill {
    Fill {
        paint: paint(color),
        ..Fill::default()
    }
}

fn stroke(color: Rgb, width: f32) -> Stroke {
    Stroke {
        paint: paint(color),
        width,
        ..Stroke::default()
    }
}

fn kwh(v: f64) -> String {
    format!("{v:.1}")
}

/// Renders the report; the error names what failed.
pub(super) fn render(report: &Report) -> Result<Vec<u8>, String> {
    let fonts = Fonts {
        regular: Font::new(REGULAR.into(), 0).ok_or("the compiled-in font does not load")?,
        bold: Font::new(BOLD.into(), 0).ok_or("the compiled-in bold font does not load")?,
    };
    let settings = PageSettings::from_wh(WIDTH, HEIGHT).ok_or("bad page size")?;
    let mut doc = Document::new();
    page(&mut doc, &settings, &fonts, |w| {
        summary(w, report);
        chart(w, report);
        forecast_method(w, report);
    });
    // Tables: as many pages as their rows need.
    let rows = table_rows(report);
    let per_page = ((HEIGHT - 2.0 * MARGIN - 2.0 * LINE) / LINE) as usize;
    for chunk in rows.chunks(per_page.max(1)) {
        page(&mut doc, &settings, &fonts, |w| {
            for row in chunk {
                row.draw(w);
            }
        });
    }
    doc.finish().map_err(|e| format!("{e:?}"))
}

/// One page, drawn by `draw` from the top margin down.
fn page(
    doc: &mut Document,
    settings: &PageSettings,
    fonts: &Fonts,
    draw: impl FnOnce(&mut Writer<'_, '_>),
) {
    let mut page = doc.start_page_with(settings.clone());
    let mut surface = page.surface();
    draw(&mut Writer {
        surface: &mut surface,
        fonts,
        y: MARGIN - 10.0,
    });
    surface.finish();
    page.finish();
}

fn summary(w: &mut Writer<'_, '_>, r: &Report) {
    w.line(
        18.0,
        true,
        INK,
        &format!("Energy report: {}", r.building_name),
    );
    let period = match (r.days.first(), r.days.last()) {
        (Some(first), Some(last)) => format!("{} to {} (local days)", first.day, last.day),
        _ => format!("{} to {}", r.start, r.end),
    };
    w.line(
        9.5,
        false,
        MUTED,
        &format!("Building {} in {}, {period}", r.building_id, r.timezone),
    );
    w.line(9.5, false, MUTED, &format!("Generated {}", r.generated_at));
    w.gap(10.0);
    let change = match r.previous_period.change_percent {
        Some(p) => format!("{:+.1}%", p),
        None => "n/a".to_owned(),
    };
    let mut facts = vec![
        ("Total", format!("{} kWh", kwh(r.total_kwh))),
        (
            "Previous period",
            format!(
                "{} kWh ({change}, {:+.1} kWh)",
                kwh(r.previous_period.total_kwh),
                r.previous_period.change_kwh
            ),
        ),
        (
            "Peak hour",
            match &r.peak {
                Some(p) => format!("{} kWh at {}", kwh(p.kwh), p.hour),
                None => "no data".to_owned(),
            },
        ),
        ("Readings", r.readings.to_string()),
    ];
    if let Some(d) = &r.peak_demand {
        facts.push((
            "Peak demand",
            format!("{:.1} kW (15-minute average) on {}", d.kw, d.day),
        ));
    }
    if let Some(c) = r.coverage {
        facts.push((
            "Data coverage",
            format!("{:.1}% of the readings expected", c * 100.0),
        ));
    }
    if let (Some(cost), Some(currency)) = (r.energy_cost, &r.currency) {
        facts.push(("Energy cost", format!("{cost:.2} {currency}")));
    }
    if let Some(per_m2) = r.kwh_per_m2 {
        facts.insert(1, ("Per floor area", format!("{per_m2:.2} kWh/m\u{b2}")));
    }
    for (label, value) in facts {
        w.y += LINE;
        let y = w.y;
        w.text_at(MARGIN, y, 10.5, true, INK, label);
        w.text_at(MARGIN + 120.0, y, 10.5, false, INK, &value);
    }
    w.gap(14.0);
}

/// Daily energy as bars, the forecast as a line inside its shaded 80%
/// interval.
fn chart(w: &mut Writer<'_, '_>, r: &Report) {
    w.line(12.0, true, INK, "Daily energy (kWh) and forecast");
    let top = w.y + 12.0;
    let height = 220.0;
    let left = MARGIN + 40.0;
    let right = WIDTH - MARGIN;
    let bottom = top + height;
    let n = r.days.len() + r.forecast.len();
    let max = r
        .days
        .iter()
        .map(|d| d.kwh)
        .chain(r.forecast.iter().map(|f| f.high))
        .fold(0.0f64, f64::max);
    let scale_max = nice_ceiling(max);
    let y_of = |v: f64| bottom - (v / scale_max * f64::from(height)) as f32;
    let slot = (right - left) / n.max(1) as f32;
    let x_of = |i: usize| left + slot * (i as f32 + 0.5);

    // Grid and y labels.
    let steps = grid_steps(scale_max);
    for k in 0..=steps {
        let v = scale_max * f64::from(k) / f64::from(steps);
        let y = y_of(v);
        w.surface.set_fill(None);
        w.surface.set_stroke(Some(stroke(GRID, 0.6)));
        if let Some(p) = line_path(&[(left, y), (right, y)]) {
            w.surface.draw_path(&p);
        }
        w.surface.set_stroke(None);
        w.number_at(left - 4.0, y + 3.0, 7.5, &format!("{v:.0}"));
    }
    // Bars of the actual days.
    w.surface.set_stroke(None);
    w.surface.set_fill(Some(fill(ACTUAL)));
    for (i, d) in r.days.iter().enumerate() {
        let x = x_of(i) - slot * 0.4;
        if let Some(p) = rect(x, y_of(d.kwh), slot * 0.8, bottom - y_of(d.kwh)) {
            w.surface.draw_path(&p);
        }
    }
    // Forecast: interval band, then the line.
    let first = r.days.len();
    if !r.forecast.is_empty() {
        let mut band: Vec<(f32, f32)> = r
            .forecast
            .iter()
            .enumerate()
            .map(|(i, f)| (x_of(first + i), y_of(f.high)))
            .collect();
        band.extend(
            r.forecast
                .iter()
                .enumerate()
                .rev()
                .map(|(i, f)| (x_of(first + i), y_of(f.low))),
        );
        w.surface.set_fill(Some(Fill {
            paint: paint(FORECAST),
            opacity: NormalizedF32::new(0.25).unwrap_or(NormalizedF32::ONE),
            ..Fill::default()
        }));
        if let Some(p) = polygon(&band) {
            w.surface.draw_path(&p);
        }
        w.surface.set_fill(None);
        w.surface.set_stroke(Some(stroke(FORECAST, 1.6)));
        let points: Vec<(f32, f32)> = r
            .forecast
            .iter()
            .enumerate()
            .map(|(i, f)| (x_of(first + i), y_of(f.kwh)))
            .collect();
        if let Some(p) = line_path(&points) {
            w.surface.draw_path(&p);
        }
        w.surface.set_stroke(None);
    }
    // Axis and x labels: first day, last actual day, last forecast day.
    w.surface.set_stroke(Some(stroke(INK, 0.8)));
    if let Some(p) = line_path(&[(left, bottom), (right, bottom)]) {
        w.surface.draw_path(&p);
    }
    w.surface.set_stroke(None);
    let label_y = bottom + 11.0;
    if let Some(d) = r.days.first() {
        w.text_at(left, label_y, 7.5, false, MUTED, &d.day);
    }
    if let Some(d) = r.days.last().filter(|_| r.days.len() > 8) {
        w.text_at(x_of(first - 1) - 40.0, label_y, 7.5, false, MUTED, &d.day);
    }
    if let Some(f) = r.forecast.last() {
        w.text_at(right - 40.0, label_y, 7.5, false, FORECAST, &f.day);
    }
    w.y = label_y + 6.0;
    w.y += LINE;
    let y = w.y;
    legend(w, MARGIN, y, ACTUAL, "actual");
    legend(w, MARGIN + 70.0, y, FORECAST, "forecast with 80% interval");
    w.gap(8.0);
}

fn legend(w: &mut Writer<'_, '_>, x: f32, y: f32, color: Rgb, text: &str) {
    w.surface.set_stroke(None);
    w.surface.set_fill(Some(fill(color)));
    if let Some(p) = rect(x, y - 7.0, 8.0, 8.0) {
        w.surface.draw_path(&p);
    }
    w.text_at(x + 12.0, y, 8.5, false, INK, text);
}

fn forecast_method(w: &mut Writer<'_, '_>, r: &Report) {
    let f = &r.forecast_model;
    w.gap(6.0);
    w.line(12.0, true, INK, "Forecast");
    w.line(9.5, false, INK, &format!("Method: {}", f.method));
    for part in wrap(&f.note, 95) {
        w.line(9.5, false, MUTED, &part);
    }
    if let Some(bt) = &f.backtest {
        let model = bt
            .model_error
            .map_or("n/a".to_owned(), |e| format!("{e:.2}"));
        w.line(
            9.5,
            false,
            INK,
            &format!(
                "Back-test over the last {} weeks ({}): model {model}, seasonal naive {:.2}",
                bt.weeks, bt.metric, bt.baseline_error
            ),
        );
    }
    w.gap(8.0);
    w.line(12.0, true, INK, "Average profile by local hour (kWh)");
    w.y += LINE;
    let y = w.y;
    w.text_at(MARGIN, y, 8.5, true, INK, "hour");
    let columns = 12;
    let col = (WIDTH - 2.0 * MARGIN - 50.0) / columns as f32;
    for half in 0..2 {
        let y = w.y + if half == 0 { 0.0 } else { 3.0 * LINE };
        for c in 0..columns {
            let h = half * columns + c;
            let x = MARGIN + 50.0 + col * (c as f32 + 1.0);
            w.number_at(x, y, 8.0, &format!("{h:02}"));
            let wd = r.profile.weekday[h].map_or("-".to_owned(), |v| format!("{v:.1}"));
            let we = r.profile.weekend[h].map_or("-".to_owned(), |v| format!("{v:.1}"));
            w.number_at(x, y + LINE, 8.0, &wd);
            w.number_at(x, y + 2.0 * LINE, 8.0, &we);
        }
        w.text_at(MARGIN, y + LINE, 8.5, false, MUTED, "weekday");
        w.text_at(MARGIN, y + 2.0 * LINE, 8.5, false, MUTED, "weekend");
    }
}

/// One line of the tables pages.
enum Row {
    Heading(String),
    Columns(Vec<String>),
    Text(String),
}

impl Row {
    fn draw(&self, w: &mut Writer<'_, '_>) {
        match self {
            Row::Heading(t) => {
                w.y += LINE * 0.6;
                w.line(11.0, true, INK, t);
            }
            Row::Text(t) => w.line(9.0, false, MUTED, t),
            Row::Columns(cells) => {
                w.y += LINE;
                let y = w.y;
                w.text_at(MARGIN, y, 9.0, false, INK, &cells[0]);
                for (i, c) in cells.iter().enumerate().skip(1) {
                    w.number_at(MARGIN + 90.0 + 90.0 * i as f32, y, 9.0, c);
                }
            }
        }
    }
}

fn table_rows(r: &Report) -> Vec<Row> {
    let mut rows = vec![Row::Heading("Daily totals".to_owned())];
    rows.push(Row::Columns(vec![
        "day".into(),
        "kWh".into(),
        "readings".into(),
    ]));
    rows.extend(
        r.days
            .iter()
            .map(|d| Row::Columns(vec![d.day.clone(), kwh(d.kwh), d.readings.to_string()])),
    );
    rows.push(Row::Heading("Anomalous days".to_owned()));
    if r.anomalies.is_empty() {
        rows.push(Row::Text(
            "None: every day was near the median of its weekday in the four weeks before."
                .to_owned(),
        ));
    } else {
        rows.push(Row::Columns(vec![
            "day".into(),
            "kWh".into(),
            "expected".into(),
            "deviation".into(),
        ]));
        rows.extend(r.anomalies.iter().map(|a| {
            Row::Columns(vec![
                a.day.clone(),
                kwh(a.kwh),
                kwh(a.expected_kwh),
                format!("{:+.0}%", a.deviation_percent),
            ])
        }));
    }
    rows.push(Row::Heading("Forecast".to_owned()));
    if r.forecast.is_empty() {
        rows.push(Row::Text(r.forecast_model.note.clone()));
    } else {
        rows.push(Row::Columns(vec![
            "day".into(),
            "kWh".into(),
            "80% low".into(),
            "80% high".into(),
        ]));
        rows.extend(
            r.forecast
                .iter()
                .map(|f| Row::Columns(vec![f.day.clone(), kwh(f.kwh), kwh(f.low), kwh(f.high)])),
        );
    }
    rows
}

/// Words of `text` in lines of at most `width` characters.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let last = lines.last_mut().expect("one line");
        if !last.is_empty() && last.len() + 1 + word.len() > width {
            lines.push(word.to_owned());
        } else {
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(word);
        }
    }
    lines
}

/// A round number (1, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 times a power of ten)
/// at least `v` (and above zero): the top of the chart's scale.
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * p)
}

/// Grid lines under a scale top from [`nice_ceiling`], so each falls on a
/// round number.
fn grid_steps(top: f64) -> u32 {
    let mantissa = top / 10f64.powf(top.log10().floor());
    match (mantissa * 10.0).round() as u32 {
        15 | 30 | 60 => 3,
        20 | 40 | 80 => 4,
        _ => 5,
    }
}

fn line_path(points: &[(f32, f32)]) -> Option<krilla::geom::Path> {
    let mut pb = PathBuilder::new();
    let (first, rest) = points.split_first()?;
    pb.move_to(first.0, first.1);
    for p in rest {
        pb.line_to(p.0, p.1);
    }
    pb.finish()
}

fn polygon(points: &[(f32, f32)]) -> Option<krilla::geom::Path> {
    let mut pb = PathBuilder::new();
    let (first, rest) = points.split_first()?;
    pb.move_to(first.0, first.1);
    for p in rest {
        pb.line_to(p.0, p.1);
    }
    pb.close();
    pb.finish()
}

fn rect(x: f32, y: f32, w: f32, h: f32) -> Option<krilla::geom::Path> {
    polygon(&[
        (x, y),
        (x + w, y),
        (x + w, y + h.max(0.0)),
        (x, y + h.max(0.0)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_end_on_round_numbers() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(7.3), 8.0);
        assert_eq!(nice_ceiling(120.0), 150.0);
        assert_eq!(nice_ceiling(250.0), 250.0);
        assert_eq!(nice_ceiling(4_800.0), 5_000.0);
        for top in [1.0, 150.0, 250.0, 400.0, 600.0, 8_000.0] {
            let step = top / f64::from(grid_steps(top));
            let m = step / 10f64.powf(step.log10().floor());
            assert!(
                [1.0, 2.0, 5.0].iter().any(|n| (m - n).abs() < 1e-9),
                "{top}: {step}"
            );
        }
    }

    #[test]
    fn notes_wrap_at_word_boundaries() {
        assert_eq!(wrap("aa bb cc", 5), ["aa bb", "cc"]);
    }
}
