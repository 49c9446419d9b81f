//! `:name` placeholders in declared SQL, rewritten to reads of the job's
//! one bound parameter (`$1`, a jsonb of the args and the user's id), cast
//! to the parameter's declared type. Values are never spliced into SQL.
//!
//! Hand-written rather than a SQL parser crate: the only thing to find is
//! `:name` outside strings, quoted identifiers, dollar-quoted bodies and
//! comments, and `::` casts; a full parser (sqlparser and the like) would
//! also refuse valid PostgreSQL it does not know, and PostgreSQL itself
//! checks the statement when the runner prepares it at start.

/// Why a statement's placeholders could not be rewritten.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaceholderError {
    /// `:name` names no declared parameter (nor `user_id`).
    #[error("unknown parameter :{0}")]
    Unknown(String),
    /// A positional `$1`: the statement's parameters are named.
    #[error("positional parameter ${0}: use :name placeholders")]
    Positional(String),
    /// A string, identifier, dollar quote or comment that never ends.
    #[error("unterminated {0}")]
    Unterminated(&'static str),
}

/// Rewrites every `:name` in `sql` with `replace(name)`, or the name it
/// does not know.
pub fn rewrite(
    sql: &str,
    mut replace: impl FnMut(&str) -> Option<String>,
) -> Result<String, PlaceholderError> {
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len() + 64);
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' => i = skip_quoted(bytes, i, b'\'', "string")?,
            b'"' => i = skip_quoted(bytes, i, b'"', "quoted identifier")?,
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = sql[i..].find('\n').map_or(bytes.len(), |n| i + n);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => i = skip_block_comment(bytes, i)?,
            b'$' => {
                if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
                    let end = ident_end(bytes, i + 1);
                    return Err(PlaceholderError::Positional(sql[i + 1..end].to_owned()));
                }
                i = skip_dollar_quote(sql, i)?;
            }
            b':' if bytes.get(i + 1) == Some(&b':') => i += 2,
            b':' if bytes
                .get(i + 1)
                .is_some_and(|b| b.is_ascii_lowercase() || *b == b'_') =>
            {
                let end = ident_end(bytes, i + 1);
                let name = &sql[i + 1..end];
                let replacement =
                    replace(name).ok_or_else(|| PlaceholderError::Unknown(name.to_owned()))?;
                out.push_str(&sql[copied..i]);
                out.push_str(&replacement);
                copied = end;
                i = end;
            }
            _ => i += 1,
        }
    }
    out.push_str(&sql[copied..]);
    Ok(out)
}

fn ident_end(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
        i += 1;
    }
    i
}

/// Past a `'...'` or `"..."` whose quote is doubled to escape it (and, for
/// strings, backslash escapes: safe to skip either way).
fn skip_quoted(
    bytes: &[u8],
    start: usize,
    quote: u8,
    what: &'static str,
) -> Result<usize, PlaceholderError> {
    let mut i = start + 1;
    while i < bytes.len() {
        if bytes[i] == b'\\' && quote == b'\'' {
            i += 2;
            continue;
        }
        if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return Ok(i + 1);
        }
        i += 1;
    }
    Err(PlaceholderError::Unterminated(what))
}

fn skip_block_comment(bytes: &[u8], start: usize) -> Result<usize, PlaceholderError> {
    let mut depth = 0;
    let mut i = start;
    while i + 1 < bytes.len() {
        if bytes[i] == b'/' && bytes[i + 1] == b'*' {
            depth += 1;
            i += 2;
        } else if bytes[i] == b'*' && bytes[i + 1] == b'/' {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return Ok(i);
            }
        } else {
            i += 1;
        }
    }
    Err(PlaceholderError::Unterminated("comment"))
}

/// Past `$tag$ ... $tag$` (the tag may be empty); a `$` that does not open
/// one (part of an identifier like `a$b`) is stepped over.
fn skip_dollar_quote(sql: &str, start: usize) -> Result<usize, PlaceholderError> {
    let bytes = sql.as_bytes();
    let tag_end = ident_end(bytes, start + 1);
    if bytes.get(tag_end) != Some(&b'$') {
        return Ok(start + 1);
    }
    let tag = &sql[start..=tag_end];
    match sql[tag_end + 1..].find(tag) {
        Some(n) => Ok(tag_end + 1 + n + tag.len()),
        None => Err(PlaceholderError::Unterminated("dollar-quoted string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(name: &str) -> Option<String> {
        ["id", "user_id", "names"]
            .contains(&name)
            .then(|| format!("<{name}>"))
    }

    #[test]
    fn placeholders_are_replaced_and_everything_else_kept() {
        assert_eq!(
            rewrite("UPDATE t SET a = :id::text WHERE owner = :user_id", known).unwrap(),
            "UPDATE t SET a = <id>::text WHERE owner = <user_id>"
        );
        assert_eq!(
            rewrite("SELECT ':id', \":id\", $$ :id $$, $x$ :id $x$ -- :id\n, :names /* :id /* :id */ */", known)
                .unwrap(),
            "SELECT ':id', \":id\", $$ :id $$, $x$ :id $x$ -- :id\n, <names> /* :id /* :id */ */"
        );
        assert_eq!(
            rewrite("SELECT 'it''s :id', E'\\' :id', a[1:2], x::int", known).unwrap(),
            "SELECT 'it''s :id', E'\\' :id', a[1:2], x::int"
        );
    }

    #[test]
    fn unknown_names_positionals_and_open_quotes_are_refused() {
        assert_eq!(
            rewrite("SELECT :nope", known),
            Err(PlaceholderError::Unknown("nope".into()))
        );
        assert_eq!(
            rewrite("SELECT $1", known),
            Err(PlaceholderError::Positional("1".into()))
        );
        assert!(matches!(
            rewrite("SELECT 'open", known),
            Err(PlaceholderError::Unterminated(_))
        ));
        assert!(matches!(
            rewrite("SELECT $q$ open", known),
            Err(PlaceholderError::Unterminated(_))
        ));
        assert!(matches!(
            rewrite("SELECT /* open", known),
            Err(PlaceholderError::Unterminated(_))
        ));
    }

    #[test]
    fn any_text_is_answered_without_a_panic() {
        for text in [
            "", ":", "'", "$", "$$", "/*", "--", "::", ":_", "é:id", "$a", "a$b:id",
        ] {
            let _ = rewrite(text, known);
        }
    }
}
