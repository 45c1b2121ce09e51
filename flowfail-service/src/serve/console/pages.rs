//! The console's pages, rendered on the server: plain HTML and inline SVG, no script, no
//! external resource (it works offline inside a cluster). Every piece of text from outside —
//! task ids, error messages, reasons, names — passes [`esc`].

use std::fmt::Write as _;

use flowfail_core::control::Pause;
use flowfail_core::history::{IncidentLine, IncidentView};
use flowfail_core::report::{Conduct, clean_text};

/// Who is looking: whether they may press the control buttons, and the CSRF token their forms
/// carry.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// Signed in with the control token.
    pub control: bool,
    /// The session's CSRF token.
    pub csrf: String,
    /// Who signed in.
    pub by: String,
}

/// Text for HTML: `&`, `<`, `>`, `"` and `'` escaped; control characters and invisible format
/// characters (bidi overrides, zero-width characters) dropped and line breaks made spaces, as
/// [`clean_text`] does, so a page shows what the text holds.
pub fn esc(s: &str) -> String {
    let s = clean_text(s);
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A path segment: every byte but unreserved ones percent-encoded.
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;max-width:1200px}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}\
th{background:#f3f3f3}.shadow{color:#6a4c93}.act{color:#1b6e20}.banner{background:#fff3cd;border:1px solid #e0c36a;padding:.5em;margin:.5em 0}\
form.inline{display:inline}code{background:#f3f3f3;padding:0 3px}.muted{color:#777}";

fn head(title: &str, s: &mut String) {
    let _ = write!(
        s,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{}</title>\
         <style>{STYLE}</style></head><body>",
        esc(title)
    );
}

fn nav(v: &Viewer, s: &mut String) {
    let _ = write!(
        s,
        "<div id=\"nav\"><a href=\"/\">incidents</a> · signed in as {} ({}) · \
         <form class=\"inline\" method=\"post\" action=\"/logout\">{}<button>sign out</button></form></div>",
        esc(&v.by),
        if v.control { "control" } else { "read" },
        csrf_field(v)
    );
}

fn csrf_field(v: &Viewer) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(&v.csrf)
    )
}

/// The pause banners, one per Deployment (with Pause / Resume for a control session). One
/// Deployment's has the ids `pause`, `resume` and `pause-button`; with several, each id ends
/// with the Deployment's position (`pause-1`, …) and each banner names its Deployment.
fn pause_banners(pauses: &[(String, Option<Pause>)], v: &Viewer, back: &str, s: &mut String) {
    let several = pauses.len() > 1;
    for (i, (scope, pause)) in pauses.iter().enumerate() {
        let id = if several {
            format!("-{}", i + 1)
        } else {
            String::new()
        };
        let what = if several {
            format!("<b>{}</b>: automation", esc(scope))
        } else {
            "Automation".to_owned()
        };
        let hidden = format!(
            "{}<input type=\"hidden\" name=\"back\" value=\"{}\">\
             <input type=\"hidden\" name=\"deployment\" value=\"{}\">",
            csrf_field(v),
            esc(back),
            esc(scope)
        );
        match pause {
            Some(p) => {
                let _ = write!(
                    s,
                    "<div class=\"banner\" id=\"pause{id}\">{what} <b>paused</b> by {} since {}: {}",
                    esc(&p.by),
                    p.since.format("%Y-%m-%d %H:%M:%S UTC"),
                    esc(&p.reason)
                );
                if v.control {
                    let _ = write!(
                        s,
                        " <form class=\"inline\" method=\"post\" action=\"/console/resume\">{hidden}\
                         <button id=\"resume{id}\">Resume</button></form>"
                    );
                }
                s.push_str("</div>");
            }
            None if v.control => {
                let _ = write!(
                    s,
                    "<div id=\"pause{id}\"><form method=\"post\" action=\"/console/pause\">{hidden}\
                     {what} running. \
                     <input name=\"reason\" placeholder=\"why pause\" required maxlength=\"500\"> \
                     <button id=\"pause-button{id}\">Pause</button></form></div>"
                );
            }
            None => {
                let _ = write!(s, "<p id=\"pause{id}\">{what} running.</p>");
            }
        }
    }
}

fn mode_class(m: Conduct) -> &'static str {
    if m == Conduct::Shadow {
        "shadow"
    } else {
        "act"
    }
}

/// `/`: the incidents, newest first.
pub fn index_page(
    lines: &[IncidentLine],
    pauses: &[(String, Option<Pause>)],
    v: &Viewer,
) -> String {
    let mut s = String::new();
    head("flowfail — incidents", &mut s);
    nav(v, &mut s);
    s.push_str("<h1>Incidents</h1>");
    pause_banners(pauses, v, "/", &mut s);
    if lines.is_empty() {
        s.push_str("<p>No incidents recorded.</p>");
    } else {
        // With several Deployments, a column says whose each incident is.
        let several = pauses.len() > 1;
        let _ = write!(
            s,
            "<table id=\"incidents\"><tr><th>incident</th>{}<th>mode</th><th>status</th><th>opened</th>\
             <th>MTTR</th><th>applied</th><th>failed</th><th>only decided</th><th>root cause</th></tr>",
            if several { "<th>deployment</th>" } else { "" }
        );
        for l in lines {
            let deployment = if several {
                let scope = l
                    .scope
                    .strip_suffix(flowfail_core::history::SHADOW_SUFFIX)
                    .unwrap_or(&l.scope);
                format!("<td class=\"deployment\">{}</td>", esc(scope))
            } else {
                String::new()
            };
            let _ = write!(
                s,
                "<tr><td><a href=\"/incidents/{}\">{}</a></td>{deployment}<td class=\"{}\">{}</td><td>{}</td><td>{}</td>\
                 <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                path_segment(&l.key),
                esc(&l.key),
                mode_class(l.mode),
                l.mode,
                esc(&l.status),
                l.opened_at.format("%Y-%m-%d %H:%M:%S"),
                l.mttr_seconds
                    .map(|m| format!("{m} s"))
                    .unwrap_or_else(|| "-".into()),
                l.applied,
                l.failed,
                l.decided,
                esc(l.root_cause.as_deref().unwrap_or("-"))
            );
        }
        s.push_str("</table>");
    }
    s.push_str("</body></html>");
    s
}

/// `/incidents/KEY`: one incident's record.
pub fn incident_page(
    view: &IncidentView,
    pauses: &[(String, Option<Pause>)],
    v: &Viewer,
) -> String {
    let r = &view.report;
    let p = &r.post_incident;
    let mut s = String::with_capacity(64 * 1024);
    head(&format!("flowfail — {}", view.key), &mut s);
    nav(v, &mut s);
    let _ = write!(
        s,
        "<h1 id=\"key\">{}</h1><p class=\"{}\" id=\"mode\">{}</p>",
        esc(&view.key),
        mode_class(view.mode),
        esc(&view.mode_line())
    );
    let back = format!("/incidents/{}", path_segment(&view.key));
    pause_banners(pauses, v, &back, &mut s);
    let _ = write!(
        s,
        "<table id=\"summary\"><tr><th>status</th><td id=\"status\">{}</td></tr>\
         <tr><th>opened</th><td>{}</td></tr><tr><th>closed</th><td>{}</td></tr>\
         <tr><th>MTTR</th><td>{}</td></tr><tr><th>root cause</th><td>{}</td></tr>\
         <tr><th>alert at detection</th><td>{:.2}% failures over {} tasks</td></tr>\
         <tr><th>classification</th><td>{}</td></tr></table>",
        esc(&view.status),
        view.opened_at.format("%Y-%m-%d %H:%M:%S UTC"),
        view.closed_at
            .map(|c| c.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_else(|| "-".into()),
        p.mttr_seconds
            .map(|m| format!("{m} s"))
            .unwrap_or_else(|| "-".into()),
        esc(&p.root_cause),
        r.alert.failure_rate * 100.0,
        r.alert.window_tasks,
        esc(&classification(view))
    );
    s.push_str("<h2>Failure rate</h2>");
    s.push_str(&super::chart::rate_chart(&view.rates));
    approvals_section(view, v, &mut s);
    s.push_str(
        "<h2>Timeline</h2><table id=\"timeline\"><tr><th>time (UTC)</th><th>event</th></tr>",
    );
    for (at, event) in r.timeline_lines(false) {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td></tr>",
            at.format("%Y-%m-%d %H:%M:%S"),
            esc(&event)
        );
    }
    s.push_str("</table>");
    why_not_section(view, &mut s);
    if !p.failure_templates.is_empty() {
        s.push_str("<h2>New failure modes</h2><table id=\"new-failure-modes\"><tr><th>count</th><th>template</th><th>example</th></tr>");
        for t in &p.failure_templates {
            let _ = write!(
                s,
                "<tr><td>{}</td><td><code>{}</code></td><td><code>{}</code></td></tr>",
                t.count,
                esc(&t.template),
                esc(&t.example)
            );
        }
        s.push_str("</table>");
    }
    if !p.left_in_place.is_empty() {
        s.push_str("<h2>Left in place</h2><ul>");
        for l in &p.left_in_place {
            let _ = write!(s, "<li>{}</li>", esc(l));
        }
        s.push_str("</ul>");
    }
    s.push_str("</body></html>");
    s
}

fn classification(view: &IncidentView) -> String {
    let c: Vec<String> = view
        .report
        .classification
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{k}={n}"))
        .collect();
    if c.is_empty() {
        "-".into()
    } else {
        c.join(" ")
    }
}

/// What waits for an operator (Approve / Deny for a control session), and the approvals and
/// denials given.
fn approvals_section(view: &IncidentView, v: &Viewer, s: &mut String) {
    if !view.pending.is_empty() {
        s.push_str("<h2>Waiting for approval</h2><p class=\"muted\">Approve and Deny apply to the action's kind in this incident (every prune, say), as <code>flowfail approve</code> and <code>flowfail deny</code> do.</p><table id=\"pending\"><tr><th>proposed</th><th>action</th><th>why</th><th></th></tr>");
        let mut buttons: Vec<&str> = Vec::new();
        for p in &view.pending {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>",
                p.at.format("%Y-%m-%d %H:%M:%S"),
                esc(&p.action),
                esc(&p.reason)
            );
            if buttons.contains(&p.gate.as_str()) {
                s.push_str("<span class=\"muted\">as above</span>");
            } else if view.mode == Conduct::Shadow {
                s.push_str("<span class=\"muted\">shadow run: nothing to approve</span>");
            } else if v.control {
                buttons.push(&p.gate);
                let key = esc(&view.key);
                let gate = esc(&p.gate);
                let _ = write!(
                    s,
                    "<form class=\"inline\" method=\"post\" action=\"/console/approve\">{csrf}\
                     <input type=\"hidden\" name=\"incident\" value=\"{key}\"><input type=\"hidden\" name=\"action\" value=\"{gate}\">\
                     <button id=\"approve-{gate}\">Approve</button></form> \
                     <form class=\"inline\" method=\"post\" action=\"/console/deny\">{csrf}\
                     <input type=\"hidden\" name=\"incident\" value=\"{key}\"><input type=\"hidden\" name=\"action\" value=\"{gate}\">\
                     <input name=\"reason\" id=\"deny-reason-{gate}\" placeholder=\"why not\" required maxlength=\"500\"> \
                     <button id=\"deny-{gate}\">Deny</button></form>",
                    csrf = csrf_field(v)
                );
            } else {
                s.push_str("<span class=\"muted\">control token needed</span>");
            }
            s.push_str("</td></tr>");
        }
        s.push_str("</table>");
    }
    if !view.approvals.is_empty() {
        s.push_str("<h2>Approvals and denials</h2><table id=\"approvals\"><tr><th>at</th><th>action</th><th>verdict</th><th>by</th><th>reason</th></tr>");
        for a in &view.approvals {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                a.at.format("%Y-%m-%d %H:%M:%S"),
                esc(&a.action),
                if a.denied { "denied" } else { "approved" },
                esc(&a.by),
                esc(a.reason.as_deref().unwrap_or(""))
            );
        }
        s.push_str("</table>");
    }
}

/// What was not done, and why: the report's reasons, then the decisions as recorded.
fn why_not_section(view: &IncidentView, s: &mut String) {
    let r = &view.report;
    if !r.not_taken.is_empty() {
        s.push_str("<h2>Not done, and why</h2><table id=\"why-not\"><tr><th>action</th><th>count</th><th>why not</th><th>e.g.</th><th>first</th><th>last</th></tr>");
        for n in &r.not_taken {
            let ex: Vec<&str> = n.skip.examples.iter().take(3).map(String::as_str).collect();
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(n.skip.action.as_str()),
                n.skip.count,
                esc(&n.skip.reason),
                esc(&ex.join(", ")),
                n.first_at.format("%H:%M:%S"),
                n.last_at.format("%H:%M:%S")
            );
        }
        s.push_str("</table>");
    }
    if !view.decisions.is_empty() {
        let _ = write!(
            s,
            "<h2>Decisions</h2><p class=\"muted\">{} recorded (one each time the decision changed)</p>\
             <table id=\"decisions\"><tr><th>time (UTC)</th><th>decision</th></tr>",
            view.decisions.len()
        );
        for d in &view.decisions {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td></tr>",
                d.at.format("%Y-%m-%d %H:%M:%S"),
                esc(&d.decision.summary())
            );
        }
        s.push_str("</table>");
    }
}

/// `/login`: the sign-in form.
pub fn login_page(error: Option<&str>) -> String {
    let mut s = String::new();
    head("flowfail — sign in", &mut s);
    s.push_str("<h1>flowfail</h1>");
    if let Some(e) = error {
        let _ = write!(s, "<p class=\"banner\" id=\"error\">{}</p>", esc(e));
    }
    s.push_str(
        "<form method=\"post\" action=\"/login\"><p><label>Your name <input name=\"name\" id=\"name\" required maxlength=\"100\"></label></p>\
         <p><label>Token (read or control) <input name=\"token\" id=\"token\" type=\"password\" required></label></p>\
         <p><button id=\"sign-in\">Sign in</button></p></form></body></html>",
    );
    s
}

/// A page that says what went wrong, with a way back.
pub fn message_page(title: &str, text: &str) -> String {
    let mut s = String::new();
    head(title, &mut s);
    let _ = write!(
        s,
        "<h1>{}</h1><p id=\"message\">{}</p><p><a href=\"/\">incidents</a></p></body></html>",
        esc(title),
        esc(text)
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(
            esc("<script>alert('x')</script>&\"\u{1b}[31m"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;[31m"
        );
        assert_eq!(
            path_segment("flowengine:shadow-1/../x"),
            "flowengine%3Ashadow-1%2F..%2Fx"
        );
    }
}
