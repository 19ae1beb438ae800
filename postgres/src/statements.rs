//! A query string cut into statements, and the statements a PostgreSQL
//! session answers itself rather than sending to the query engine.
//!
//! Clients send session housekeeping around their queries (`SET`,
//! `BEGIN`, `SHOW server_version`, `DISCARD ALL`); wattline is read-only
//! and has no session state to change, so those are acknowledged, and
//! `SHOW` of a standard setting answers the value this server runs with.
//! The cut is lexical (quotes, quoted identifiers, dollar quotes and
//! comments are skipped), before any parser sees the text: the engine
//! still checks each statement's size and nesting first.

/// What to do with one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Statement {
    /// Sent to the query engine as is.
    Query(String),
    /// Acknowledged with this command tag, changing nothing.
    Ack(&'static str),
    /// `BEGIN` / `START TRANSACTION`: a read-only server has nothing to
    /// isolate, but the client is told it is in a transaction block.
    Begin,
    /// `COMMIT`, `END`, `ROLLBACK`, `ABORT`: the block ends.
    End(&'static str),
    /// `SHOW` of a setting: its name and value.
    Show(&'static str, String),
    /// Refused with this message.
    Unsupported(String),
}

/// The statements of `sql`, without the empty ones.
pub(crate) fn split(sql: &str) -> Vec<&str> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        i = match bytes[i] {
            b';' => {
                out.push(&sql[start..i]);
                start = i + 1;
                i + 1
            }
            // E'...': backslash escapes (a quote after a backslash is text).
            b'E' | b'e'
                if bytes.get(i + 1) == Some(&b'\'')
                    && (i == 0 || !is_identifier_byte(bytes[i - 1])) =>
            {
                skip_escaped(bytes, i + 1)
            }
            b'\'' | b'"' => skip_quoted(bytes, i),
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                memchr(bytes, i, b'\n').map_or(bytes.len(), |e| e + 1)
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => skip_block_comment(bytes, i),
            b'$' => skip_dollar_quoted(sql, i),
            _ => i + 1,
        };
    }
    out.push(&sql[start..]);
    // Pieces of only comments and blanks are no statements.
    out.retain(|s| !words(s, 1).is_empty());
    out
}

fn is_identifier_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// The end of the `E'...'` string whose quote is at `i`.
fn skip_escaped(bytes: &[u8], i: usize) -> usize {
    let mut j = i + 1;
    while j < bytes.len() {
        match bytes[j] {
            b'\\' => j += 2,
            b'\'' if bytes.get(j + 1) == Some(&b'\'') => j += 2,
            b'\'' => return j + 1,
            _ => j += 1,
        }
    }
    bytes.len()
}

fn memchr(bytes: &[u8], from: usize, b: u8) -> Option<usize> {
    bytes[from..].iter().position(|&c| c == b).map(|p| from + p)
}

/// The end of the quoted run starting at `i` (a doubled quote stays in it).
fn skip_quoted(bytes: &[u8], i: usize) -> usize {
    let quote = bytes[i];
    let mut j = i + 1;
    while j < bytes.len() {
        if bytes[j] == quote {
            if bytes.get(j + 1) == Some(&quote) {
                j += 2;
                continue;
            }
            return j + 1;
        }
        j += 1;
    }
    bytes.len()
}

/// The end of the (nesting) block comment starting at `i`.
fn skip_block_comment(bytes: &[u8], i: usize) -> usize {
    let (mut depth, mut j) = (0usize, i);
    while j + 1 < bytes.len() {
        match (bytes[j], bytes[j + 1]) {
            (b'/', b'*') => {
                depth += 1;
                j += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                j += 2;
                if depth == 0 {
                    return j;
                }
            }
            _ => j += 1,
        }
    }
    bytes.len()
}

/// After a `$tag$ ... $tag$` string starting at `i`; a `$` that opens no
/// such string (a parameter such as `$1`) is one character.
fn skip_dollar_quoted(sql: &str, i: usize) -> usize {
    let rest = &sql[i + 1..];
    let tag_len = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    let tag = &rest[..tag_len];
    if !rest[tag_len..].starts_with('$') || tag.starts_with(|c: char| c.is_ascii_digit()) {
        return i + 1;
    }
    let delimiter = &sql[i..i + tag_len + 2];
    let body = i + delimiter.len();
    sql[body..]
        .find(delimiter)
        .map_or(sql.len(), |e| body + e + delimiter.len())
}

/// The leading words of `stmt`, lowercased, comments skipped.
fn words(stmt: &str, n: usize) -> Vec<String> {
    let mut text = stmt.trim_start();
    loop {
        if let Some(rest) = text.strip_prefix("--") {
            text = rest.split_once('\n').map_or("", |(_, r)| r).trim_start();
        } else if text.starts_with("/*") {
            text = text[skip_block_comment(text.as_bytes(), 0)..].trim_start();
        } else {
            break;
        }
    }
    text.split(|c: char| c.is_whitespace() || c == '=' || c == ';')
        .filter(|w| !w.is_empty())
        .take(n)
        .map(str::to_ascii_lowercase)
        .collect()
}

/// What to do with `stmt`.
pub(crate) fn classify(stmt: &str) -> Statement {
    let w = words(stmt, 3);
    let word = |i: usize| w.get(i).map(String::as_str).unwrap_or("");
    match word(0) {
        "set" => Statement::Ack("SET"),
        "reset" => Statement::Ack("RESET"),
        "discard" => Statement::Ack("DISCARD ALL"),
        "deallocate" => Statement::Ack("DEALLOCATE"),
        "begin" => Statement::Begin,
        "start" if word(1) == "transaction" => Statement::Begin,
        "commit" | "end" => Statement::End("COMMIT"),
        "rollback" | "abort" => Statement::End("ROLLBACK"),
        "show" if w.len() == 2 => {
            let name = word(1).trim_matches('"');
            match wattline_query::SETTINGS.iter().find(|(n, _)| *n == name) {
                Some((n, v)) => Statement::Show(n, (*v).to_owned()),
                // SHOW ALL, SHOW TABLES and DataFusion's own settings.
                None => Statement::Query(stmt.to_owned()),
            }
        }
        "listen" | "unlisten" | "notify" | "copy" | "prepare" | "execute" | "declare" | "fetch"
        | "close" | "lock" | "vacuum" | "analyze" => Statement::Unsupported(format!(
            "{} is not supported: wattline answers read-only queries",
            word(0).to_ascii_uppercase()
        )),
        _ => Statement::Query(stmt.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_cut_at_semicolons_outside_quotes_and_comments() {
        let sql = "SELECT ';' AS a; SELECT \"x;y\" FROM t -- c;d\n; \
                   SELECT $$a;b$$, $tag$ ; $tag$, $1 /* x; /* y; */ z; */;;  ";
        assert_eq!(
            split(sql),
            vec![
                "SELECT ';' AS a",
                " SELECT \"x;y\" FROM t -- c;d\n",
                " SELECT $$a;b$$, $tag$ ; $tag$, $1 /* x; /* y; */ z; */",
            ]
        );
        assert_eq!(split("SELECT 'it''s; fine'"), vec!["SELECT 'it''s; fine'"]);
        assert!(split(" ; ;\n").is_empty());
        // Backslash escapes in E'' strings; comment-only pieces dropped.
        assert_eq!(
            split(r"SELECT E'it\'s; fine' AS a"),
            vec![r"SELECT E'it\'s; fine' AS a"]
        );
        assert_eq!(split("SELECT 1; -- trailing"), vec!["SELECT 1"]);
        assert!(split("-- only a comment").is_empty());
        assert!(split("/* c */ ;").is_empty());
        // A name ending in e before a quote is no E'' string.
        assert_eq!(split("SELECT name'a;b'"), vec!["SELECT name'a;b'"]);
        // Unterminated quotes and comments end at the end of the text.
        assert_eq!(split("SELECT 'a;b"), vec!["SELECT 'a;b"]);
        assert_eq!(split("SELECT 1 /* a;b"), vec!["SELECT 1 /* a;b"]);
    }

    #[test]
    fn housekeeping_is_answered_and_queries_pass_through() {
        assert_eq!(
            classify("SET extra_float_digits = 3"),
            Statement::Ack("SET")
        );
        assert_eq!(classify("set application_name='x'"), Statement::Ack("SET"));
        assert_eq!(classify(" /* hi */ BEGIN"), Statement::Begin);
        assert_eq!(classify("start transaction read only"), Statement::Begin);
        assert_eq!(classify("COMMIT"), Statement::End("COMMIT"));
        assert_eq!(classify("rollback"), Statement::End("ROLLBACK"));
        assert_eq!(
            classify("SHOW server_version"),
            Statement::Show("server_version", wattline_query::SERVER_VERSION.to_owned())
        );
        assert_eq!(
            classify("show \"TimeZone\""),
            Statement::Show("timezone", "UTC".into())
        );
        assert_eq!(
            classify("SHOW TimeZone"),
            Statement::Show("timezone", "UTC".into())
        );
        assert_eq!(
            classify("SHOW TABLES"),
            Statement::Query("SHOW TABLES".into())
        );
        assert!(matches!(
            classify("COPY readings TO STDOUT"),
            Statement::Unsupported(_)
        ));
        assert_eq!(
            classify("-- set\nSELECT 1"),
            Statement::Query("-- set\nSELECT 1".into())
        );
    }
}
