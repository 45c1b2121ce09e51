//! The failure rate over an incident as an inline SVG line chart: one point per recorded
//! decision or sample, the firing points marked, the axes labelled. No script, no font file.

use std::fmt::Write as _;

use flowfail_core::history::RatePoint;

const W: f64 = 720.0;
const H: f64 = 200.0;
const PAD_L: f64 = 48.0;
const PAD_B: f64 = 24.0;
const PAD_T: f64 = 10.0;
const PAD_R: f64 = 10.0;

/// The chart of `rates` (oldest first), or a line saying there is nothing to draw.
pub(super) fn rate_chart(rates: &[RatePoint]) -> String {
    if rates.is_empty() {
        return "<p class=\"muted\" id=\"chart\">No failure rate recorded.</p>".into();
    }
    let t0 = rates[0].at;
    let span = rates
        .iter()
        .map(|r| (r.at - t0).num_milliseconds())
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let top = rates
        .iter()
        .map(|r| r.alert.failure_rate)
        .filter(|r| r.is_finite())
        .fold(0.0_f64, f64::max)
        .max(0.01)
        * 1.1;
    let x =
        |r: &RatePoint| PAD_L + (r.at - t0).num_milliseconds() as f64 / span * (W - PAD_L - PAD_R);
    let y = |r: &RatePoint| {
        let v = if r.alert.failure_rate.is_finite() {
            r.alert.failure_rate.clamp(0.0, top)
        } else {
            0.0
        };
        H - PAD_B - v / top * (H - PAD_B - PAD_T)
    };
    let mut s = String::with_capacity(rates.len() * 24 + 1024);
    let _ = write!(
        s,
        "<svg id=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"failure rate over the incident\">\
         <line x1=\"{PAD_L}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#999\"/>\
         <line x1=\"{PAD_L}\" y1=\"{PAD_T}\" x2=\"{PAD_L}\" y2=\"{b}\" stroke=\"#999\"/>\
         <text x=\"{lx}\" y=\"{ty}\" font-size=\"11\" text-anchor=\"end\">{top_pct:.1}%</text>\
         <text x=\"{lx}\" y=\"{b}\" font-size=\"11\" text-anchor=\"end\">0%</text>\
         <text x=\"{PAD_L}\" y=\"{H}\" font-size=\"11\">{start}</text>\
         <text x=\"{r}\" y=\"{H}\" font-size=\"11\" text-anchor=\"end\">{end}</text>",
        b = H - PAD_B,
        r = W - PAD_R,
        lx = PAD_L - 4.0,
        ty = PAD_T + 10.0,
        top_pct = top * 100.0,
        start = t0.format("%H:%M:%S"),
        end = rates[rates.len() - 1].at.format("%H:%M:%S"),
    );
    s.push_str("<polyline fill=\"none\" stroke=\"#c0392b\" stroke-width=\"1.5\" points=\"");
    for r in rates {
        let _ = write!(s, "{:.1},{:.1} ", x(r), y(r));
    }
    s.push_str("\"/>");
    for r in rates.iter().filter(|r| r.alert.firing) {
        let _ = write!(
            s,
            "<circle class=\"firing\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"2\" fill=\"#c0392b\"/>",
            x(r),
            y(r)
        );
    }
    s.push_str("</svg>");
    s
}
