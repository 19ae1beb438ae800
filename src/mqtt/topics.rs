//! Topic filters (`+` one level, `#` the rest) matched against a message's
//! topic, and sensor ids made from what the wildcards matched.

/// What the wildcards of a filter matched: one entry per `+`, then the
/// rest of a `#` (levels joined by `/`).
pub(crate) fn matches<'t>(filter: &str, topic: &'t str) -> Option<Vec<&'t str>> {
    let mut captures = Vec::new();
    let mut levels = topic.split('/');
    let mut rest_at = 0usize;
    for part in filter.split('/') {
        if part == "#" {
            let rest = &topic[rest_at.min(topic.len())..];
            captures.push(rest);
            return Some(captures);
        }
        let level = levels.next()?;
        rest_at += level.len() + 1;
        match part {
            "+" => captures.push(level),
            literal if literal == level => {}
            _ => return None,
        }
    }
    levels.next().is_none().then_some(captures)
}

/// `template` with `{1}`, `{2}`, ... replaced by the captures.
pub(crate) fn sensor_id(template: &str, captures: &[&str]) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| format!("unclosed {{ in sensor template {template:?}"))?;
        let name = &rest[open + 1..open + close];
        let value = name
            .parse::<usize>()
            .ok()
            .and_then(|i| i.checked_sub(1))
            .and_then(|i| captures.get(i))
            .ok_or_else(|| {
                format!("sensor template {template:?}: {{{name}}} names no wildcard of the pattern")
            })?;
        out.push_str(value);
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The number of wildcards of `filter`, or why it is no valid filter.
pub(crate) fn wildcards(filter: &str) -> Result<usize, String> {
    let parts: Vec<&str> = filter.split('/').collect();
    if filter.is_empty() {
        return Err("a topic pattern must not be empty".into());
    }
    for (i, p) in parts.iter().enumerate() {
        let misplaced_hash = *p == "#" && i + 1 != parts.len();
        if misplaced_hash || (p.len() > 1 && (p.contains('+') || p.contains('#'))) {
            return Err(format!(
                "{filter:?}: + and # stand alone in a level, # only last"
            ));
        }
    }
    Ok(parts.iter().filter(|p| **p == "+" || **p == "#").count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_levels_and_capture_them() {
        assert_eq!(
            matches("tele/+/SENSOR", "tele/plug1/SENSOR"),
            Some(vec!["plug1"])
        );
        assert_eq!(matches("tele/+/SENSOR", "tele/plug1/STATE"), None);
        assert_eq!(matches("tele/+/SENSOR", "tele/a/b/SENSOR"), None);
        assert_eq!(matches("tele/+", "tele/a/b"), None);
        assert_eq!(matches("emon/#", "emon/node/p1"), Some(vec!["node/p1"]));
        assert_eq!(matches("a/+/#", "a/x/y/z"), Some(vec!["x", "y/z"]));
        assert_eq!(matches("a/b", "a/b"), Some(vec![]));
        assert_eq!(matches("a/+", "a/"), Some(vec![""]));
    }

    #[test]
    fn templates_take_the_captures() {
        assert_eq!(
            sensor_id("tasmota-{1}", &["plug1"]).unwrap(),
            "tasmota-plug1"
        );
        assert_eq!(sensor_id("{2}.{1}", &["a", "b"]).unwrap(), "b.a");
        assert_eq!(sensor_id("fixed", &[]).unwrap(), "fixed");
        assert!(sensor_id("{3}", &["a"]).is_err());
        assert!(sensor_id("{0}", &["a"]).is_err());
        assert!(sensor_id("{1", &["a"]).is_err());
    }

    #[test]
    fn bad_filters_are_named() {
        assert_eq!(wildcards("tele/+/SENSOR"), Ok(1));
        assert_eq!(wildcards("a/#"), Ok(1));
        assert!(wildcards("a/#/b").is_err());
        assert!(wildcards("a/b+").is_err());
        assert!(wildcards("").is_err());
    }
}
