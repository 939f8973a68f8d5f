//! The SVG plots of the report, drawn with plotters (SVG backend only, no
//! font or bitmap dependencies: text is left to the viewer).

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::{BenchError, Result};
use crate::results::{Param, Results, RowKind};

/// Series colours, in row order; floors are drawn in black.
const COLOURS: &[RGBColor] = &[
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// A line to draw: its label, whether it is a floor, and its points.
struct Series {
    label: String,
    floor: bool,
    points: Vec<(f64, f64)>,
}

/// Draws every plot of [`crate::report::PLOTS`]; (file name, SVG text).
pub fn draw(results: &Results, img_dir: &Path) -> Result<Vec<(&'static str, String)>> {
    let fail = |name: &str| {
        let path = img_dir.join(name);
        move |error: String| BenchError::Plot {
            path: path.clone(),
            reason: error,
        }
    };
    Ok(vec![
        (
            "w2-scaling.svg",
            w2(results).map_err(fail("w2-scaling.svg"))?,
        ),
        (
            "w3-throughput.svg",
            w3(results).map_err(fail("w3-throughput.svg"))?,
        ),
        (
            "w4-hit-ratio.svg",
            w4(results).map_err(fail("w4-hit-ratio.svg"))?,
        ),
    ])
}

fn subtitle(results: &Results) -> String {
    let commit: String = results.git_commit.chars().take(10).collect();
    format!(
        "{} run, {}, commit {}, {} ({} cores, {})",
        results.mode,
        results.date,
        commit,
        results.machine.cpu,
        results.machine.cores,
        results.machine.filesystem
    )
}

fn series_of(
    results: &Results,
    workload: &str,
    x_param: &str,
    filter: &[(&str, Param)],
    metric: &str,
) -> Vec<Series> {
    let mut all = Vec::new();
    for row in results.rows(workload) {
        let mut points: Vec<(f64, f64)> = results
            .cells(workload, row)
            .filter(|cell| cell.not_run.is_none())
            .filter(|cell| {
                filter
                    .iter()
                    .all(|(name, value)| cell.params.get(*name) == Some(value))
            })
            .filter_map(|cell| {
                let x = match cell.params.get(x_param) {
                    Some(Param::Int(x)) => *x as f64,
                    _ => return None,
                };
                Some((x, cell.median(metric).filter(|y| *y > 0.0)?))
            })
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        if points.is_empty() {
            continue;
        }
        let kind = results
            .cells(workload, row)
            .next()
            .map_or(RowKind::Cacheness, |cell| cell.kind);
        all.push(Series {
            label: match kind {
                RowKind::Cacheness => row.to_owned(),
                RowKind::Peer => format!("{row} (peer)"),
                RowKind::Floor => format!("{row} (floor)"),
            },
            floor: kind == RowKind::Floor,
            points,
        });
    }
    all
}

fn bounds(series: &[Series], default: (f64, f64, f64, f64)) -> (f64, f64, f64, f64) {
    let points = series.iter().flat_map(|series| series.points.iter());
    let mut bounds: Option<(f64, f64, f64, f64)> = None;
    for &(x, y) in points {
        bounds = Some(match bounds {
            None => (x, x, y, y),
            Some((x0, x1, y0, y1)) => (x0.min(x), x1.max(x), y0.min(y), y1.max(y)),
        });
    }
    let (x0, x1, y0, y1) = bounds.unwrap_or(default);
    // Pad log axes by a factor so no point sits on the frame.
    (x0 / 1.5, x1 * 1.5, y0 / 2.0, y1 * 2.0)
}

fn log_panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
) -> std::result::Result<(), String> {
    let (x0, x1, y0, y1) = bounds(series, (10.0, 100_000.0, 1.0, 1_000_000.0));
    let caption = if series.is_empty() {
        format!("{title} (no data in these results)")
    } else {
        title.to_owned()
    };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
        .map_err(|error| error.to_string())?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(&|x| compact(*x))
        .y_label_formatter(&|y| compact(*y))
        .draw()
        .map_err(|error| error.to_string())?;
    let mut colour = COLOURS.iter().cycle();
    for line in series {
        let style = if line.floor {
            ShapeStyle::from(&BLACK).stroke_width(3)
        } else {
            ShapeStyle::from(colour.next().unwrap_or(&BLACK)).stroke_width(2)
        };
        chart
            .draw_series(LineSeries::new(line.points.iter().copied(), style))
            .map_err(|error| error.to_string())?
            .label(line.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        chart
            .draw_series(
                line.points
                    .iter()
                    .map(|&point| Circle::new(point, 3, style.filled())),
            )
            .map_err(|error| error.to_string())?;
    }
    if !series.is_empty() {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|error| error.to_string())?;
    }
    Ok(())
}

/// `50`, `1k`, `100k`, `1M`, `0.5`.
fn compact(value: f64) -> String {
    if value >= 1e6 {
        format!("{}M", trim(value / 1e6))
    } else if value >= 1e3 {
        format!("{}k", trim(value / 1e3))
    } else {
        trim(value)
    }
}

fn trim(value: f64) -> String {
    let text = format!("{value:.1}");
    text.strip_suffix(".0").map_or(text.clone(), str::to_owned)
}

fn two_panels(
    results: &Results,
    title: &str,
    panels: [(&str, &str, &str, Vec<Series>); 2],
) -> std::result::Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1100, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(|error| error.to_string())?;
        let root = root
            .titled(title, ("sans-serif", 20))
            .map_err(|error| error.to_string())?;
        let (body, footer) = root.split_vertically(440);
        let (left, right) = body.split_horizontally(550);
        for (area, (panel_title, x_desc, y_desc, series)) in [left, right].iter().zip(&panels) {
            log_panel(area, panel_title, x_desc, y_desc, series)?;
        }
        footer
            .draw_text(
                &subtitle(results),
                &("sans-serif", 12).into_text_style(&footer),
                (12, 4),
            )
            .map_err(|error| error.to_string())?;
        root.present().map_err(|error| error.to_string())?;
    }
    Ok(svg)
}

fn w2(results: &Results) -> std::result::Result<String, String> {
    two_panels(
        results,
        "W2: ops/s against entries in the cache (log-log; flat is the goal)",
        [
            (
                "PUT",
                "entries",
                "ops/s",
                series_of(results, "w1", "n", &[], "put_ops_s"),
            ),
            (
                "GET",
                "entries",
                "ops/s",
                series_of(results, "w1", "n", &[], "get_ops_s"),
            ),
        ],
    )
}

fn w3(results: &Results) -> std::result::Result<String, String> {
    let data = [("data", Param::from("incompressible"))];
    two_panels(
        results,
        "W3: throughput of incompressible values against the raw-fs floor (black)",
        [
            (
                "PUT",
                "value size (bytes)",
                "MB/s",
                series_of(results, "w3", "size", &data, "put_mb_s"),
            ),
            (
                "GET",
                "value size (bytes)",
                "MB/s",
                series_of(results, "w3", "size", &data, "get_mb_s"),
            ),
        ],
    )
}

fn w4(results: &Results) -> std::result::Result<String, String> {
    let mut bars: Vec<(String, f64)> = Vec::new();
    for row in results.rows("w4") {
        for distribution in ["80/20", "uniform"] {
            let ratio = results
                .find("w4", row, &[("distribution", Param::from(distribution))])
                .filter(|cell| cell.not_run.is_none())
                .and_then(|cell| cell.median("layer_hit_ratio"));
            if let Some(ratio) = ratio {
                bars.push((format!("{row} {distribution}"), ratio));
            }
        }
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (800, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(|error| error.to_string())?;
        let (body, footer) = root.split_vertically(385);
        let caption = if bars.is_empty() {
            "W4: memory-layer hit ratio (no memory layer in these results)"
        } else {
            "W4: memory-layer hit ratio, 80/20 and uniform reads"
        };
        let width = bars.len().max(1) as f64;
        let mut chart = ChartBuilder::on(&body)
            .caption(caption, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(10)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..width, 0.0..1.1)
            .map_err(|error| error.to_string())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_desc("hit ratio")
            .y_label_formatter(&|y| format!("{:.0} %", y * 100.0))
            .draw()
            .map_err(|error| error.to_string())?;
        for (index, ((label, ratio), colour)) in (0..).zip(bars.iter().zip(COLOURS.iter().cycle()))
        {
            let x = f64::from(index);
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x + 0.15, 0.0), (x + 0.85, *ratio)],
                    colour.filled(),
                )))
                .map_err(|error| error.to_string())?;
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("{label}: {:.0} %", ratio * 100.0),
                    (x + 0.15, (ratio + 0.05).min(1.07)),
                    ("sans-serif", 12),
                )))
                .map_err(|error| error.to_string())?;
        }
        footer
            .draw_text(
                &subtitle(results),
                &("sans-serif", 12).into_text_style(&footer),
                (12, 8),
            )
            .map_err(|error| error.to_string())?;
        root.present().map_err(|error| error.to_string())?;
    }
    Ok(svg)
}
