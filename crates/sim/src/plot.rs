//! Small dependency-free SVG line plots, for the simulator's results.
//!
//! ```
//! use umbra_sim::plot::{LinePlot, Series};
//!
//! let plot = LinePlot {
//!     title: "Top-1 accuracy".into(),
//!     x_label: "mean hop delay (s)".into(),
//!     y_label: "accuracy".into(),
//!     log_x: true,
//!     series: vec![Series {
//!         name: "no cover".into(),
//!         points: vec![(0.01, 0.98), (0.1, 0.7), (1.0, 0.2)],
//!         errors: Some(vec![(0.95, 1.0), (0.6, 0.8), (0.1, 0.3)]),
//!     }],
//! };
//! let svg: String = plot.to_svg();
//! assert!(svg.starts_with("<?xml"));
//! ```
//!
//! Points with a non-finite coordinate (or `x ≤ 0` on a log axis) are left out, so the
//! output never holds `NaN` or `inf`. Axes run from one round tick to another: steps of 1, 2
//! or 5 times a power of ten, or whole decades on a log axis.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// A plot of lines through points.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LinePlot {
    /// Shown above the plot.
    pub title: String,
    /// Under the x axis.
    pub x_label: String,
    /// Beside the y axis.
    pub y_label: String,
    /// A logarithmic x axis (points with `x ≤ 0` are left out).
    pub log_x: bool,
    /// The lines, each in its own colour and marker.
    pub series: Vec<Series>,
}

/// One line of a [`LinePlot`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Its name in the legend.
    pub name: String,
    /// `(x, y)`, drawn in this order.
    pub points: Vec<(f64, f64)>,
    /// Error bars: for each point, the `(low, high)` ends of its bar in y (e.g. a confidence
    /// interval). Points beyond the list, or with a non-finite end, have none.
    pub errors: Option<Vec<(f64, f64)>>,
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 400.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 480.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 345.0;

/// Okabe–Ito: distinct, also for colour-blind readers.
const COLOURS: [&str; 8] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442",
];

impl LinePlot {
    /// The plot as an SVG 1.1 document.
    pub fn to_svg(&self) -> String {
        let usable: Vec<Vec<(f64, f64)>> = self
            .series
            .iter()
            .map(|s| {
                s.points
                    .iter()
                    .copied()
                    .filter(|&(x, y)| self.usable_x(x) && y.is_finite())
                    .collect()
            })
            .collect();
        let xs = usable.iter().flatten().map(|&(x, _)| x);
        let ys = usable.iter().flatten().map(|&(_, y)| y).chain(
            self.series
                .iter()
                .filter_map(|s| s.errors.as_ref())
                .flatten()
                .flat_map(|&(lo, hi)| [lo, hi])
                .filter(|v| v.is_finite()),
        );
        let x_ticks = match min_max(xs) {
            Some((lo, hi)) if self.log_x => log_ticks(lo, hi),
            Some((lo, hi)) => linear_ticks(lo, hi, 6),
            None if self.log_x => log_ticks(1.0, 10.0),
            None => linear_ticks(0.0, 1.0, 6),
        };
        let (lo, hi) = min_max(ys).unwrap_or((0.0, 1.0));
        let y_ticks = linear_ticks(lo, hi, 6);
        let axes = Axes::new(&x_ticks, &y_ticks, self.log_x);

        let mut svg = String::new();
        let _ = writeln!(svg, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(
            svg,
            r#"<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#
        );
        // a long title is set smaller rather than cut off at the edges (about 0.55 em a
        // character in a sans-serif face)
        let chars = self.title.chars().count().max(1) as f64;
        let title_size = (15.0f64).min((WIDTH - 20.0) / (0.55 * chars)).max(8.0);
        let _ = writeln!(
            svg,
            r#"<text x="{:.2}" y="22" text-anchor="middle" font-size="{title_size:.1}">{}</text>"#,
            WIDTH / 2.0,
            escape(&self.title)
        );
        self.write_axes(&mut svg, &axes, &x_ticks, &y_ticks);
        for (i, (series, points)) in self.series.iter().zip(&usable).enumerate() {
            write_series(&mut svg, &axes, i, series, points, self.log_x);
        }
        self.write_legend(&mut svg);
        svg.push_str("</svg>\n");
        svg
    }

    fn usable_x(&self, x: f64) -> bool {
        x.is_finite() && (!self.log_x || x > 0.0)
    }

    fn write_axes(&self, svg: &mut String, axes: &Axes, x_ticks: &[f64], y_ticks: &[f64]) {
        svg.push_str("<g class=\"grid\" stroke=\"#e0e0e0\" stroke-width=\"1\">\n");
        for &x in x_ticks {
            let px = axes.x(x);
            let _ = writeln!(
                svg,
                r#"<line x1="{px:.2}" y1="{TOP}" x2="{px:.2}" y2="{BOTTOM}"/>"#
            );
        }
        for &y in y_ticks {
            let py = axes.y(y);
            let _ = writeln!(
                svg,
                r#"<line x1="{LEFT}" y1="{py:.2}" x2="{RIGHT}" y2="{py:.2}"/>"#
            );
        }
        svg.push_str("</g>\n<g class=\"axes\" stroke=\"black\" stroke-width=\"1\">\n");
        let _ = writeln!(
            svg,
            r#"<line x1="{LEFT}" y1="{BOTTOM}" x2="{RIGHT}" y2="{BOTTOM}"/>"#
        );
        let _ = writeln!(
            svg,
            r#"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{BOTTOM}"/>"#
        );
        for &x in x_ticks {
            let px = axes.x(x);
            let _ = writeln!(
                svg,
                r#"<line x1="{px:.2}" y1="{BOTTOM}" x2="{px:.2}" y2="{:.2}"/>"#,
                BOTTOM + 5.0
            );
        }
        for &y in y_ticks {
            let py = axes.y(y);
            let _ = writeln!(
                svg,
                r#"<line x1="{:.2}" y1="{py:.2}" x2="{LEFT}" y2="{py:.2}"/>"#,
                LEFT - 5.0
            );
        }
        svg.push_str("</g>\n<g class=\"labels\" fill=\"black\">\n");
        let x_labels = if self.log_x {
            x_ticks.iter().map(|&x| log_label(x)).collect()
        } else {
            linear_labels(x_ticks)
        };
        for (&x, label) in x_ticks.iter().zip(x_labels) {
            let _ = writeln!(
                svg,
                r#"<text class="tick" x="{:.2}" y="{:.2}" text-anchor="middle">{}</text>"#,
                axes.x(x),
                BOTTOM + 19.0,
                escape(&label)
            );
        }
        for (&y, label) in y_ticks.iter().zip(linear_labels(y_ticks)) {
            let _ = writeln!(
                svg,
                r#"<text class="tick" x="{:.2}" y="{:.2}" text-anchor="end">{}</text>"#,
                LEFT - 8.0,
                axes.y(y) + 4.0,
                escape(&label)
            );
        }
        let _ = writeln!(
            svg,
            r#"<text x="{:.2}" y="{:.2}" text-anchor="middle">{}</text>"#,
            (LEFT + RIGHT) / 2.0,
            HEIGHT - 12.0,
            escape(&self.x_label)
        );
        let (cx, cy) = (18.0, (TOP + BOTTOM) / 2.0);
        let _ = writeln!(
            svg,
            r#"<text x="{cx}" y="{cy:.2}" text-anchor="middle" transform="rotate(-90 {cx} {cy:.2})">{}</text>"#,
            escape(&self.y_label)
        );
        svg.push_str("</g>\n");
    }

    fn write_legend(&self, svg: &mut String) {
        svg.push_str("<g class=\"legend\">\n");
        for (i, series) in self.series.iter().enumerate() {
            let y = TOP + 10.0 + 20.0 * i as f64;
            let x = RIGHT + 20.0;
            let _ = writeln!(
                svg,
                r#"<line x1="{x}" y1="{y:.2}" x2="{:.2}" y2="{y:.2}" stroke="{}" stroke-width="2"{}/>"#,
                x + 30.0,
                colour(i),
                dash(i)
            );
            let c = colour(i);
            let _ = write!(svg, r#"<g fill="{c}" stroke="{c}">"#);
            svg.push_str(&marker(i, x + 15.0, y, "legend-marker"));
            svg.push_str("</g>\n");
            let _ = writeln!(
                svg,
                r#"<text x="{:.2}" y="{:.2}">{}</text>"#,
                x + 38.0,
                y + 4.0,
                escape(&series.name)
            );
        }
        svg.push_str("</g>\n");
    }
}

/// Maps data to the plot area.
struct Axes {
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
    log_x: bool,
}

impl Axes {
    fn new(x_ticks: &[f64], y_ticks: &[f64], log_x: bool) -> Self {
        let ends = |t: &[f64], lo: f64, hi: f64| match (t.first(), t.last()) {
            (Some(&a), Some(&b)) if b > a => (a, b),
            _ => (lo, hi),
        };
        let (x0, x1) = ends(x_ticks, if log_x { 1.0 } else { 0.0 }, 10.0);
        let (y0, y1) = ends(y_ticks, 0.0, 1.0);
        let (x0, x1) = if log_x {
            (x0.log10(), x1.log10())
        } else {
            (x0, x1)
        };
        Self {
            x0,
            x1,
            y0,
            y1,
            log_x,
        }
    }

    fn x(&self, x: f64) -> f64 {
        let x = if self.log_x { x.log10() } else { x };
        LEFT + (x - self.x0) / (self.x1 - self.x0) * (RIGHT - LEFT)
    }

    fn y(&self, y: f64) -> f64 {
        BOTTOM - (y - self.y0) / (self.y1 - self.y0) * (BOTTOM - TOP)
    }
}

fn write_series(
    svg: &mut String,
    axes: &Axes,
    i: usize,
    series: &Series,
    points: &[(f64, f64)],
    log_x: bool,
) {
    let c = colour(i);
    let _ = writeln!(svg, r#"<g class="series" stroke="{c}" fill="{c}">"#);
    if let Some(errors) = &series.errors {
        for (&(x, _), &(lo, hi)) in series.points.iter().zip(errors) {
            if !(x.is_finite() && (!log_x || x > 0.0) && lo.is_finite() && hi.is_finite()) {
                continue;
            }
            let (px, plo, phi) = (axes.x(x), axes.y(lo), axes.y(hi));
            let _ = writeln!(
                svg,
                r#"<path class="error" d="M{:.2} {plo:.2}H{:.2}M{px:.2} {plo:.2}V{phi:.2}M{:.2} {phi:.2}H{:.2}" fill="none" stroke-width="1"/>"#,
                px - 3.0,
                px + 3.0,
                px - 3.0,
                px + 3.0
            );
        }
    }
    if points.len() >= 2 {
        let coords: Vec<String> = points
            .iter()
            .map(|&(x, y)| format!("{:.2},{:.2}", axes.x(x), axes.y(y)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline class="line" points="{}" fill="none" stroke-width="2"{}/>"#,
            coords.join(" "),
            dash(i)
        );
    }
    for &(x, y) in points {
        svg.push_str(&marker(i, axes.x(x), axes.y(y), "point"));
    }
    svg.push_str("</g>\n");
}

fn colour(i: usize) -> &'static str {
    COLOURS.get(i % COLOURS.len()).copied().unwrap_or("#000000")
}

/// Solid for the first round of colours, dashed after, so a ninth line differs from the first.
fn dash(i: usize) -> &'static str {
    if (i / COLOURS.len()) % 2 == 1 {
        r#" stroke-dasharray="6 3""#
    } else {
        ""
    }
}

/// Marker `i` (circle, square, triangle, diamond, down triangle, cross, cycling) at
/// `(x, y)`, filled with the series' colour from its group.
fn marker(i: usize, x: f64, y: f64, class: &str) -> String {
    let r = 4.0;
    match i % 6 {
        0 => format!(r#"<circle class="{class}" cx="{x:.2}" cy="{y:.2}" r="{r}"/>"#),
        1 => format!(
            r#"<rect class="{class}" x="{:.2}" y="{:.2}" width="{}" height="{}"/>"#,
            x - r,
            y - r,
            2.0 * r,
            2.0 * r
        ),
        2 => format!(
            r#"<polygon class="{class}" points="{x:.2},{:.2} {:.2},{:.2} {:.2},{:.2}"/>"#,
            y - r,
            x + r,
            y + r,
            x - r,
            y + r
        ),
        3 => format!(
            r#"<polygon class="{class}" points="{x:.2},{:.2} {:.2},{y:.2} {x:.2},{:.2} {:.2},{y:.2}"/>"#,
            y - r,
            x + r,
            y + r,
            x - r
        ),
        4 => format!(
            r#"<polygon class="{class}" points="{x:.2},{:.2} {:.2},{:.2} {:.2},{:.2}"/>"#,
            y + r,
            x + r,
            y - r,
            x - r,
            y - r
        ),
        _ => format!(
            r#"<path class="{class}" d="M{:.2} {:.2}L{:.2} {:.2}M{:.2} {:.2}L{:.2} {:.2}" fill="none" stroke-width="2"/>"#,
            x - r,
            y - r,
            x + r,
            y + r,
            x - r,
            y + r,
            x + r,
            y - r
        ),
    }
    .replace("/>", "/>\n")
}

fn min_max(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

/// Round ticks covering `[min, max]`: about `target` steps of 1, 2 or 5 times a power of
/// ten (the one nearest `(max − min)/target` on a log scale), from the multiple of the step
/// at or below `min` to the one at or above `max`. An empty range is widened around its
/// value; non-finite input gives `[0, 1]`'s ticks.
pub fn linear_ticks(min: f64, max: f64, target: usize) -> Vec<f64> {
    if !(min.is_finite() && max.is_finite()) {
        return linear_ticks(0.0, 1.0, target);
    }
    let (min, max) = if min > max { (max, min) } else { (min, max) };
    let (min, max) = if max - min <= f64::EPSILON * max.abs().max(min.abs()) {
        let half = if min == 0.0 { 1.0 } else { min.abs() / 2.0 };
        (min - half, max + half)
    } else {
        (min, max)
    };
    let raw = (max - min) / target.max(1) as f64;
    let exponent = raw.log10().floor() as i32;
    let residual = raw / pow10(exponent);
    // nearest of 1, 2, 5, 10 on a log scale: the cut-offs are their geometric means
    let (mantissa, exponent) = if residual < 2f64.sqrt() {
        (1i64, exponent)
    } else if residual < 10f64.sqrt() {
        (2, exponent)
    } else if residual < 50f64.sqrt() {
        (5, exponent)
    } else {
        (1, exponent + 1)
    };
    let step = mantissa as f64 * pow10(exponent);
    let first = (min / step).floor() as i64;
    let last = (max / step).ceil() as i64;
    if !(step.is_finite() && step > 0.0) || last.saturating_sub(first) > 1000 {
        // ranges too small or too large for f64 to cut into steps
        return vec![min, max];
    }
    // k·m·10^e, with the power of ten applied last so the values are as round as they can be
    (first..=last)
        .map(|k| {
            let n = (k * mantissa) as f64;
            if exponent < 0 {
                n / pow10(-exponent)
            } else {
                n * pow10(exponent)
            }
        })
        .collect()
}

/// Whole decades covering `[min, max]` (both `> 0`), every one while there are at most eight
/// steps, else every second, fifth, … decade. Bad input gives `[1, 10]`.
pub fn log_ticks(min: f64, max: f64) -> Vec<f64> {
    if !(min.is_finite() && max.is_finite() && min > 0.0 && max > 0.0) {
        return vec![1.0, 10.0];
    }
    let (min, max) = if min > max { (max, min) } else { (min, max) };
    let lo = min.log10().floor() as i32;
    let mut hi = max.log10().ceil() as i32;
    if hi <= lo {
        hi = lo + 1;
    }
    let stride = (1..)
        .find(|s| (hi - lo + s - 1) / s <= 8)
        .unwrap_or(hi - lo);
    let steps = (hi - lo + stride - 1) / stride;
    (0..=steps).map(|i| pow10(lo + i * stride)).collect()
}

/// `10^e`, as exactly as `f64` allows.
fn pow10(e: i32) -> f64 {
    if e >= 0 {
        10f64.powi(e)
    } else {
        1.0 / 10f64.powi(-e)
    }
}

/// Labels for evenly spaced ticks: as many decimals as the step needs, and no `-0`.
fn linear_labels(ticks: &[f64]) -> Vec<String> {
    let step = match ticks {
        [a, b, ..] => (b - a).abs(),
        _ => 1.0,
    };
    let decimals = if step > 0.0 && step.is_finite() {
        (-(step.log10() + 1e-9).floor()).max(0.0) as usize
    } else {
        0
    };
    ticks
        .iter()
        .map(|&t| {
            let s = format!("{t:.decimals$}");
            if s.trim_start_matches('-')
                .chars()
                .all(|c| c == '0' || c == '.')
            {
                s.trim_start_matches('-').to_owned()
            } else {
                s
            }
        })
        .collect()
}

/// A decade's label: plain from 0.0001 to 100000, else `1e-7`, `1e9`.
fn log_label(t: f64) -> String {
    let e = t.log10().round() as i32;
    if (-4..=5).contains(&e) {
        let decimals = (-e).max(0) as usize;
        format!("{t:.decimals$}")
    } else {
        format!("1e{e}")
    }
}

/// `text` with XML's special characters escaped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // not allowed in XML 1.0 at all
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// A small well-formedness check: tags nest and close, attributes are quoted, `&` only
    /// starts an entity, one root. Returns how many elements of each name there are.
    fn elements(xml: &str) -> Result<BTreeMap<String, usize>, String> {
        let entity_ok = |s: &str| {
            s.match_indices('&').all(|(i, _)| {
                ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
                    .iter()
                    .any(|e| s[i..].starts_with(e))
            })
        };
        let mut counts = BTreeMap::new();
        let mut stack: Vec<String> = Vec::new();
        let mut roots = 0;
        let mut rest = xml.trim_start();
        if let Some(after) = rest.strip_prefix("<?xml") {
            let end = after.find("?>").ok_or("unclosed prolog")?;
            rest = &after[end + 2..];
        }
        while let Some(open) = rest.find('<') {
            let text = &rest[..open];
            if text.contains('>') || !entity_ok(text) {
                return Err(format!("bad text {text:?}"));
            }
            if stack.is_empty() && !text.trim().is_empty() {
                return Err(format!("text outside the root: {text:?}"));
            }
            rest = &rest[open + 1..];
            // the tag runs to the first '>' outside quotes
            let mut quote = None;
            let end = rest
                .char_indices()
                .find(|&(_, c)| match (quote, c) {
                    (None, '"' | '\'') => {
                        quote = Some(c);
                        false
                    }
                    (Some(q), c) if c == q => {
                        quote = None;
                        false
                    }
                    (None, '>') => true,
                    _ => false,
                })
                .map(|(i, _)| i)
                .ok_or("unclosed tag")?;
            let tag = &rest[..end];
            rest = &rest[end + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                if stack.pop().as_deref() != Some(name.trim()) {
                    return Err(format!("mismatched </{name}>"));
                }
                continue;
            }
            let (body, closed) = match tag.strip_suffix('/') {
                Some(body) => (body, true),
                None => (tag, false),
            };
            let name_end = body.find(char::is_whitespace).unwrap_or(body.len());
            let name = &body[..name_end];
            if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '-') {
                return Err(format!("bad element name {name:?}"));
            }
            // attributes: name="value" pairs, values without '<' or bare '&'
            let mut attrs = body[name_end..].trim();
            while !attrs.is_empty() {
                let eq = attrs
                    .find("=\"")
                    .ok_or(format!("bad attribute in {tag:?}"))?;
                let key = &attrs[..eq];
                if key.is_empty() || key.contains(char::is_whitespace) {
                    return Err(format!("bad attribute name {key:?}"));
                }
                let value_end = attrs[eq + 2..].find('"').ok_or("unclosed value")?;
                let value = &attrs[eq + 2..eq + 2 + value_end];
                if value.contains('<') || !entity_ok(value) {
                    return Err(format!("bad value {value:?}"));
                }
                attrs = attrs[eq + 2 + value_end + 1..].trim_start();
            }
            if stack.is_empty() {
                roots += 1;
            }
            *counts.entry(name.to_owned()).or_insert(0) += 1;
            if !closed {
                stack.push(name.to_owned());
            }
        }
        if !stack.is_empty() || !rest.trim().is_empty() || roots != 1 {
            return Err(format!("unclosed {stack:?} or {roots} roots"));
        }
        Ok(counts)
    }

    fn count(svg: &str, needle: &str) -> usize {
        svg.matches(needle).count()
    }

    fn plot() -> LinePlot {
        LinePlot {
            title: "Top-1 <accuracy> & \"chance\"".into(),
            x_label: "clients".into(),
            y_label: "accuracy".into(),
            log_x: false,
            series: vec![
                Series {
                    name: "no cover".into(),
                    points: vec![
                        (2.0, 1.0),
                        (4.0, 0.98),
                        (8.0, 0.97),
                        (16.0, 0.9),
                        (32.0, 0.8),
                    ],
                    errors: Some(vec![(0.9, 1.0), (0.9, 1.0), (0.88, 1.0), (0.8, 0.95)]),
                },
                Series {
                    name: "shaped".into(),
                    points: vec![
                        (2.0, 0.5),
                        (4.0, f64::NAN),
                        (f64::INFINITY, 0.1),
                        (32.0, 0.03),
                    ],
                    errors: None,
                },
                Series {
                    name: "one point".into(),
                    points: vec![(8.0, 0.125)],
                    errors: Some(vec![(f64::NAN, 0.2)]),
                },
            ],
        }
    }

    #[test]
    fn svg_is_well_formed_with_one_line_and_marker_per_point() {
        let svg = plot().to_svg();
        let counts = elements(&svg).unwrap();
        assert_eq!(counts.get("svg"), Some(&1));
        // a line per series with two usable points or more; a marker per usable point
        assert_eq!(count(&svg, "<polyline"), 2);
        assert_eq!(count(&svg, r#"class="point""#), 5 + 2 + 1);
        assert_eq!(count(&svg, r#"class="legend-marker""#), 3);
        // error bars only where both ends are finite and there is a point
        assert_eq!(count(&svg, r#"class="error""#), 4);
        assert_eq!(counts.get("polyline"), Some(&2));
        for bad in ["NaN", "inf", "Inf"] {
            assert!(!svg.contains(bad), "{bad} in the output");
        }
        assert!(svg.contains("Top-1 &lt;accuracy&gt; &amp; &quot;chance&quot;"));
        // distinct colours and markers
        assert!(svg.contains("#0072B2") && svg.contains("#D55E00") && svg.contains("#009E73"));
        assert!(svg.contains("<circle") && svg.contains("<rect class=\"point\""));
        assert!(svg.contains("<polygon class=\"point\""));
    }

    #[test]
    fn log_axis_leaves_out_nonpositive_x_and_uses_decades() {
        let mut p = plot();
        p.log_x = true;
        p.series[0].points[0].0 = 0.0;
        p.series[0].points[1].0 = -4.0;
        let svg = p.to_svg();
        elements(&svg).unwrap();
        assert_eq!(count(&svg, r#"class="point""#), 3 + 2 + 1);
        // x from 8 to 32: the decades 1, 10, 100
        for label in [">1<", ">10<", ">100<"] {
            assert!(svg.contains(label), "{label}");
        }
    }

    #[test]
    fn empty_plots_are_still_documents() {
        let svg = LinePlot::default().to_svg();
        elements(&svg).unwrap();
        assert_eq!(count(&svg, "<polyline"), 0);
        let nothing_usable = LinePlot {
            log_x: true,
            series: vec![Series {
                name: "x".into(),
                points: vec![(-1.0, 1.0), (f64::NAN, 2.0)],
                errors: None,
            }],
            ..LinePlot::default()
        };
        let svg = nothing_usable.to_svg();
        elements(&svg).unwrap();
        assert_eq!(count(&svg, r#"class="point""#), 0);
        // a checker that accepts broken XML would prove nothing
        assert!(elements("<svg><g></svg>").is_err());
        assert!(elements("<svg a=\"&\"/>").is_err());
        assert!(elements("<svg/><svg/>").is_err());
    }

    fn close(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| (x - y).abs() <= 1e-12 * y.abs().max(1.0))
    }

    #[test]
    fn linear_ticks_are_round() {
        let cases: [(f64, f64, &[f64]); 7] = [
            (0.0, 1.0, &[0.0, 0.2, 0.4, 0.6, 0.8, 1.0]),
            (0.0, 97.0, &[0.0, 20.0, 40.0, 60.0, 80.0, 100.0]),
            (-3.2, 7.9, &[-4.0, -2.0, 0.0, 2.0, 4.0, 6.0, 8.0]),
            (0.0013, 0.0092, &[0.0, 0.002, 0.004, 0.006, 0.008, 0.01]),
            (3.0, 3.0, &[1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5]),
            (0.0, 0.0, &[-1.0, -0.5, 0.0, 0.5, 1.0]),
            (
                120.0,
                4500.0,
                &[0.0, 1000.0, 2000.0, 3000.0, 4000.0, 5000.0],
            ),
        ];
        for (lo, hi, want) in cases {
            let got = linear_ticks(lo, hi, 5);
            assert!(close(&got, want), "{lo}..{hi}: {got:?}");
        }
        // exactly the decimal values, so labels print cleanly
        assert_eq!(linear_ticks(0.0, 1.0, 5)[3], 0.6);
        assert_eq!(
            linear_labels(&linear_ticks(-0.3, 0.3, 6)),
            ["-0.3", "-0.2", "-0.1", "0.0", "0.1", "0.2", "0.3"]
        );
        assert_eq!(linear_labels(&linear_ticks(0.0, 97.0, 5))[5], "100");
        assert_eq!(linear_labels(&[0.0, 1e-5, 2e-5])[1], "0.00001");
        assert!(close(
            &linear_ticks(f64::NAN, 1.0, 5),
            &linear_ticks(0.0, 1.0, 5)
        ));
        assert_eq!(linear_ticks(0.0, 1e-320, 5).len(), 2);
    }

    #[test]
    fn log_ticks_are_decades() {
        assert!(close(&log_ticks(1.0, 1000.0), &[1.0, 10.0, 100.0, 1000.0]));
        assert!(close(
            &log_ticks(0.5, 2e4),
            &[0.1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5]
        ));
        assert!(close(&log_ticks(3.0, 3.0), &[1.0, 10.0]));
        // 15 decades: every second one
        let wide = log_ticks(1e-3, 1e12);
        assert!(
            close(&wide, &[1e-3, 1e-1, 1e1, 1e3, 1e5, 1e7, 1e9, 1e11, 1e13]),
            "{wide:?}"
        );
        assert_eq!(log_ticks(-1.0, 10.0), [1.0, 10.0]);
        let labels: Vec<String> = [1e-7, 1e-3, 1.0, 1e5, 1e9]
            .iter()
            .map(|&t| log_label(t))
            .collect();
        assert_eq!(labels, ["1e-7", "0.001", "1", "100000", "1e9"]);
    }
}
