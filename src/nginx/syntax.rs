//! nginx's value syntax: times, sizes, addresses, `location` modifiers, `server_name`s; and
//! how a directive is shown in a comment.

use super::parse::Directive;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// `server_name`s as tether host patterns; `Err(name)` for one tether cannot express.
/// `_`, `""` and `localhost`-style catch-alls mean "no name".
pub fn host_patterns(names: &[String]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for n in names {
        let n = n.to_ascii_lowercase();
        if n.is_empty() || n == "_" {
            continue;
        }
        let patterns = if let Some(rest) = n.strip_prefix('.') {
            vec![rest.to_string(), format!("*.{rest}")]
        } else {
            vec![n.clone()]
        };
        for p in patterns {
            if crate::config::HostPattern::parse(&p).is_err() {
                return Err(n);
            }
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    Ok(out)
}

/// `location` arguments: the modifier (`""`, `=`, `^~`, `~`, `~*`, `@`) and the path.
pub fn location_args(args: &[String]) -> (&'static str, String) {
    const MODIFIERS: [&str; 4] = ["^~", "~*", "=", "~"];
    match args {
        [m, path, ..] if MODIFIERS.contains(&m.as_str()) => {
            let m = MODIFIERS.iter().find(|x| **x == m).copied().unwrap_or("");
            (m, path.clone())
        }
        [one, ..] => {
            if let Some(name) = one.strip_prefix('@') {
                return ("@", name.to_string());
            }
            // nginx also takes the modifier glued to the path (`=/exact`).
            for m in MODIFIERS {
                if let Some(path) = one.strip_prefix(m) {
                    if !path.is_empty() {
                        return (m, path.to_string());
                    }
                }
            }
            ("", one.clone())
        }
        [] => ("", String::new()),
    }
}

/// `HOST[:PORT]`, `[V6][:PORT]` into host and port.
pub fn split_host_port(addr: &str, default_port: u16) -> Option<(String, u16)> {
    if let Some(rest) = addr.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Some((host.to_string(), port.parse().ok()?)),
        Some(_) => None,
        None if addr.is_empty() => None,
        None => Some((addr.to_string(), default_port)),
    }
}

/// A `listen` address as tether's `IP:PORT`: `80`, `*:80`, `127.0.0.1:8080`, `[::]:80`,
/// `localhost:80`, or a bare IP (port 80).
pub fn listen_address(addr: &str) -> Option<String> {
    if let Ok(port) = addr.parse::<u16>() {
        return Some(format!("0.0.0.0:{port}"));
    }
    let (host, port) = split_host_port(addr, 80)?;
    let ip: IpAddr = match host.as_str() {
        "*" => IpAddr::from([0, 0, 0, 0]),
        "localhost" => IpAddr::from([127, 0, 0, 1]),
        h => h.parse().ok()?,
    };
    Some(SocketAddr::new(ip, port).to_string())
}

/// An nginx time (`60s`, `1h30m`, `500ms`, `65`: seconds when no unit).
pub fn nginx_time(text: &str) -> Option<Duration> {
    let t = text.trim();
    if t.is_empty() {
        return None;
    }
    if let Ok(s) = t.parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = rest[unit_len..].trim_start();
        let secs = |k: u64| Duration::from_secs(n.saturating_mul(k));
        total += match unit {
            "ms" => Duration::from_millis(n),
            "s" | "" => secs(1),
            "m" => secs(60),
            "h" => secs(3600),
            "d" => secs(86_400),
            "w" => secs(7 * 86_400),
            "M" => secs(30 * 86_400),
            "y" => secs(365 * 86_400),
            _ => return None,
        };
    }
    Some(total)
}

/// An nginx size (`16k`, `1m`, `8192`), in bytes.
pub fn nginx_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let (num, mult) = match t.as_bytes().last()? {
        b'k' | b'K' => (&t[..t.len() - 1], 1024),
        b'm' | b'M' => (&t[..t.len() - 1], 1024 * 1024),
        b'g' | b'G' => (&t[..t.len() - 1], 1024 * 1024 * 1024),
        _ => (t, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

/// A duration as tether writes it: the largest unit that divides it (`1h`, `90s`, `500ms`).
pub fn duration_text(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    if s > 0 && s.is_multiple_of(86_400) && s >= 7 * 86_400 {
        format!("{}d", s / 86_400)
    } else if s > 0 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s > 0 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// A directive as written, for comments: `name args...` and `{ ... }` for a block.
pub fn directive_text(d: &Directive) -> String {
    let mut out = d.name.clone();
    for a in &d.args {
        out.push(' ');
        if a.is_empty() || a.contains([' ', ';', '{', '}', '#']) {
            out.push('"');
            out.push_str(a);
            out.push('"');
        } else {
            out.push_str(a);
        }
    }
    if d.block.is_some() {
        out.push_str(" { ... }");
    }
    out
}

/// Keep comments to one readable line.
pub fn shorten(text: &str) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() > 72 {
        let cut: String = flat.chars().take(69).collect();
        format!("{cut}...")
    } else {
        flat
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_times_and_sizes() {
        assert_eq!(nginx_time("65"), Some(Duration::from_secs(65)));
        assert_eq!(nginx_time("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(nginx_time("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(nginx_time("1d"), Some(Duration::from_secs(86_400)));
        assert_eq!(nginx_time("3x"), None);
        assert_eq!(nginx_time("s"), None);
        assert_eq!(nginx_size("16k"), Some(16_384));
        assert_eq!(nginx_size("1m"), Some(1 << 20));
        assert_eq!(nginx_size("x"), None);
        assert_eq!(duration_text(Duration::from_secs(3600)), "1h");
        assert_eq!(duration_text(Duration::from_secs(90)), "90s");
        assert_eq!(duration_text(Duration::from_secs(1800)), "30m");
        assert_eq!(duration_text(Duration::from_millis(1500)), "1500ms");
        assert_eq!(duration_text(Duration::from_secs(86_400)), "24h");
        assert_eq!(duration_text(Duration::from_secs(3650 * 86_400)), "3650d");
    }

    #[test]
    fn addresses_as_nginx_writes_them() {
        assert_eq!(listen_address("80").as_deref(), Some("0.0.0.0:80"));
        assert_eq!(listen_address("*:8080").as_deref(), Some("0.0.0.0:8080"));
        assert_eq!(listen_address("[::]:443").as_deref(), Some("[::]:443"));
        assert_eq!(
            listen_address("localhost:81").as_deref(),
            Some("127.0.0.1:81")
        );
        assert_eq!(listen_address("example.com:80"), None);
        assert_eq!(split_host_port("app", 80), Some(("app".into(), 80)));
        assert_eq!(
            split_host_port("[fd00::1]:3001", 80),
            Some(("fd00::1".into(), 3001))
        );
        assert_eq!(split_host_port("fd00::1", 80), None);
        assert_eq!(location_args(&["=/x".into()]), ("=", "/x".into()));
        assert_eq!(
            location_args(&["^~".into(), "/s/".into()]),
            ("^~", "/s/".into())
        );
        assert_eq!(
            location_args(&["@fallback".into()]),
            ("@", "fallback".into())
        );
        assert_eq!(
            host_patterns(&[".example.org".into(), "_".into()]),
            Ok(vec!["example.org".into(), "*.example.org".into()])
        );
        assert_eq!(
            host_patterns(&["~^www\\d+".into()]),
            Err("~^www\\d+".into())
        );
    }
}
