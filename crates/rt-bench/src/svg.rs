//! Minimal SVG line charts (no font or system dependencies: labels are SVG text).

use std::fmt::Write as _;

/// One line of a chart.
#[derive(Debug)]
pub(crate) struct Series {
    pub(crate) name: String,
    pub(crate) points: Vec<(f64, f64)>,
    pub(crate) dashed: bool,
    pub(crate) color: &'static str,
}

/// Colors per target, stable across charts.
pub(crate) fn color(name: &str) -> &'static str {
    match name {
        n if n.starts_with("rt") => "#d62728",
        n if n.starts_with("baseline") => "#1f77b4",
        n if n.starts_with("ws") => "#2ca02c",
        n if n.starts_with("socketio") => "#9467bd",
        n if n.starts_with("nchan") => "#ff7f0e",
        _ => "#7f7f7f",
    }
}

fn ticks(lo: f64, hi: f64, log: bool) -> Vec<f64> {
    if log {
        let mut t = vec![];
        let mut v = 10f64.powf(lo.log10().floor());
        while v <= hi * 1.0001 {
            if v >= lo * 0.9999 {
                t.push(v);
            }
            v *= 10.0;
        }
        return t;
    }
    let span = (hi - lo).max(1e-9);
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= 6.0)
        .unwrap_or(mag * 10.0);
    let mut t = vec![];
    let mut v = (lo / step).ceil() * step;
    while v <= hi + step * 1e-9 {
        t.push(v);
        v += step;
    }
    t
}

fn label(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{}k", v / 1e3)
    } else {
        format!("{v}")
    }
}

/// A line chart; `log_y` for latencies spanning decades.
pub(crate) fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    log_y: bool,
) -> String {
    let (w, h, l, r, t, b) = (760.0, 440.0, 80.0, 180.0, 40.0, 50.0);
    let pts = series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        if !log_y || y > 0.0 {
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 1.0, 10.0);
    }
    if log_y {
        y0 = 10f64.powf(y0.max(1e-3).log10().floor());
        y1 = 10f64.powf(y1.max(y0 * 10.0).log10().ceil());
    } else {
        y0 = 0.0;
        y1 = y1.max(1e-9) * 1.1;
    }
    x0 = x0.min(0.0);
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let px = |x: f64| l + (x - x0) / (x1 - x0) * (w - l - r);
    let py = |y: f64| {
        let f = if log_y {
            (y.max(y0).log10() - y0.log10()) / (y1.log10() - y0.log10())
        } else {
            (y - y0) / (y1 - y0)
        };
        h - b - f * (h - t - b)
    };
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="22" text-anchor="middle" font-size="15">{title}</text>
<text x="{}" y="{}" text-anchor="middle">{x_label}</text>
<text transform="translate(18,{}) rotate(-90)" text-anchor="middle">{y_label}</text>
"#,
        (l + w - r) / 2.0,
        (l + w - r) / 2.0,
        h - 12.0,
        (t + h - b) / 2.0
    );
    for y in ticks(y0, y1, log_y) {
        let _ = writeln!(
            s,
            r##"<line x1="{l}" x2="{}" y1="{py}" y2="{py}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
            w - r,
            l - 6.0,
            py(y) + 4.0,
            label(y),
            py = py(y)
        );
    }
    for x in ticks(x0, x1, false) {
        let _ = writeln!(
            s,
            r##"<line x1="{px}" x2="{px}" y1="{t}" y2="{}" stroke="#eee"/><text x="{px}" y="{}" text-anchor="middle">{}</text>"##,
            h - b,
            h - b + 16.0,
            label(x),
            px = px(x)
        );
    }
    let _ = writeln!(
        s,
        r##"<rect x="{l}" y="{t}" width="{}" height="{}" fill="none" stroke="#333"/>"##,
        w - l - r,
        h - t - b
    );
    for (i, series) in series.iter().enumerate() {
        let path: Vec<String> = series
            .points
            .iter()
            .filter(|p| !log_y || p.1 > 0.0)
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let dash = if series.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{dash}/>"#,
            path.join(" "),
            series.color
        );
        for p in &path {
            let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = writeln!(
                s,
                r#"<circle cx="{x}" cy="{y}" r="3" fill="{}"/>"#,
                series.color
            );
        }
        let ly = t + 14.0 + i as f64 * 18.0;
        let _ = writeln!(
            s,
            r#"<line x1="{}" x2="{}" y1="{ly}" y2="{ly}" stroke="{}" stroke-width="2"{dash}/><text x="{}" y="{}">{}</text>"#,
            w - r + 10.0,
            w - r + 34.0,
            series.color,
            w - r + 40.0,
            ly + 4.0,
            series.name
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_every_series_and_its_legend() {
        let svg = line_chart(
            "t",
            "x",
            "y",
            &[Series {
                name: "rt p99".into(),
                points: vec![(10.0, 100.0), (100.0, 2000.0)],
                dashed: false,
                color: color("rt"),
            }],
            true,
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(svg.contains("rt p99"));
    }
}
