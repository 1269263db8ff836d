//! A small hand-written SVG line chart: panels stacked on one shared time
//! axis, each with its own y axis, grid, ticks and legend. Self-contained (no
//! fonts, scripts or styles from elsewhere), so a README or a browser shows it
//! as it is and the load tool needs no plotting dependency.

use std::fmt::Write;

/// One named line: (seconds, value) points in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// One panel: its lines share a y axis labelled `y_label`.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    pub title: String,
    pub y_label: String,
    pub lines: Vec<Line>,
}

/// A moment marked across every panel (a dashed vertical line).
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    pub at: f64,
    pub label: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub title: String,
    pub subtitle: String,
    pub x_label: String,
    pub panels: Vec<Panel>,
    pub markers: Vec<Marker>,
}

const WIDTH: f64 = 1000.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 220.0;
const TOP: f64 = 92.0;
const PANEL_HEIGHT: f64 = 210.0;
const PANEL_GAP: f64 = 46.0;
const BOTTOM: f64 = 56.0;
const LEGEND_CHARS: usize = 26;
/// Distinct on white and for the common kinds of colour blindness (Okabe–Ito).
const PALETTE: [&str; 8] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442",
];

/// The chart as an SVG document.
pub fn render(chart: &Chart) -> String {
    let height = TOP + chart.panels.len() as f64 * (PANEL_HEIGHT + PANEL_GAP) - PANEL_GAP + BOTTOM;
    let x_axis = Axis::new(max_of(chart, |(t, _)| t));
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    svg.push_str(r#"<rect width="100%" height="100%" fill="white"/>"#);
    text(&mut svg, LEFT, 26.0, "start", 18.0, &chart.title);
    text(&mut svg, LEFT, 48.0, "start", 12.0, &chart.subtitle);
    for (i, panel) in chart.panels.iter().enumerate() {
        let frame = Frame {
            top: TOP + i as f64 * (PANEL_HEIGHT + PANEL_GAP),
            x: x_axis,
            y: Axis::new(panel_max(panel)),
        };
        let last = i + 1 == chart.panels.len();
        draw_panel(&mut svg, &frame, panel, &chart.markers, last);
    }
    text(
        &mut svg,
        LEFT + plot_width() / 2.0,
        height - 14.0,
        "middle",
        12.0,
        &chart.x_label,
    );
    svg.push_str("</svg>\n");
    svg
}

/// Where one panel sits and the scales of its two axes.
struct Frame {
    top: f64,
    x: Axis,
    y: Axis,
}

impl Frame {
    fn px(&self, t: f64) -> f64 {
        LEFT + t / self.x.max * plot_width()
    }

    fn py(&self, v: f64) -> f64 {
        self.top + PANEL_HEIGHT - v / self.y.max * PANEL_HEIGHT
    }
}

fn plot_width() -> f64 {
    WIDTH - LEFT - RIGHT
}

fn draw_panel(svg: &mut String, frame: &Frame, panel: &Panel, markers: &[Marker], last: bool) {
    text(svg, LEFT, frame.top - 8.0, "start", 13.0, &panel.title);
    draw_grid(svg, frame, last);
    for (row, marker) in markers.iter().enumerate() {
        draw_marker(svg, frame, row, marker);
    }
    for (i, line) in panel.lines.iter().enumerate() {
        draw_line(svg, frame, line, PALETTE[i % PALETTE.len()]);
        draw_legend_entry(svg, frame, i, &line.name, PALETTE[i % PALETTE.len()]);
    }
    let (x, y) = (20.0, frame.top + PANEL_HEIGHT / 2.0);
    let _ = write!(
        svg,
        r#"<text x="{x}" y="{y}" text-anchor="middle" font-size="12" transform="rotate(-90 {x} {y})">{}</text>"#,
        escape(&panel.y_label)
    );
    let _ = write!(
        svg,
        r##"<rect x="{LEFT}" y="{}" width="{}" height="{PANEL_HEIGHT}" fill="none" stroke="#444"/>"##,
        frame.top,
        plot_width()
    );
}

/// Grid lines with their y tick labels; x tick labels under the last panel only.
fn draw_grid(svg: &mut String, frame: &Frame, last: bool) {
    for v in frame.y.ticks() {
        let y = frame.py(v);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/>"##,
            LEFT + plot_width()
        );
        text(svg, LEFT - 6.0, y + 4.0, "end", 11.0, &frame.y.label(v));
    }
    for t in frame.x.ticks() {
        let x = frame.px(t);
        let bottom = frame.top + PANEL_HEIGHT;
        let _ = write!(
            svg,
            r##"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{bottom}" stroke="#eee"/>"##,
            frame.top
        );
        if last {
            text(svg, x, bottom + 16.0, "middle", 11.0, &frame.x.label(t));
        }
    }
}

/// A dashed line at the marker's time; labels go one row apart, so two
/// markers close together stay readable.
fn draw_marker(svg: &mut String, frame: &Frame, row: usize, marker: &Marker) {
    let x = frame.px(marker.at);
    let _ = write!(
        svg,
        r##"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}" stroke="#888" stroke-dasharray="4 3"/>"##,
        frame.top,
        frame.top + PANEL_HEIGHT
    );
    let y = frame.top + 12.0 + row as f64 * 12.0;
    text(svg, x + 3.0, y, "start", 10.0, &marker.label);
}

fn draw_line(svg: &mut String, frame: &Frame, line: &Line, colour: &str) {
    let points: Vec<String> = line
        .points
        .iter()
        .map(|&(t, v)| format!("{:.1},{:.1}", frame.px(t), frame.py(v)))
        .collect();
    let _ = write!(
        svg,
        r#"<polyline class="series" fill="none" stroke="{colour}" stroke-width="1.8" stroke-linejoin="round" points="{}"><title>{}</title></polyline>"#,
        points.join(" "),
        escape(&line.name)
    );
}

fn draw_legend_entry(svg: &mut String, frame: &Frame, row: usize, name: &str, colour: &str) {
    let x = LEFT + plot_width() + 14.0;
    let y = frame.top + 10.0 + row as f64 * 18.0;
    let _ = write!(
        svg,
        r#"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{colour}" stroke-width="3"/>"#,
        x + 18.0
    );
    text(svg, x + 24.0, y + 4.0, "start", 11.0, &shorten(name));
}

fn text(svg: &mut String, x: f64, y: f64, anchor: &str, size: f64, content: &str) {
    let _ = write!(
        svg,
        r#"<text x="{x:.1}" y="{y:.1}" text-anchor="{anchor}" font-size="{size}">{}</text>"#,
        escape(content)
    );
}

/// Long answers (a transport error's text) cut to fit the legend column.
fn shorten(name: &str) -> String {
    if name.chars().count() <= LEGEND_CHARS {
        return name.to_owned();
    }
    let head: String = name.chars().take(LEGEND_CHARS - 1).collect();
    format!("{head}…")
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn max_of(chart: &Chart, pick: impl Fn((f64, f64)) -> f64) -> f64 {
    chart
        .panels
        .iter()
        .flat_map(|panel| &panel.lines)
        .flat_map(|line| line.points.iter().copied())
        .map(pick)
        .chain(chart.markers.iter().map(|marker| marker.at))
        .fold(0.0, f64::max)
}

fn panel_max(panel: &Panel) -> f64 {
    panel
        .lines
        .iter()
        .flat_map(|line| line.points.iter().map(|&(_, v)| v))
        .fold(0.0, f64::max)
}

/// An axis from 0 to a round number at or above the data's maximum, with
/// about eight ticks at 1, 2 or 5 × 10ⁿ.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Axis {
    max: f64,
    step: f64,
}

impl Axis {
    fn new(data_max: f64) -> Self {
        let data_max = if data_max > 0.0 { data_max } else { 1.0 };
        let rough = data_max / 8.0;
        let magnitude = 10f64.powf(rough.log10().floor());
        let step = [1.0, 2.0, 5.0, 10.0]
            .into_iter()
            .map(|m| m * magnitude)
            .find(|&step| step >= rough)
            .unwrap_or(10.0 * magnitude);
        Self {
            // The epsilon keeps 0.5 / 0.1 from rounding up to a needless extra step.
            max: (data_max / step - 1e-9).ceil() * step,
            step,
        }
    }

    fn ticks(&self) -> Vec<f64> {
        let n = (self.max / self.step).round() as usize;
        (0..=n).map(|i| i as f64 * self.step).collect()
    }

    fn label(&self, v: f64) -> String {
        let decimals = if self.step >= 1.0 {
            0
        } else {
            (-self.step.log10().floor()) as usize
        };
        format!("{v:.decimals$}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(name: &str, points: &[(f64, f64)]) -> Line {
        Line {
            name: name.to_owned(),
            points: points.to_vec(),
        }
    }

    fn chart() -> Chart {
        Chart {
            title: "a <sale>".to_owned(),
            subtitle: String::new(),
            x_label: "seconds".to_owned(),
            panels: vec![Panel {
                title: "requests/s".to_owned(),
                y_label: "req/s".to_owned(),
                lines: vec![
                    line("CREATED", &[(0.25, 40.0), (0.5, 0.0)]),
                    line("SOLD_OUT", &[(0.25, 10.0), (0.5, 300.0)]),
                ],
            }],
            markers: vec![Marker {
                at: 0.4,
                label: "burst ended".to_owned(),
            }],
        }
    }

    #[test]
    fn each_line_is_one_polyline_named_in_the_legend() {
        let svg = render(&chart());

        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains(">CREATED</text>"));
        assert!(svg.contains(">SOLD_OUT</text>"));
        assert!(svg.contains(">burst ended</text>"));
    }

    #[test]
    fn text_is_escaped() {
        let svg = render(&chart());

        assert!(svg.contains("a &lt;sale&gt;"));
        assert!(!svg.contains("<sale>"));
    }

    #[test]
    fn points_fall_inside_the_plot_area() {
        let svg = render(&chart());

        // SOLD_OUT peaks at 300 of an axis up to 300: the top of the panel.
        let peak = format!("{:.1},{:.1}", LEFT + 0.5 / 0.5 * plot_width(), TOP);
        assert!(svg.contains(&peak), "no point at {peak} in {svg}");
    }

    #[test]
    fn axes_end_on_round_numbers() {
        let scale = |data_max| {
            let axis = Axis::new(data_max);
            (axis.max, axis.step)
        };
        assert_eq!(scale(300.0), (300.0, 50.0));
        assert_eq!(scale(7.3), (8.0, 1.0));
        assert_eq!(scale(0.0), (1.0, 0.2));
        assert_eq!(Axis::new(0.0).label(0.4), "0.4");
        assert_eq!(Axis::new(1234.0).ticks().last(), Some(&1400.0));
    }

    #[test]
    fn long_legend_names_are_shortened() {
        let name = "transport: error sending request for url";
        assert_eq!(shorten(name).chars().count(), LEGEND_CHARS);
        assert_eq!(shorten("CREATED"), "CREATED");
    }
}
