//! A [`Plan`] as tether YAML, with its comments. Hand-written because comments are half the
//! output; every string value is written as a double-quoted (JSON) scalar, so no value can
//! change the document's structure.

use super::plan::*;
use std::fmt::Write as _;

/// The YAML text of `plan`.
pub fn emit(plan: &Plan) -> String {
    let mut y = String::new();
    header(&mut y, plan);
    listen(&mut y, plan);
    upstreams(&mut y, plan);
    routes(&mut y, plan);
    client_ip(&mut y, plan);
    limits(&mut y, plan);
    trailer(&mut y, plan);
    y
}

/// A double-quoted YAML scalar (JSON's escapes are YAML's).
fn q(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// A mapping key: bare when it is a plain word, quoted otherwise.
fn key(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        && s.as_bytes()[0].is_ascii_alphabetic()
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n"
        );
    if plain {
        s.to_string()
    } else {
        q(s)
    }
}

/// `a.conf:1, a.conf:5, b.conf:2` as `a.conf:1, 5, b.conf:2`.
pub fn compact(places: &[String]) -> String {
    let mut out = String::new();
    let mut last_file = "";
    for p in places {
        let (file, line) = p.rsplit_once(':').unwrap_or((p.as_str(), ""));
        if !out.is_empty() {
            out.push_str(", ");
        }
        if file == last_file {
            out.push_str(line);
        } else {
            out.push_str(p);
            last_file = file;
        }
    }
    out
}

/// Comment text on one line: a quoted nginx word may hold a newline, which must not end the
/// comment and start YAML of its own.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn comment(y: &mut String, indent: usize, text: &str) {
    let _ = writeln!(y, "{:indent$}# {}", "", one_line(text));
}

fn header(y: &mut String, plan: &Plan) {
    let _ = writeln!(
        y,
        "# tether config translated from {} by `tether import-nginx` (tether {}).",
        one_line(&plan.source),
        env!("CARGO_PKG_VERSION")
    );
    y.push_str("# Check it with `tether check --config FILE`; read every \"not translated\" line at the end.\n");
    if plan.listeners.iter().any(|l| l.tls.is_some()) {
        y.push_str("# Certificate paths are as nginx had them: relative ones resolve against this file's\n# directory, so keep it beside nginx.conf or make them absolute.\n");
    }
    if plan.signs_cookies {
        let env = SECRET_ENV;
        let _ = write!(
            y,
            "#\n# The affinity cookie is signed with the secret in ${env}; make one with\n#   export {env}=\"$(tether keygen)\"\n# and give every replica the same one, so they agree on each client's node.\n"
        );
    }
    for n in &plan.notes {
        comment(y, 0, n);
    }
    y.push('\n');
}

fn listen(y: &mut String, plan: &Plan) {
    y.push_str("listen:\n");
    for l in &plan.listeners {
        comment(y, 2, &format!("listen ({})", l.from));
        let _ = writeln!(y, "  - address: {}", q(&l.address));
        if let Some((cert, key)) = &l.tls {
            let _ = writeln!(y, "    tls: {{ cert: {}, key: {} }}", q(cert), q(key));
        }
        if l.proxy_protocol {
            y.push_str("    proxy_protocol: true\n");
        }
    }
    y.push('\n');
}

fn upstreams(y: &mut String, plan: &Plan) {
    y.push_str("upstreams:\n");
    for u in &plan.upstreams {
        comment(y, 2, &format!("upstream {} ({})", u.name, u.from));
        for n in &u.notes {
            comment(y, 2, n);
        }
        let _ = writeln!(y, "  {}:", key(&u.name));
        if !u.nodes.is_empty() {
            y.push_str("    nodes:\n");
            for n in &u.nodes {
                let weight = n.weight.map_or(String::new(), |w| format!(", weight: {w}"));
                let _ = writeln!(
                    y,
                    "      - {{ id: {}, address: {}{weight} }}   # {}",
                    q(&n.id),
                    q(&n.address),
                    one_line(&n.comment)
                );
            }
        }
        if let Some(d) = &u.discover {
            for n in &d.notes {
                comment(y, 4, n);
            }
            y.push_str("    discover:\n");
            let names: Vec<String> = d.names.iter().map(|n| q(n)).collect();
            let _ = writeln!(y, "      dns: [{}]", names.join(", "));
            if let Some(p) = d.port {
                let _ = writeln!(y, "      port: {p}");
            }
            let _ = writeln!(y, "      refresh: {}", d.refresh);
        }
        if let Some(b) = u.balance {
            let _ = writeln!(y, "    balance: {b}");
        }
        match &u.affinity {
            AffinityPlan::None => y.push_str("    affinity: { mode: none }\n"),
            AffinityPlan::IpHash => y.push_str("    affinity: { mode: ip_hash }\n"),
            AffinityPlan::Cookie(c) => cookie(y, c),
            AffinityPlan::Key(key) => {
                let _ = writeln!(y, "    affinity: {{ mode: key, key: {} }}", q(key));
            }
        }
        if !u.timeouts.is_empty() {
            y.push_str("    timeouts:\n");
            for want in ["connect", "read", "tunnel_idle", "send"] {
                for (k, v) in u.timeouts.iter().filter(|(k, _)| *k == want) {
                    let _ = writeln!(y, "      {k}: {v}");
                }
            }
        }
        if let Some((fails, timeout)) = &u.passive {
            let _ = writeln!(
                y,
                "    passive: {{ max_fails: {fails}, fail_timeout: {timeout} }}"
            );
        }
        if let Some(s) = &u.slow_start {
            let _ = writeln!(y, "    slow_start: {s}");
        }
    }
    y.push('\n');
}

fn cookie(y: &mut String, c: &CookiePlan) {
    y.push_str("    affinity:\n      mode: cookie\n      cookie:\n");
    let _ = writeln!(y, "        name: {}", q(&c.name));
    let _ = writeln!(y, "        secret_env: {SECRET_ENV}");
    if let Some(m) = &c.max_age {
        let _ = writeln!(y, "        max_age: {m}");
    }
    if let Some(d) = &c.domain {
        let _ = writeln!(y, "        domain: {}", q(d));
    }
    if let Some(p) = &c.path {
        let _ = writeln!(y, "        path: {}", q(p));
    }
    let _ = writeln!(y, "        secure: {}", c.secure);
    let _ = writeln!(y, "        http_only: {}", c.http_only);
    if let Some(s) = c.same_site {
        let _ = writeln!(y, "        same_site: {s}");
    }
}

fn routes(y: &mut String, plan: &Plan) {
    y.push_str("routes:\n");
    for r in &plan.routes {
        comment(y, 2, &r.from);
        for n in &r.notes {
            comment(y, 2, n);
        }
        let hosts = if r.hosts.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = r.hosts.iter().map(|h| q(h)).collect();
            format!("hosts: [{}], ", list.join(", "))
        };
        let _ = writeln!(
            y,
            "  - {{ {hosts}path_prefix: {}, upstream: {} }}",
            q(&r.prefix),
            q(&r.upstream)
        );
    }
}

fn client_ip(y: &mut String, plan: &Plan) {
    if plan.trusted_proxies.is_empty() {
        return;
    }
    y.push_str("\n# X-Forwarded-For is believed only from these (real_ip_header X-Forwarded-For).\nclient_ip:\n  trusted_proxies:\n");
    for (cidr, from) in &plan.trusted_proxies {
        let _ = writeln!(y, "    - {}   # {}", q(cidr), one_line(from));
    }
}

fn limits(y: &mut String, plan: &Plan) {
    if plan.limits.is_empty() {
        return;
    }
    y.push_str("\nlimits:\n");
    for (k, v, note) in &plan.limits {
        let _ = writeln!(y, "  {k}: {v}   # {}", one_line(note));
    }
}

fn trailer(y: &mut String, plan: &Plan) {
    if !plan.understood.is_empty() {
        y.push_str("\n# Understood, nothing to write (tether does this by itself):\n");
        for (what, why, places) in &plan.understood {
            let line = format!("  {what} ({}): {why}", compact(places));
            comment(y, 0, &line);
        }
    }
    if !plan.not_translated.is_empty() {
        y.push('\n');
        for line in &plan.not_translated {
            comment(y, 0, &format!("not translated: {line}"));
        }
    }
}
