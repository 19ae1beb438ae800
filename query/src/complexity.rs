//! Caps on the size and nesting of SQL text, checked before parsing.
//!
//! Parsing, planning, optimizing and finally dropping an expression tree
//! all recurse over it. DataFusion's recursion protection grows the stack
//! where it recurses, and its parser stops at a nesting depth, but a flat
//! chain (`1+1+...+1`) is parsed in a loop into a tree as deep as it is
//! long. One linear pass over the tokens bounds the text, the nesting of
//! parentheses and the number of operators, so every later step works on a
//! tree of bounded depth.

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::error::{QueryError, Result};

/// Longest SQL text accepted, in bytes.
pub(crate) const MAX_SQL_BYTES: usize = 64 * 1024;
/// Deepest nesting of parentheses.
pub(crate) const MAX_NESTING: usize = 64;
/// Most operators and expression keywords in one query.
pub(crate) const MAX_OPERATORS: usize = 4096;

/// Refuses SQL too long or too deeply nested to plan safely. Text the
/// tokenizer rejects passes: the parser then reports the error with its
/// position.
pub(crate) fn check_sql_complexity(sql: &str) -> Result<()> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(QueryError::TooComplex(format!(
            "the query is {} bytes long; at most {MAX_SQL_BYTES} are accepted",
            sql.len()
        )));
    }
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize() else {
        return Ok(());
    };
    let (mut depth, mut deepest, mut operators) = (0usize, 0usize, 0usize);
    for token in &tokens {
        match token {
            Token::LParen => {
                depth += 1;
                deepest = deepest.max(depth);
                operators += 1;
            }
            Token::RParen => depth = depth.saturating_sub(1),
            // Not operators: names, literals and punctuation.
            Token::Whitespace(_)
            | Token::Comma
            | Token::Period
            | Token::RBracket
            | Token::RBrace
            | Token::SemiColon
            | Token::EOF
            | Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::NationalStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::HexStringLiteral(_) => {}
            Token::Word(w) => {
                if matches!(
                    w.keyword,
                    Keyword::AND
                        | Keyword::OR
                        | Keyword::NOT
                        | Keyword::CASE
                        | Keyword::WHEN
                        | Keyword::SELECT
                        | Keyword::UNION
                        | Keyword::JOIN
                        | Keyword::IS
                        | Keyword::LIKE
                        | Keyword::ILIKE
                        | Keyword::IN
                        | Keyword::BETWEEN
                        | Keyword::CAST
                        | Keyword::TRY_CAST
                        | Keyword::EXISTS
                ) {
                    operators += 1;
                }
            }
            // Every other token is an operator of some kind (`+`, `::`,
            // `<<`, `->`, `[`, ...).
            _ => operators += 1,
        }
    }
    if deepest > MAX_NESTING {
        return Err(QueryError::TooComplex(format!(
            "parentheses are nested {deepest} deep; at most {MAX_NESTING} levels are accepted"
        )));
    }
    if operators > MAX_OPERATORS {
        return Err(QueryError::TooComplex(format!(
            "the query has {operators} operators; at most {MAX_OPERATORS} are accepted"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn too_complex(sql: &str) -> bool {
        matches!(check_sql_complexity(sql), Err(QueryError::TooComplex(_)))
    }

    #[test]
    fn ordinary_queries_pass() {
        check_sql_complexity(
            "SELECT building_id, sum(kwh) FROM building_daily WHERE day >= '2025-01-01' \
             AND (kwh > 1 OR kwh < -1) GROUP BY building_id ORDER BY 2 DESC",
        )
        .unwrap();
        let list: Vec<String> = (0..5000).map(|i| format!("'s{i}'")).collect();
        check_sql_complexity(&format!(
            "SELECT * FROM readings WHERE sensor_id IN ({})",
            list.join(",")
        ))
        .unwrap();
        // The parser reports unterminated strings itself.
        check_sql_complexity("SELECT 'abc").unwrap();
    }

    #[test]
    fn long_flat_and_deep_queries_are_refused() {
        assert!(too_complex(&format!("SELECT 1{}", "+1".repeat(100_000))));
        assert!(too_complex(&format!("SELECT 1{}", "+1".repeat(5_000))));
        assert!(too_complex(&format!("SELECT 1{}", "::INT".repeat(10_000))));
        assert!(too_complex(&format!(
            "SELECT 1{}",
            " IS NULL".repeat(5_000)
        )));
        assert!(too_complex(&format!(
            "SELECT {}1{}",
            "(".repeat(20_000),
            ")".repeat(20_000)
        )));
        assert!(too_complex(&format!(
            "SELECT {}1{}",
            "(".repeat(65),
            ")".repeat(65)
        )));
        assert!(!too_complex(&format!(
            "SELECT {}1{}",
            "(".repeat(64),
            ")".repeat(64)
        )));
    }
}
