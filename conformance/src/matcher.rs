//! Pattern matching of expected JSON against actual JSON, with variables.
//!
//! - `"$name"` binds `name` to the actual value on first sight, compares after that;
//!   `"$name@kind"` also checks the kind; `"!$name"` is anything but the bound value.
//! - `"@uuid"`, `"@time"`, `"@number"`, `"@int"`, `"@string"`, `"@bool"`, `"@any"` check a kind.
//!   `"@time"` is an RFC 3339 UTC time with milliseconds, between the session start and now,
//!   and not earlier than the previous `"@time"` of the same document.
//! - Objects match key for key (no extra keys) unless the pattern has `"...": true`.
//! - Arrays match element for element, same length.

use serde_json::Value;
use std::collections::BTreeMap;

/// Variables captured so far.
pub type Vars = BTreeMap<String, Value>;

/// The clock window timestamps must fall into (unix milliseconds).
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Session start (minus slack).
    pub start_ms: u64,
    /// Now (plus slack).
    pub now_ms: u64,
}

/// Matches `actual` against `pattern`; binds new variables into `vars`.
pub fn matches(
    pattern: &Value,
    actual: &Value,
    vars: &mut Vars,
    clock: Clock,
) -> Result<(), String> {
    let mut last_time = None;
    // Bind into a scratch copy so that a failed match binds nothing.
    let mut scratch = vars.clone();
    go(pattern, actual, &mut scratch, clock, &mut last_time, "")?;
    *vars = scratch;
    Ok(())
}

fn go(
    pattern: &Value,
    actual: &Value,
    vars: &mut Vars,
    clock: Clock,
    last_time: &mut Option<u64>,
    at: &str,
) -> Result<(), String> {
    let here = if at.is_empty() { "." } else { at };
    match pattern {
        Value::String(p) if p.starts_with('$') => {
            let (name, kind) = match p[1..].split_once('@') {
                Some((name, kind)) => (name, Some(kind)),
                None => (&p[1..], None),
            };
            if let Some(kind) = kind {
                check_kind(kind, actual, clock, last_time, here)?;
            }
            match vars.get(name) {
                Some(bound) if bound == actual => Ok(()),
                Some(bound) => Err(format!("{here}: expected ${name} = {bound}, got {actual}")),
                None => {
                    vars.insert(name.to_string(), actual.clone());
                    Ok(())
                }
            }
        }
        Value::String(p) if p.starts_with("!$") => match vars.get(&p[2..]) {
            Some(bound) if bound != actual => Ok(()),
            Some(_) => Err(format!(
                "{here}: expected anything but ${}, got {actual}",
                &p[2..]
            )),
            None => Err(format!("{here}: unbound variable ${}", &p[2..])),
        },
        Value::String(p) if p.starts_with('@') => {
            check_kind(&p[1..], actual, clock, last_time, here)
        }
        Value::Object(pmap) => {
            let Value::Object(amap) = actual else {
                return Err(format!("{here}: expected an object, got {actual}"));
            };
            let open = pmap.get("...") == Some(&Value::Bool(true));
            for (key, p) in pmap {
                if key == "..." {
                    continue;
                }
                match amap.get(key) {
                    Some(a) => go(p, a, vars, clock, last_time, &format!("{at}.{key}"))?,
                    None => return Err(format!("{here}: missing key `{key}` in {actual}")),
                }
            }
            if !open && let Some(extra) = amap.keys().find(|k| !pmap.contains_key(*k)) {
                return Err(format!("{here}: unexpected key `{extra}` in {actual}"));
            }
            Ok(())
        }
        Value::Array(parr) => {
            let Value::Array(aarr) = actual else {
                return Err(format!("{here}: expected an array, got {actual}"));
            };
            if parr.len() != aarr.len() {
                return Err(format!(
                    "{here}: expected {} elements, got {}: {actual}",
                    parr.len(),
                    aarr.len()
                ));
            }
            for (i, (p, a)) in parr.iter().zip(aarr).enumerate() {
                go(p, a, vars, clock, last_time, &format!("{at}[{i}]"))?;
            }
            Ok(())
        }
        Value::Number(p) => match actual.as_f64() {
            Some(a) if p.as_f64() == Some(a) => Ok(()),
            _ => Err(format!("{here}: expected {pattern}, got {actual}")),
        },
        _ if pattern == actual => Ok(()),
        _ => Err(format!("{here}: expected {pattern}, got {actual}")),
    }
}

fn check_kind(
    kind: &str,
    actual: &Value,
    clock: Clock,
    last_time: &mut Option<u64>,
    here: &str,
) -> Result<(), String> {
    let ok = match kind {
        "any" => true,
        "string" => actual.is_string(),
        "number" => actual.is_number(),
        "int" => actual.is_u64() || actual.is_i64(),
        "bool" => actual.is_boolean(),
        "uuid" => actual.as_str().is_some_and(is_uuid_v4),
        "time" | "timefmt" => {
            let Some(text) = actual.as_str() else {
                return Err(format!("{here}: expected a timestamp, got {actual}"));
            };
            let ms = parse_time(text).ok_or_else(|| {
                format!("{here}: `{text}` is not an RFC 3339 UTC time with milliseconds")
            })?;
            if ms < clock.start_ms || ms > clock.now_ms {
                return Err(format!(
                    "{here}: timestamp {text} is outside the session ({} .. {})",
                    livebridge_core::format_unix_millis(clock.start_ms),
                    livebridge_core::format_unix_millis(clock.now_ms)
                ));
            }
            if kind == "time" {
                if let Some(last) = *last_time
                    && ms < last
                {
                    return Err(format!(
                        "{here}: timestamp {text} is earlier than the previous one ({})",
                        livebridge_core::format_unix_millis(last)
                    ));
                }
                *last_time = Some(ms);
            }
            true
        }
        other => return Err(format!("{here}: unknown pattern kind @{other}")),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{here}: expected @{kind}, got {actual}"))
    }
}

/// `2026-11-25T15:08:21.123Z` → unix milliseconds; `None` for any other shape.
pub fn parse_time(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    let shape = b.len() == 24
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            23 => *c == b'Z',
            _ => c.is_ascii_digit(),
        });
    if !shape {
        return None;
    }
    let at = humantime::parse_rfc3339(text).ok()?;
    let ms = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
    u64::try_from(ms).ok()
}

fn is_uuid_v4(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit() && !c.is_ascii_uppercase(),
        })
        && b[14] == b'4'
        && matches!(b[19], b'8' | b'9' | b'a' | b'b')
}

/// Replaces `$name` references in a request value by their bound values. A string that is
/// exactly `"$name"` becomes the bound value itself.
pub fn substitute(value: &Value, vars: &Vars) -> Result<Value, String> {
    Ok(match value {
        Value::String(s) => {
            if let Some(name) = s.strip_prefix('$')
                && is_ident(name)
            {
                return vars
                    .get(name)
                    .cloned()
                    .ok_or_else(|| format!("unbound variable ${name}"));
            }
            Value::String(substitute_text(s, vars)?)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| substitute(v, vars))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                out.insert(k.clone(), substitute(v, vars)?);
            }
            Value::Object(out)
        }
        other => other.clone(),
    })
}

fn is_ident(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Replaces `$name` inside a text (paths, raw bodies).
pub fn substitute_text(text: &str, vars: &Vars) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let len = after
            .bytes()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == b'_')
            .count();
        if len == 0 {
            out.push('$');
            rest = after;
            continue;
        }
        let name = &after[..len];
        match vars.get(name) {
            Some(Value::String(s)) => out.push_str(s),
            Some(other) => out.push_str(&other.to_string()),
            None => return Err(format!("unbound variable ${name}")),
        }
        rest = &after[len..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CLOCK: Clock = Clock {
        start_ms: 1_795_608_000_000,
        now_ms: 1_795_608_060_000,
    };

    #[test]
    fn variables_bind_once_then_compare() {
        let mut vars = Vars::new();
        matches(&json!({"id": "$a"}), &json!({"id": "x"}), &mut vars, CLOCK).unwrap();
        assert!(matches(&json!({"id": "$a"}), &json!({"id": "y"}), &mut vars, CLOCK).is_err());
        matches(&json!({"id": "!$a"}), &json!({"id": "y"}), &mut vars, CLOCK).unwrap();
        assert_eq!(
            substitute_text("/p?client_id=$a&x=1", &vars).unwrap(),
            "/p?client_id=x&x=1"
        );
    }

    #[test]
    fn objects_are_closed_unless_marked_open() {
        let mut vars = Vars::new();
        let actual = json!({"a": 1, "b": 2.0});
        assert!(matches(&json!({"a": 1}), &actual, &mut vars, CLOCK).is_err());
        matches(&json!({"a": 1, "...": true}), &actual, &mut vars, CLOCK).unwrap();
        matches(&json!({"a": 1.0, "b": 2}), &actual, &mut vars, CLOCK).unwrap();
    }

    #[test]
    fn timestamps_need_format_window_and_order() {
        let mut vars = Vars::new();
        let ok = json!(["2026-11-25T12:00:00.100Z", "2026-11-25T12:00:00.200Z"]);
        matches(&json!(["@time", "@time"]), &ok, &mut vars, CLOCK).unwrap();
        let backwards = json!(["2026-11-25T12:00:00.200Z", "2026-11-25T12:00:00.100Z"]);
        assert!(matches(&json!(["@time", "@time"]), &backwards, &mut vars, CLOCK).is_err());
        matches(
            &json!(["@timefmt", "@timefmt"]),
            &backwards,
            &mut vars,
            CLOCK,
        )
        .unwrap();
        for bad in [
            "2026-11-25T12:00:00Z",
            "2026-11-25T12:00:00.100+00:00",
            "2000-01-01T00:00:00.000Z",
        ] {
            assert!(
                matches(&json!("@time"), &json!(bad), &mut vars, CLOCK).is_err(),
                "{bad}"
            );
        }
    }
}
