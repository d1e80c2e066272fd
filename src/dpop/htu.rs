//! The `htu` comparison of RFC 9449 §4.3: both sides reduced to `scheme://host[:port]/path` with
//! the syntax-based normalisation of RFC 3986 §6.2.2 (scheme and host lowercased, default port
//! dropped, percent-encodings of unreserved characters decoded and the others uppercased).

use http::Uri;

/// Normalises an absolute `http`/`https` URL without query or fragment: a proof's `htu`, or the
/// external base URL of a service (whose trailing `/` is then dropped by the caller).
pub(crate) fn normalise(url: &str) -> Result<String, &'static str> {
    if url.contains('#') {
        return Err("htu has a fragment");
    }
    if url.contains('?') {
        return Err("htu has a query");
    }
    let uri: Uri = url.parse().map_err(|_| "htu is not a URL")?;
    let scheme = uri.scheme_str().ok_or("htu is not an absolute URL")?;
    let default_port = if scheme.eq_ignore_ascii_case("https") {
        443
    } else if scheme.eq_ignore_ascii_case("http") {
        80
    } else {
        return Err("htu is not an http or https URL");
    };
    let authority = uri.authority().ok_or("htu has no host")?;
    if authority.as_str().contains('@') {
        return Err("htu has user information");
    }
    let host = authority.host();
    if host.is_empty() {
        return Err("htu has no host");
    }
    let mut out = String::with_capacity(url.len());
    out.push_str(&scheme.to_ascii_lowercase());
    out.push_str("://");
    out.push_str(&host.to_ascii_lowercase());
    match authority.port_u16() {
        Some(port) if port != default_port => {
            out.push(':');
            out.push_str(&port.to_string());
        }
        _ => {}
    }
    push_path(&mut out, uri.path())?;
    Ok(out)
}

/// Appends `path` normalised (`/` when empty): `%XX` of an unreserved character decoded, any
/// other escape uppercased. A broken escape is an error.
pub(crate) fn push_path(out: &mut String, path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        out.push('/');
        return Ok(());
    }
    if !path.contains('%') {
        out.push_str(path);
        return Ok(());
    }
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = path.get(i + 1..i + 3).ok_or("broken percent-encoding")?;
            let byte = u8::from_str_radix(hex, 16).map_err(|_| "broken percent-encoding")?;
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                out.push(char::from(byte));
            } else {
                out.push('%');
                out.push_str(&hex.to_ascii_uppercase());
            }
            i += 3;
        } else {
            let next = path[i..].find('%').map_or(path.len(), |n| i + n);
            out.push_str(&path[i..next]);
            i = next;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_per_rfc_3986() {
        let n = |u: &str| normalise(u);
        assert_eq!(
            n("https://API.Example.com/a"),
            Ok("https://api.example.com/a".into())
        );
        assert_eq!(
            n("HTTPS://a.example:443/a"),
            Ok("https://a.example/a".into())
        );
        assert_eq!(n("http://a.example:80"), Ok("http://a.example/".into()));
        assert_eq!(
            n("https://a.example:8443/a"),
            Ok("https://a.example:8443/a".into())
        );
        assert_eq!(
            n("http://a.example:443/"),
            Ok("http://a.example:443/".into())
        );
        assert_eq!(
            n("https://a.example/%7euser/%2f"),
            Ok("https://a.example/~user/%2F".into())
        );
        assert_eq!(n("https://a.example/a?b=c"), Err("htu has a query"));
        assert_eq!(n("https://a.example/a#f"), Err("htu has a fragment"));
        assert_eq!(
            n("ftp://a.example/a"),
            Err("htu is not an http or https URL")
        );
        assert_eq!(n("/a"), Err("htu is not an absolute URL"));
        assert_eq!(
            n("https://u:p@a.example/a"),
            Err("htu has user information")
        );
        assert_eq!(n("https://a.example/%zz"), Err("broken percent-encoding"));
        assert_eq!(n("https://a.example/%4"), Err("broken percent-encoding"));
    }
}
