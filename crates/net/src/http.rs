//! Small pieces every HTTP client of flow-ci needs, written once.

use std::time::Duration;

/// Percent-encoding of one URL component (RFC 3986 unreserved kept).
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// How long the service asks to wait: `retry-after-ms`, `x-ms-retry-after-ms`
/// (Azure), or `Retry-After` in seconds; at most 10 minutes.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    retry_after_at(headers, std::time::SystemTime::now())
}

/// [`retry_after`] as of `now`: `Retry-After` may also be an HTTP date
/// (RFC 9110 §10.2.3), which is a wait until then.
fn retry_after_at(headers: &reqwest::header::HeaderMap, now: std::time::SystemTime) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let number = |name: &str| text(name).and_then(|v| v.parse::<f64>().ok());
    let date = || {
        let at = httpdate::parse_http_date(text("retry-after")?).ok()?;
        Some(at.duration_since(now).unwrap_or_default().as_secs_f64())
    };
    let secs = number("retry-after-ms")
        .or_else(|| number("x-ms-retry-after-ms"))
        .map(|ms| ms / 1000.0)
        .or_else(|| number("retry-after"))
        .or_else(date)?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(600.0)))
}

/// An error with its sources, `a: b: c` (reqwest hides the cause in them).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A transport error by its cause ("cannot connect: Connection refused"),
/// without the URL (its query may carry a SAS token or a user's input).
pub fn transport_error(e: &reqwest::Error) -> String {
    let causes = std::iter::successors(std::error::Error::source(e), |c| c.source());
    let cause = causes.last().map(|c| format!(": {c}")).unwrap_or_default();
    if e.is_timeout() {
        format!("timed out{cause}")
    } else if e.is_connect() {
        format!("cannot connect{cause}")
    } else if e.is_decode() || e.is_body() {
        format!("the answer could not be read{cause}")
    } else {
        format!("the request failed{cause}")
    }
}

/// A redirect policy that follows redirects (at most 10, reqwest's default)
/// only within the origin (scheme, host, port) of the first request, and
/// fails on one that leaves it.
///
/// reqwest's default policy removes `Authorization`, `Cookie` and
/// `Proxy-Authorization` on a cross-host redirect
/// (<https://docs.rs/reqwest/0.13/reqwest/redirect/index.html>, its
/// `remove_sensitive_headers`), but forwards custom credential headers
/// (Azure OpenAI's `api-key`, Azure ML's `aml-user-token`, managed identity's
/// `X-IDENTITY-HEADER`) and re-sends the body (a client secret) on 307/308:
/// credentials must only ever reach their own origin.
pub fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let first = attempt.previous().first().cloned();
        match first {
            Some(first) if !same_origin(&first, attempt.url()) => {
                let error = CrossOriginRedirect { from: origin(&first), to: origin(attempt.url()) };
                attempt.error(error)
            }
            _ if attempt.previous().len() > 10 => attempt.error("too many redirects"),
            _ => attempt.follow(),
        }
    })
}

/// A redirect refused by [`same_origin_redirects`].
#[derive(Debug)]
pub struct CrossOriginRedirect {
    from: String,
    to: String,
}

impl std::fmt::Display for CrossOriginRedirect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "refused a redirect from {} to another origin ({}): credentials stay with their origin",
            self.from, self.to
        )
    }
}

impl std::error::Error for CrossOriginRedirect {}

/// Whether two URLs share scheme, host and port (the port a scheme implies counts).
pub fn same_origin(a: &reqwest::Url, b: &reqwest::Url) -> bool {
    a.scheme() == b.scheme() && a.host_str() == b.host_str() && a.port_or_known_default() == b.port_or_known_default()
}

/// `scheme://host:port` of a URL, for messages.
pub fn origin(url: &reqwest::Url) -> String {
    url.origin().ascii_serialization()
}

/// `text` with each of `secrets` (and anything after `Bearer ` or `token `,
/// the ways an echoed `Authorization` header reads) replaced by `***`, at
/// most `max` characters: a proxy or server may echo what it was sent, and
/// its answer ends up in logs.
pub fn redact(text: &str, secrets: &[&str], max: usize) -> String {
    let mut text = text.to_string();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        text = text.replace(secret, "***");
    }
    let text = redact_schemes(&text);
    if text.chars().count() <= max {
        return text;
    }
    text.chars().take(max).collect::<String>() + "…"
}

/// The word after `Bearer` replaced by `***`, and after `token` or `Basic`
/// (any case) when it looks like a credential (8 characters or more, a digit
/// among them), so "the token has expired" reads as it was.
fn redact_schemes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut previous = "";
    let mut at = 0;
    for (start, end) in words(text) {
        let word = &text[start..end];
        out.push_str(&text[at..start]);
        out.push_str(if is_credential(previous, word) { "***" } else { word });
        previous = word;
        at = end;
    }
    out.push_str(&text[at..]);
    out
}

fn is_credential(scheme: &str, word: &str) -> bool {
    let looks_secret = word.len() >= 8 && word.bytes().any(|b| b.is_ascii_digit());
    scheme.eq_ignore_ascii_case("bearer")
        || ((scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("basic")) && looks_secret)
}

/// The byte ranges of the words of `text`: runs of characters other than
/// white space, quotes and `<>,;=:()[]{}`.
fn words(text: &str) -> Vec<(usize, usize)> {
    let separator = |c: char| c.is_whitespace() || "\"'<>,;=:()[]{}`".contains(c);
    let mut words = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (separator(c), start) {
            (true, Some(s)) => {
                words.push((s, i));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        words.push((s, text.len()));
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_secrets_and_authorization_values() {
        let body =
            r#"{"message":"Bad credentials","echo":"Authorization: Bearer ghs_abc123","t":"token ghp_16C7e42F292c"}"#;
        let text = redact(body, &["ghs_abc123"], 1000);
        assert!(!text.contains("ghs_abc123") && !text.contains("ghp_16C7"), "{text}");
        assert!(text.contains("Bad credentials"), "{text}");
        assert_eq!(redact("raw ghs_abc123 here", &["ghs_abc123"], 1000), "raw *** here");
        assert_eq!(redact("Bearer=s3cr3t", &[], 100), "Bearer=***");
        assert_eq!(redact("the token has expired", &[], 100), "the token has expired");
        assert_eq!(redact("abcdef", &[], 3), "abc…");
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let u = |s: &str| reqwest::Url::parse(s).unwrap();
        assert!(same_origin(&u("https://api.github.com/a"), &u("https://api.github.com:443/b?page=2")));
        assert!(!same_origin(&u("http://127.0.0.1:1/a"), &u("http://127.0.0.1:2/a")));
        assert!(!same_origin(&u("https://h/a"), &u("http://h/a")));
        assert!(!same_origin(&u("https://h/a"), &u("https://evil/a")));
    }

    #[test]
    fn retry_after_headers() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("x-ms-retry-after-ms", "250".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(250)));
        h.insert("retry-after-ms", "150".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(150)));
        // An HTTP date: the wait until then; a date passed is no wait.
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // Wed, 21 Oct 2015 07:28:00 GMT
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("retry-after", "Wed, 21 Oct 2015 07:28:30 GMT".parse().unwrap());
        assert_eq!(retry_after_at(&h, now), Some(Duration::from_secs(30)));
        h.insert("retry-after", "Wed, 21 Oct 2015 07:27:00 GMT".parse().unwrap());
        assert_eq!(retry_after_at(&h, now), Some(Duration::ZERO));
        h.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after_at(&h, now), None);
    }

    #[test]
    fn percent_encoding_keeps_unreserved_characters() {
        assert_eq!(percent_encode("a b/c:d"), "a%20b%2Fc%3Ad");
        assert_eq!(percent_encode("A-z_0.9~"), "A-z_0.9~");
    }
}
