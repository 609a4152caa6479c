//! Small SVG charts drawn on the server: lines (performance, reliability) and stacked bars
//! (rewards). No script, no dependency: a chart is a string of SVG that scales to its box.

use std::fmt::Write;

use super::html::escape;

/// The drawing box (viewBox units); the SVG scales to the width of its container.
const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;

/// One line of a line chart.
#[derive(Clone, Debug)]
pub struct Line {
    /// Its name, in the legend.
    pub name: String,
    /// Its CSS class (its colour).
    pub class: &'static str,
    /// `(x, y)` points, in increasing x.
    pub points: Vec<(f64, f64)>,
}

/// One series of a stacked bar chart.
#[derive(Clone, Debug)]
pub struct Bars {
    /// Its name, in the legend.
    pub name: String,
    /// Its CSS class.
    pub class: &'static str,
    /// One value per x label.
    pub values: Vec<f64>,
}

/// How the y axis reads.
#[derive(Clone, Copy, Debug)]
pub struct Scale {
    /// The bottom of the axis.
    pub min: f64,
    /// The top (if the data goes higher, the data's top).
    pub max: f64,
    /// How a value is written on the axis.
    pub label: fn(f64) -> String,
}

/// A line chart titled `title`; x values label the x axis (epochs).
pub fn line_chart(title: &str, lines: &[Line], scale: Scale) -> String {
    let xs = lines
        .iter()
        .flat_map(|line| line.points.iter().map(|p| p.0));
    let (x_min, x_max) = bounds(xs).unwrap_or((0.0, 1.0));
    let top = lines
        .iter()
        .flat_map(|line| line.points.iter().map(|p| p.1))
        .fold(scale.max, f64::max);
    let frame = Frame::new(x_min, x_max, scale.min, top);
    let mut svg = open(title);
    frame.axes(&mut svg, scale, x_min, x_max);
    for line in lines {
        if line.points.is_empty() {
            continue;
        }
        let points: Vec<String> = line
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", frame.x(x), frame.y(y)))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline class="{}" fill="none" points="{}"><title>{}</title></polyline>"#,
            line.class,
            points.join(" "),
            escape(&line.name)
        );
        for &(x, y) in &line.points {
            let _ = write!(
                svg,
                r#"<circle class="{}" cx="{:.1}" cy="{:.1}" r="2.5"><title>{} {}: {}</title></circle>"#,
                line.class,
                frame.x(x),
                frame.y(y),
                escape(&line.name),
                x,
                escape(&(scale.label)(y))
            );
        }
    }
    legend(
        &mut svg,
        lines.iter().map(|line| (line.name.as_str(), line.class)),
    );
    svg.push_str("</svg>");
    svg
}

/// A stacked bar chart titled `title`: one bar per x label, the series stacked.
pub fn bar_chart(title: &str, labels: &[u64], series: &[Bars], scale: Scale) -> String {
    let totals: Vec<f64> = (0..labels.len())
        .map(|index| {
            series
                .iter()
                .map(|bars| bars.values.get(index).copied().unwrap_or(0.0))
                .sum()
        })
        .collect();
    let top = totals.iter().copied().fold(scale.max, f64::max);
    let (x_min, x_max) = bounds(labels.iter().map(|&label| label as f64)).unwrap_or((0.0, 1.0));
    // a bar per label, centred on it, with half a slot of margin each side
    let frame = Frame::new(x_min - 0.5, x_max + 0.5, scale.min, top);
    let slot = (frame.x(x_min + 0.5) - frame.x(x_min - 0.5)).max(1.0);
    let width = (slot * 0.7).max(1.0);
    let mut svg = open(title);
    frame.axes(&mut svg, scale, x_min, x_max);
    for (index, &label) in labels.iter().enumerate() {
        let mut base = scale.min;
        for bars in series {
            let value = bars.values.get(index).copied().unwrap_or(0.0);
            if value <= 0.0 {
                continue;
            }
            let (y_top, y_bottom) = (frame.y(base + value), frame.y(base));
            let _ = write!(
                svg,
                r#"<rect class="{}" x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}"><title>{} {}: {}</title></rect>"#,
                bars.class,
                frame.x(label as f64) - width / 2.0,
                y_top,
                width,
                (y_bottom - y_top).max(0.5),
                escape(&bars.name),
                label,
                escape(&(scale.label)(value))
            );
            base += value;
        }
    }
    legend(
        &mut svg,
        series.iter().map(|bars| (bars.name.as_str(), bars.class)),
    );
    svg.push_str("</svg>");
    svg
}

fn open(title: &str) -> String {
    format!(
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{0}" xmlns="http://www.w3.org/2000/svg"><title>{0}</title>"#,
        escape(title)
    )
}

fn bounds(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.fold(None, |range, value| match range {
        None => Some((value, value)),
        Some((low, high)) => Some((low.min(value), high.max(value))),
    })
}

fn legend<'a>(svg: &mut String, entries: impl Iterator<Item = (&'a str, &'a str)>) {
    let mut x = LEFT + 8.0;
    for (name, class) in entries {
        let _ = write!(
            svg,
            r#"<rect class="{class}" x="{x:.1}" y="{:.1}" width="10" height="10"/><text class="legend" x="{:.1}" y="{:.1}">{}</text>"#,
            TOP + 2.0,
            x + 14.0,
            TOP + 11.0,
            escape(name)
        );
        x += 24.0 + 7.0 * name.chars().count() as f64;
    }
}

/// Maps data to the drawing box.
struct Frame {
    x_min: f64,
    x_span: f64,
    y_min: f64,
    y_span: f64,
}

impl Frame {
    fn new(x_min: f64, x_max: f64, y_min: f64, y_max: f64) -> Frame {
        Frame {
            x_min,
            x_span: if x_max > x_min { x_max - x_min } else { 1.0 },
            y_min,
            y_span: if y_max > y_min { y_max - y_min } else { 1.0 },
        }
    }

    fn x(&self, x: f64) -> f64 {
        // a single point sits in the middle
        let fraction = if self.x_span == 1.0 && x == self.x_min {
            0.5
        } else {
            (x - self.x_min) / self.x_span
        };
        LEFT + fraction.clamp(0.0, 1.0) * (WIDTH - LEFT - RIGHT)
    }

    fn y(&self, y: f64) -> f64 {
        let fraction = ((y - self.y_min) / self.y_span).clamp(0.0, 1.0);
        HEIGHT - BOTTOM - fraction * (HEIGHT - TOP - BOTTOM)
    }

    /// The axes, four y gridlines with labels, and x labels at the ends (and the middle).
    fn axes(&self, svg: &mut String, scale: Scale, x_first: f64, x_last: f64) {
        let (left, right) = (LEFT, WIDTH - RIGHT);
        let bottom = HEIGHT - BOTTOM;
        for step in 0..=4 {
            let value = self.y_min + self.y_span * f64::from(step) / 4.0;
            let y = self.y(value);
            let _ = write!(
                svg,
                r#"<line class="grid" x1="{left}" y1="{y:.1}" x2="{right}" y2="{y:.1}"/><text class="axis" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                left - 4.0,
                y + 4.0,
                escape(&(scale.label)(value))
            );
        }
        let _ = write!(
            svg,
            r#"<line class="axis-line" x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}"/>"#
        );
        let mut ticks = vec![x_first, x_last];
        let middle = ((x_first + x_last) / 2.0).round();
        if x_last - x_first >= 4.0 {
            ticks.push(middle);
        }
        ticks.dedup();
        for tick in ticks {
            let _ = write!(
                svg,
                r#"<text class="axis" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                self.x(tick),
                bottom + 16.0,
                tick
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn percent() -> Scale {
        Scale {
            min: 0.0,
            max: 100.0,
            label: |value| format!("{value:.0}%"),
        }
    }

    #[test]
    fn a_line_chart_draws_its_points() {
        let svg = line_chart(
            "performance <of> node",
            &[Line {
                name: "performance".into(),
                class: "s1",
                points: vec![(1.0, 95.0), (2.0, 80.0), (3.0, 100.0)],
            }],
            percent(),
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("performance &lt;of&gt; node"));
        let polyline = svg.split("<polyline").nth(1).unwrap();
        let points = polyline
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(points.split(' ').count(), 3);
        // 100 % is at the top of the plot, the first epoch at its left
        assert!(points.ends_with(&format!("{:.1}", TOP)));
        assert!(points.starts_with(&format!("{LEFT:.1},")));
    }

    #[test]
    fn a_bar_chart_stacks_its_series() {
        let svg = bar_chart(
            "rewards",
            &[4, 5],
            &[
                Bars {
                    name: "operator".into(),
                    class: "s1",
                    values: vec![10.0, 5.0],
                },
                Bars {
                    name: "delegators".into(),
                    class: "s2",
                    values: vec![5.0, 0.0],
                },
            ],
            Scale {
                min: 0.0,
                max: 0.0,
                label: |value| format!("{value}"),
            },
        );
        // three bars with a height (a zero value draws none), plus two legend squares
        assert_eq!(svg.matches("<rect").count(), 5);
        assert!(svg.contains("operator 4: 10"));
    }

    #[test]
    fn an_empty_chart_is_still_an_svg() {
        let svg = line_chart("nothing yet", &[], percent());
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
    }
}
