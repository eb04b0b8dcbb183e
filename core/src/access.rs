//! Which browsers and host names may talk to the hub: the Origin check against cross-site
//! requests and WebSocket hijacking, the Host check against DNS rebinding, and the CORS
//! headers granted to allowed origins.
//!
//! livebridge listens on the user's own machine, and any web page the user opens can send it
//! requests. Browsers always send `Origin` on cross-site requests and WebSocket upgrades;
//! native clients (the Lightroom plugin, curl, desktop apps) send none and are allowed. A
//! page that reaches the hub through a DNS name it controls (rebinding) arrives with that
//! name in `Host`, which only loopback names and configured names pass.

use crate::config::Config;
use crate::input::HttpRequest;
use crate::output::Reply;

/// Host names always accepted: the loopback names.
const LOOPBACK_HOSTS: &[&str] = &["localhost", "127.0.0.1", "[::1]", "::1"];

/// The host name of a `Host` header, without its port, lower-cased.
fn host_name(host: &str) -> String {
    let host = host.trim();
    let name = if host.starts_with('[') {
        // [::1]:5100 → [::1]
        host.split_inclusive(']').next().unwrap_or(host)
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    name.to_ascii_lowercase()
}

/// The refusal of a request without `Host`. A runtime whose HTTP library cannot take such a
/// request (async-h1 needs the header to build the URL) answers it with these words too, so
/// both runtimes answer the same bytes.
pub const MISSING_HOST: &str = "the request has no Host header; it is required, and checked \
                                against the allowed host names (DNS rebinding protection)";

/// Checks the `Host` header; `Err` is the reply: 400 without one, 403 for a name not allowed.
///
/// A request without `Host` fails closed: HTTP/1.1 requires the header, and a check that an
/// embedder could switch off by leaving the field empty would be no protection.
fn check_host(config: &Config, host: Option<&str>) -> Result<(), Reply> {
    let Some(host) = host else {
        return Err(Reply::error(400, MISSING_HOST));
    };
    let name = host_name(host);
    let allowed = LOOPBACK_HOSTS.contains(&name.as_str())
        || config
            .allowed_hosts
            .iter()
            .any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(&name));
    if allowed {
        Ok(())
    } else {
        Err(Reply::error(
            403,
            &format!(
                "host {name:?} is not allowed (DNS rebinding protection); \
                 add it to the allowed host names (the allowed_hosts setting)"
            ),
        ))
    }
}

/// Whether `origin` is the hub's own origin: a page the hub served itself (the admin page, a
/// page importing `/client.js` from it). That is `http://` plus the request's `Host`, and
/// only on a loopback name: behind a proxy or on another name, the operator lists origins.
fn is_own_origin(origin: &str, host: Option<&str>) -> bool {
    let Some(host) = host.map(str::trim) else {
        return false;
    };
    LOOPBACK_HOSTS.contains(&host_name(host).as_str())
        && origin
            .trim()
            .to_ascii_lowercase()
            .strip_prefix("http://")
            .is_some_and(|authority| authority.eq_ignore_ascii_case(host))
}

/// Checks the `Origin` header against the request's `Host`. `Ok(Some(origin))` for an
/// allowed browser origin (which gets CORS headers), `Ok(None)` for a request without one,
/// `Err` with the 403 reply otherwise. Allowed are the hub's own origin on loopback and the
/// configured origins.
fn check_origin<'a>(
    config: &Config,
    origin: Option<&'a str>,
    host: Option<&str>,
) -> Result<Option<&'a str>, Reply> {
    let Some(origin) = origin else {
        return Ok(None);
    };
    let allowed = is_own_origin(origin, host)
        || config
            .allowed_origins
            .iter()
            .any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(origin.trim()));
    if allowed {
        Ok(Some(origin))
    } else {
        Err(Reply::error(
            403,
            &format!(
                "origin {origin:?} is not allowed to use this hub; pages of other origins \
                 need their origin in the allowed origins (the allowed_origins setting)"
            ),
        ))
    }
}

/// Admits a request (HTTP or WebSocket upgrade) from where it came: its `Host` first, then
/// its `Origin` against that host. `Ok(Some(origin))` for an allowed browser origin (its
/// replies get CORS headers), `Ok(None)` for a client that sent no `Origin`, `Err` with the
/// refusal otherwise.
pub(crate) fn admit<'a>(
    config: &Config,
    request: &'a HttpRequest,
) -> Result<Option<&'a str>, Reply> {
    check_host(config, request.host.as_deref())?;
    check_origin(config, request.origin.as_deref(), request.host.as_deref())
}

/// Adds the CORS headers that let an allowed origin read the reply.
pub(crate) fn add_cors_headers(reply: &mut Reply, origin: &str) {
    reply.headers.push((
        "Access-Control-Allow-Origin".to_string(),
        origin.to_string(),
    ));
    reply
        .headers
        .push(("Vary".to_string(), "Origin".to_string()));
}

/// The answer to a CORS preflight (`OPTIONS`) from an allowed origin.
pub(crate) fn preflight() -> Reply {
    let mut reply = Reply::json(204, String::new());
    reply.headers.push((
        "Access-Control-Allow-Methods".to_string(),
        "GET, POST, OPTIONS".to_string(),
    ));
    reply.headers.push((
        "Access-Control-Allow-Headers".to_string(),
        "Content-Type, Authorization".to_string(),
    ));
    reply
        .headers
        .push(("Access-Control-Max-Age".to_string(), "600".to_string()));
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(origins: &[&str], hosts: &[&str]) -> Config {
        Config {
            allowed_origins: origins.iter().map(|s| s.to_string()).collect(),
            allowed_hosts: hosts.iter().map(|s| s.to_string()).collect(),
            ..Config::default()
        }
    }

    #[test]
    fn loopback_hosts_pass_and_others_need_configuring() {
        let strict = config(&[], &[]);
        for host in [
            "localhost:5100",
            "127.0.0.1:5100",
            "[::1]:5100",
            "LOCALHOST",
            "127.0.0.1",
        ] {
            assert!(check_host(&strict, Some(host)).is_ok(), "{host}");
        }
        for host in [
            "evil.example:5100",
            "localhost.evil.example",
            "192.168.1.5:5100",
        ] {
            assert_eq!(
                check_host(&strict, Some(host)).unwrap_err().status,
                403,
                "{host}"
            );
        }
        let missing = check_host(&strict, None).unwrap_err();
        assert_eq!(missing.status, 400);
        assert!(missing.body.contains("no Host header"), "{}", missing.body);
        // Not even a wildcard lets a request without Host through.
        assert_eq!(
            check_host(&config(&[], &["*"]), None).unwrap_err().status,
            400
        );
        let lan = config(&[], &["studio.local"]);
        assert!(check_host(&lan, Some("studio.local:5100")).is_ok());
        assert!(check_host(&config(&[], &["*"]), Some("anything")).is_ok());
    }

    #[test]
    fn only_configured_origins_pass_and_native_clients_send_none() {
        let strict = config(&[], &[]);
        let host = Some("localhost:5100");
        assert_eq!(check_origin(&strict, None, host).unwrap(), None);
        let refused = check_origin(&strict, Some("https://evil.example"), host).unwrap_err();
        assert_eq!(refused.status, 403);
        assert!(refused.body.contains("allowed_origins"), "{}", refused.body);
        assert_eq!(
            check_origin(&strict, Some("null"), host)
                .unwrap_err()
                .status,
            403
        );
        let app = config(&["http://localhost:3000"], &[]);
        assert_eq!(
            check_origin(&app, Some("http://localhost:3000"), host).unwrap(),
            Some("http://localhost:3000")
        );
        assert!(check_origin(&app, Some("http://localhost:3001"), host).is_err());
    }

    #[test]
    fn the_hubs_own_origin_on_loopback_is_allowed_without_configuration() {
        let strict = config(&[], &[]);
        for (origin, host) in [
            ("http://localhost:5100", "localhost:5100"),
            ("http://127.0.0.1:5100", "127.0.0.1:5100"),
            ("http://[::1]:5100", "[::1]:5100"),
            ("HTTP://LOCALHOST:5100", "localhost:5100"),
        ] {
            assert_eq!(
                check_origin(&strict, Some(origin), Some(host)).unwrap(),
                Some(origin),
                "{origin} on {host}"
            );
        }
        for (origin, host) in [
            // Another port of the same machine is another origin (a dev server, say).
            ("http://localhost:3000", "localhost:5100"),
            ("https://localhost:5100", "localhost:5100"),
            ("http://127.0.0.1:5100", "localhost:5100"),
            // A rebound name equal to Host is still not loopback.
            ("http://evil.example:5100", "evil.example:5100"),
        ] {
            assert!(
                check_origin(&strict, Some(origin), Some(host)).is_err(),
                "{origin} on {host}"
            );
        }
        assert!(check_origin(&strict, Some("http://localhost:5100"), None).is_err());
    }
}
