//! Hand-written SVG line plots (no plotting dependency): axes, ticks, a legend, and one
//! polyline per series. Numbers are printed with fixed precision, so the output is
//! byte-for-byte reproducible.

use std::fmt::Write;

/// One line of a plot.
pub struct Series {
    /// Legend text.
    pub name: String,
    /// (x, y) points, in x order.
    pub points: Vec<(f64, f64)>,
}

/// Axis scale.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Linear.
    Linear,
    /// Base-10 logarithmic (positive values only).
    Log,
}

const W: f64 = 640.0;
const H: f64 = 400.0;
const L: f64 = 70.0;
const R: f64 = 20.0;
const T: f64 = 40.0;
const B: f64 = 50.0;
const COLOURS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn nice_step(span: f64) -> f64 {
    let raw = span / 6.0;
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let m = if f < 1.5 {
        1.0
    } else if f < 3.5 {
        2.0
    } else if f < 7.5 {
        5.0
    } else {
        10.0
    };
    m * mag
}

fn fmt_tick(v: f64) -> String {
    if v.abs() >= 100.0 || v == v.round() {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A line plot of `series`.
pub fn plot(title: &str, xlabel: &str, ylabel: &str, xscale: Scale, series: &[Series]) -> String {
    let tx = |x: f64| {
        if xscale == Scale::Log {
            x.max(1e-9).log10()
        } else {
            x
        }
    };
    let pts = series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, 0.0f64, f64::MIN);
    for &(x, y) in pts {
        if xscale == Scale::Log && x <= 0.0 {
            continue;
        }
        x0 = x0.min(tx(x));
        x1 = x1.max(tx(x));
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        (x0, x1) = (0.0, 1.0);
    }
    if (x1 - x0).abs() < 1e-12 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    let (pw, ph) = (W - L - R, H - T - B);
    let sx = |x: f64| L + (tx(x) - x0) / (x1 - x0) * pw;
    let sy = |y: f64| T + ph - (y - y0) / (y1 - y0) * ph;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        W / 2.0,
        esc(title)
    );
    // Axes and ticks.
    let _ = writeln!(
        s,
        r#"<path d="M{L:.1},{T:.1} V{:.1} H{:.1}" stroke="black" fill="none"/>"#,
        T + ph,
        L + pw
    );
    let ystep = nice_step(y1 - y0);
    let mut y = (y0 / ystep).ceil() * ystep;
    while y <= y1 + 1e-9 {
        let py = sy(y);
        let _ = writeln!(
            s,
            r##"<line x1="{L:.1}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            L + pw,
            L - 6.0,
            py + 4.0,
            fmt_tick(y)
        );
        y += ystep;
    }
    if xscale == Scale::Log {
        let mut e = x0.floor();
        while e <= x1 + 1e-9 {
            if e >= x0 - 1e-9 {
                let px = L + (e - x0) / (x1 - x0) * pw;
                let _ = writeln!(
                    s,
                    r##"<line x1="{px:.1}" y1="{T:.1}" x2="{px:.1}" y2="{:.1}" stroke="#ddd"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                    T + ph,
                    T + ph + 16.0,
                    fmt_tick(10f64.powf(e))
                );
            }
            e += 1.0;
        }
    } else {
        let xstep = nice_step(x1 - x0);
        let mut x = (x0 / xstep).ceil() * xstep;
        while x <= x1 + 1e-9 {
            let px = sx(x);
            let _ = writeln!(
                s,
                r##"<line x1="{px:.1}" y1="{T:.1}" x2="{px:.1}" y2="{:.1}" stroke="#ddd"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                T + ph,
                T + ph + 16.0,
                fmt_tick(x)
            );
            x += xstep;
        }
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        L + pw / 2.0,
        H - 12.0,
        esc(xlabel)
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="{:.1}" text-anchor="middle" transform="rotate(-90 16 {:.1})">{}</text>"#,
        T + ph / 2.0,
        T + ph / 2.0,
        esc(ylabel)
    );
    for (i, ser) in series.iter().enumerate() {
        let c = COLOURS[i % COLOURS.len()];
        let mut d = String::new();
        for &(x, y) in &ser.points {
            if xscale == Scale::Log && x <= 0.0 {
                continue;
            }
            let _ = write!(
                d,
                "{}{:.1},{:.1}",
                if d.is_empty() { "M" } else { " L" },
                sx(x),
                sy(y)
            );
        }
        let _ = writeln!(
            s,
            r#"<path d="{d}" stroke="{c}" stroke-width="1.8" fill="none"/>"#
        );
        let ly = T + 14.0 + 16.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{c}" stroke-width="2"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            L + pw - 150.0,
            L + pw - 130.0,
            L + pw - 125.0,
            ly + 4.0,
            esc(&ser.name)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// CDF points of sorted samples, at most ~500 of them.
pub fn cdf(sorted: &[f64]) -> Vec<(f64, f64)> {
    let n = sorted.len();
    if n == 0 {
        return Vec::new();
    }
    let step = n.div_ceil(500).max(1);
    let mut out: Vec<(f64, f64)> = (0..n)
        .step_by(step)
        .map(|i| (sorted[i], (i + 1) as f64 / n as f64))
        .collect();
    out.push((sorted[n - 1], 1.0));
    out
}
