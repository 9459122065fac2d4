//! The bench's figures as SVG: [`bench_svg`] (key extraction, lookup and the whole path per
//! engine and tuple kind, with the share of packets that had no 5-tuple) and [`sweep_svg`]
//! (ns per lookup against rule count). Costs span four orders of magnitude (a linear scan of
//! 10k rules against a hash probe), so lookup and whole-path panels use a log axis and every
//! bar carries its value.

use super::BenchReport;
use super::sweep::SweepReport;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

/// Drawing a figure failed (typically: the file could not be written).
#[derive(Debug, thiserror::Error)]
#[error("drawing the figure: {0}")]
pub struct PlotError(String);

fn e<E: std::fmt::Display>(x: E) -> PlotError {
    PlotError(x.to_string())
}

/// The 3-tuple's colour in every figure.
const THREE: RGBColor = RGBColor(50, 110, 190);
/// The 5-tuple's colour in every figure.
const FIVE: RGBColor = RGBColor(225, 120, 40);

/// `3-tuple` or `5-tuple` for a row's `three` or `five`.
pub fn tuple_label(tuple: &str) -> &'static str {
    if tuple == "three" {
        "3-tuple"
    } else {
        "5-tuple"
    }
}

fn color(tuple: &str) -> RGBColor {
    if tuple == "three" { THREE } else { FIVE }
}

/// A value in ns as written on a bar: `3.4`, `27`, `26,113`.
pub fn ns_text(v: f64) -> String {
    if v < 10.0 {
        return format!("{v:.1}");
    }
    super::thousands(v.round() as u64)
}

struct Bar {
    /// Left and right edge, in group units (group `g` spans `g..g+1`).
    x: (f64, f64),
    value: f64,
    color: RGBColor,
}

/// One panel: bars with their values above them, labels under the x axis at the given
/// positions, a linear or log y axis.
fn panel(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    caption: &str,
    groups: usize,
    bars: &[Bar],
    labels: &[(f64, String)],
    log: bool,
) -> Result<(), PlotError> {
    let max = bars.iter().map(|b| b.value).fold(0.0, f64::max).max(1e-3);
    let min = bars
        .iter()
        .map(|b| b.value)
        .filter(|v| *v > 0.0)
        .fold(max, f64::min);
    let xr = 0f64..groups.max(1) as f64;
    let text = ("sans-serif", 13).into_font().color(&BLACK);
    let above = text.pos(Pos::new(HPos::Center, VPos::Bottom));
    let mut b = ChartBuilder::on(area);
    b.caption(caption, ("sans-serif", 15))
        .margin(8)
        .margin_bottom(34)
        .y_label_area_size(62);
    if log {
        let lo = 10f64.powf((min / 2.0).log10().floor());
        let hi = 10f64.powf((max * 4.0).log10().ceil());
        let mut c = b.build_cartesian_2d(xr, (lo..hi).log_scale()).map_err(e)?;
        c.configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_desc("ns (log scale)")
            .y_label_formatter(&|v| ns_text(*v))
            .draw()
            .map_err(e)?;
        for bar in bars {
            c.draw_series([Rectangle::new(
                [(bar.x.0, lo), (bar.x.1, bar.value.max(lo))],
                bar.color.filled(),
            )])
            .map_err(e)?;
            c.draw_series([Text::new(
                ns_text(bar.value),
                ((bar.x.0 + bar.x.1) / 2.0, bar.value.max(lo) * 1.12),
                above.clone(),
            )])
            .map_err(e)?;
        }
        under(root, labels, |x| c.backend_coord(&(x, lo)))
    } else {
        let hi = max * 1.25;
        let mut c = b.build_cartesian_2d(xr, 0f64..hi).map_err(e)?;
        c.configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_desc("ns")
            .y_label_formatter(&|v| ns_text(*v))
            .draw()
            .map_err(e)?;
        for bar in bars {
            c.draw_series([Rectangle::new(
                [(bar.x.0, 0.0), (bar.x.1, bar.value)],
                bar.color.filled(),
            )])
            .map_err(e)?;
            c.draw_series([Text::new(
                ns_text(bar.value),
                ((bar.x.0 + bar.x.1) / 2.0, bar.value + hi * 0.02),
                above.clone(),
            )])
            .map_err(e)?;
        }
        under(root, labels, |x| c.backend_coord(&(x, 0.0)))
    }
}

/// Labels under a panel's x axis (`at` gives the pixel of a point on the axis).
fn under(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    labels: &[(f64, String)],
    at: impl Fn(f64) -> (i32, i32),
) -> Result<(), PlotError> {
    let style = ("sans-serif", 14)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Top));
    for (x, l) in labels {
        let (px, py) = at(*x);
        root.draw(&Text::new(l.clone(), (px, py + 6), style.clone()))
            .map_err(e)?;
    }
    Ok(())
}

/// Two bars per group: the 3-tuple's left, the 5-tuple's right.
fn slot(group: usize, tuple: &str) -> (f64, f64) {
    let g = group as f64;
    if tuple == "three" {
        (g + 0.1, g + 0.48)
    } else {
        (g + 0.52, g + 0.9)
    }
}

/// The bench figure: key extraction per tuple kind (linear axis), lookup and whole path (key
/// extraction + lookup) per engine and tuple kind (log axes), side by side, each bar with its
/// value; under them the share of IPv6 packets without a 5-tuple, by reason.
pub fn bench_svg(r: &BenchReport, title: &str, path: &Path) -> Result<(), PlotError> {
    let root = SVGBackend::new(path, (1000, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(e)?;
    let (top, bottom) = root.split_vertically(500 - 64);
    let body = top.titled(title, ("sans-serif", 20)).map_err(e)?;
    let (left, rest) = body.split_horizontally(230);
    let (mid, right) = rest.split_horizontally(385);

    // Key extraction: one value per tuple kind (every engine of a kind shares it).
    let mut key_bars = Vec::new();
    let mut key_labels = Vec::new();
    for (i, tuple) in ["three", "five"].into_iter().enumerate() {
        if let Some(row) = r.engines.iter().find(|e| e.tuple == tuple) {
            key_bars.push(Bar {
                x: (i as f64 + 0.2, i as f64 + 0.8),
                value: row.key_ns,
                color: color(tuple),
            });
            key_labels.push((i as f64 + 0.5, tuple_label(tuple).to_string()));
        }
    }
    panel(
        &root,
        &left,
        "key extraction, ns/packet",
        2,
        &key_bars,
        &key_labels,
        false,
    )?;

    let mut names: Vec<&str> = Vec::new();
    for row in &r.engines {
        if !names.contains(&row.name.as_str()) {
            names.push(&row.name);
        }
    }
    let group = |name: &str| names.iter().position(|n| *n == name).unwrap_or(0);
    let labels: Vec<(f64, String)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (i as f64 + 0.5, n.to_string()))
        .collect();
    let bars = |value: fn(&super::EngineRow) -> f64| -> Vec<Bar> {
        r.engines
            .iter()
            .map(|row| Bar {
                x: slot(group(&row.name), row.tuple),
                value: value(row),
                color: color(row.tuple),
            })
            .collect()
    };
    panel(
        &root,
        &mid,
        "lookup, ns/key",
        names.len(),
        &bars(|row| row.lookup_ns),
        &labels,
        true,
    )?;
    panel(
        &root,
        &right,
        "whole path (key + lookup), ns/packet",
        names.len(),
        &bars(|row| row.key_ns + row.lookup_ns),
        &labels,
        true,
    )?;

    // Legend and availability.
    let font = ("sans-serif", 15).into_font().color(&BLACK);
    let mut x = 20;
    for tuple in ["three", "five"] {
        bottom
            .draw(&Rectangle::new(
                [(x, 8), (x + 14, 22)],
                color(tuple).filled(),
            ))
            .map_err(e)?;
        bottom
            .draw(&Text::new(tuple_label(tuple), (x + 20, 8), font.clone()))
            .map_err(e)?;
        x += 100;
    }
    let note = r.no_five_tuple.describe(r.ipv6);
    bottom
        .draw(&Text::new(note, (240, 8), font.clone()))
        .map_err(e)?;
    if r.no_five_tuple.packets > 0 {
        let more =
            "the 3-tuple classifies them; the 5-tuple bars are over the packets that have one";
        bottom.draw(&Text::new(more, (240, 30), font)).map_err(e)?;
    }
    root.present().map_err(e)?;
    Ok(())
}

/// Colours of the sweep's series, one per engine (3-tuple and 5-tuple told apart by marker and
/// line: solid for the 5-tuple, thin for the 3-tuple).
const PALETTE: [RGBColor; 6] = [
    RGBColor(200, 50, 40),
    RGBColor(40, 90, 200),
    RGBColor(40, 160, 100),
    RGBColor(150, 70, 170),
    RGBColor(220, 140, 30),
    RGBColor(90, 90, 90),
];

/// The lookup-vs-rules figure: ns per lookup against rule count, log-log, one series per
/// engine and tuple kind.
pub fn sweep_svg(r: &SweepReport, path: &Path) -> Result<(), PlotError> {
    let root = SVGBackend::new(path, (760, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(e)?;
    let ns = r.rows.iter().map(|x| x.lookup_ns).filter(|v| *v > 0.0);
    let (lo, hi) = ns.fold((f64::MAX, 1e-3f64), |(a, b), v| (a.min(v), b.max(v)));
    let lo = if lo == f64::MAX { 1.0 } else { lo };
    let (rmin, rmax) = r
        .rows
        .iter()
        .map(|x| x.rules as f64)
        .fold((f64::MAX, 1.0f64), |(a, b), v| (a.min(v), b.max(v)));
    let rmin = if rmin == f64::MAX { 1.0 } else { rmin };
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "ns per lookup vs rules (generated {}, seed {}, log-log)",
                r.shape, r.seed
            ),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(
            (rmin / 1.3..rmax * 1.3).log_scale(),
            (lo / 2.0..hi * 3.0).log_scale(),
        )
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("rules")
        .y_desc("ns / lookup")
        .x_label_formatter(&|v| ns_text(*v))
        .y_label_formatter(&|v| ns_text(*v))
        .draw()
        .map_err(e)?;
    let mut series: Vec<(String, &'static str)> = Vec::new();
    for row in &r.rows {
        if !series
            .iter()
            .any(|(n, t)| *n == row.engine && *t == row.tuple)
        {
            series.push((row.engine.clone(), row.tuple));
        }
    }
    let mut engines: Vec<&str> = Vec::new();
    for (n, _) in &series {
        if !engines.contains(&n.as_str()) {
            engines.push(n);
        }
    }
    for (name, tuple) in &series {
        let c = PALETTE[engines.iter().position(|n| n == name).unwrap_or(0) % PALETTE.len()];
        let pts: Vec<(f64, f64)> = r
            .rows
            .iter()
            .filter(|x| x.engine == *name && x.tuple == *tuple)
            .map(|x| (x.rules as f64, x.lookup_ns.max(lo / 2.0)))
            .collect();
        let width = if *tuple == "five" { 3 } else { 1 };
        let three = *tuple == "three";
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(width)))
            .map_err(e)?
            .label(format!("{name} {}", tuple_label(tuple)))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(width))
            });
        if three {
            chart
                .draw_series(
                    pts.into_iter()
                        .map(|p| TriangleMarker::new(p, 5, c.filled())),
                )
                .map_err(e)?;
        } else {
            chart
                .draw_series(pts.into_iter().map(|p| Circle::new(p, 4, c.filled())))
                .map_err(e)?;
        }
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(e)?;
    root.present().map_err(e)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_written_with_thousands_separators_and_small_ones_with_a_decimal() {
        assert_eq!(ns_text(3.44), "3.4");
        assert_eq!(ns_text(27.4), "27");
        assert_eq!(ns_text(26_113.0), "26,113");
        assert_eq!(ns_text(1_234_567.0), "1,234,567");
    }
}
