//! Taking `sslmode`, `sslrootcert`, `sslcert` and `sslkey` out of a
//! connection string.
//!
//! tokio-postgres parses `sslmode` itself but knows only `disable`, `prefer`
//! and `require`, and rejects the other three as unknown options, so all
//! four are read here and the rest of the string is handed on untouched. The
//! scanning mirrors tokio-postgres's own parsers (its URL parser and its
//! key=value parser), so that every other parameter means to it what it
//! meant before: a malformed remainder is left as it is for tokio-postgres
//! to report.

/// A connection string with the two TLS parameters taken out.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Taken {
    /// The string without them, for `tokio_postgres::Config`.
    pub(crate) rest: String,
    /// The last `sslmode` given, decoded.
    pub(crate) sslmode: Option<String>,
    /// The last `sslrootcert` given, decoded.
    pub(crate) sslrootcert: Option<String>,
    /// The last `sslcert` given (the client's certificate chain), decoded.
    pub(crate) sslcert: Option<String>,
    /// The last `sslkey` given (the client's private key), decoded.
    pub(crate) sslkey: Option<String>,
}

/// The URL schemes tokio-postgres (like libpq) reads as a URL; anything
/// else is a key=value string.
const URL_PREFIXES: [&str; 2] = ["postgres://", "postgresql://"];

/// Takes `sslmode` and `sslrootcert` out of `conn`, a URL or a key=value
/// string. Errors only on a value that cannot be decoded.
pub(crate) fn take(conn: &str) -> Result<Taken, String> {
    match URL_PREFIXES.iter().find(|p| conn.starts_with(*p)) {
        Some(prefix) => from_url(conn, prefix.len()),
        None => Ok(from_key_values(conn)),
    }
}

/// Which of the four a parameter name is, if any.
enum Wanted {
    Mode,
    RootCert,
    Cert,
    Key,
}

fn wanted(key: &str) -> Option<Wanted> {
    match key {
        "sslmode" => Some(Wanted::Mode),
        "sslrootcert" => Some(Wanted::RootCert),
        "sslcert" => Some(Wanted::Cert),
        "sslkey" => Some(Wanted::Key),
        _ => None,
    }
}

impl Taken {
    /// Keeps `value` as the parameter `which`: the last one given wins.
    fn set(&mut self, which: Wanted, value: String) {
        let slot = match which {
            Wanted::Mode => &mut self.sslmode,
            Wanted::RootCert => &mut self.sslrootcert,
            Wanted::Cert => &mut self.sslcert,
            Wanted::Key => &mut self.sslkey,
        };
        *slot = Some(value);
    }

    fn with_rest(rest: String) -> Self {
        Taken {
            rest,
            sslmode: None,
            sslrootcert: None,
            sslcert: None,
            sslkey: None,
        }
    }
}

/// The URL form. As in tokio-postgres, the credentials end at the first
/// `@` and the query starts at the first `?` after them; in the query a key
/// runs to the next `=` and its value to the next `&`.
fn from_url(url: &str, body_start: usize) -> Result<Taken, String> {
    let body = &url[body_start..];
    let after_credentials = body.find('@').map_or(0, |at| at + 1);
    let Some(question) = body[after_credentials..].find('?') else {
        return Ok(Taken::with_rest(url.to_owned()));
    };
    let query_at = body_start + after_credentials + question;
    let head = &url[..query_at];
    let mut query = &url[query_at + 1..];
    let mut kept = Vec::new();
    let mut taken = Taken::with_rest(String::new());
    while !query.is_empty() {
        let Some(eq) = query.find('=') else {
            // tokio-postgres rejects this ("unterminated parameter").
            kept.push(query);
            break;
        };
        let after_eq = &query[eq + 1..];
        let (value, next) = match after_eq.find('&') {
            Some(amp) => (&after_eq[..amp], &after_eq[amp + 1..]),
            None => (after_eq, ""),
        };
        let pair = &query[..eq + 1 + value.len()];
        match wanted(&percent_decode(&query[..eq])?) {
            Some(which) => taken.set(which, percent_decode(value)?),
            None => kept.push(pair),
        }
        query = next;
    }
    taken.rest = if kept.is_empty() {
        head.to_owned()
    } else {
        format!("{head}?{}", kept.join("&"))
    };
    Ok(taken)
}

/// Decodes `%XX` escapes as tokio-postgres does: a `%` not followed by two
/// hex digits stays as it is, and the result must be UTF-8.
fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match (bytes[i], bytes.get(i + 1..i + 3)) {
            (b'%', Some(&[hi, lo])) => hex(hi).zip(hex(lo)).map(|(hi, lo)| hi << 4 | lo),
            _ => None,
        };
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| "a parameter is not UTF-8 once %-decoded".to_owned())
}

fn hex(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|d| d as u8)
}

/// The key=value form: `key = value` pairs separated by white space, a
/// value either `'quoted'` or plain, `\` escaping the next character in
/// both. At the first thing tokio-postgres would stop at or reject, the rest
/// is kept as it is.
fn from_key_values(conn: &str) -> Taken {
    let mut scan = Scanner { s: conn, at: 0 };
    let mut kept: Vec<&str> = Vec::new();
    let mut taken = Taken::with_rest(String::new());
    loop {
        scan.skip_ws();
        let start = scan.at;
        match scan.pair() {
            Some((key, value)) => match wanted(key) {
                Some(which) => taken.set(which, value),
                None => kept.push(&conn[start..scan.at]),
            },
            None => {
                let left = conn[start..].trim_end();
                if !left.is_empty() {
                    kept.push(left);
                }
                break;
            }
        }
    }
    taken.rest = kept.join(" ");
    taken
}

struct Scanner<'a> {
    s: &'a str,
    at: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<char> {
        self.s[self.at..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += c.len_utf8();
        Some(c)
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    /// One `key = value`, or None at the end or at anything malformed.
    fn pair(&mut self) -> Option<(&'a str, String)> {
        let start = self.at;
        while self.peek().is_some_and(|c| !c.is_whitespace() && c != '=') {
            self.bump();
        }
        let key = &self.s[start..self.at];
        if key.is_empty() {
            return None;
        }
        self.skip_ws();
        if self.bump() != Some('=') {
            return None;
        }
        self.skip_ws();
        let value = if self.peek() == Some('\'') {
            self.bump();
            self.quoted()?
        } else {
            self.plain()?
        };
        Some((key, value))
    }

    fn quoted(&mut self) -> Option<String> {
        let mut value = String::new();
        loop {
            match self.bump()? {
                '\'' => return Some(value),
                '\\' => value.push(self.bump()?),
                c => value.push(c),
            }
        }
    }

    fn plain(&mut self) -> Option<String> {
        let mut value = String::new();
        while let Some(c) = self.peek().filter(|c| !c.is_whitespace()) {
            self.bump();
            if c == '\\' {
                if let Some(escaped) = self.bump() {
                    value.push(escaped);
                }
            } else {
                value.push(c);
            }
        }
        (!value.is_empty()).then_some(value)
    }
}
