//! A minimal HTTP/1.1 client: one `POST` of a JSON body over a fresh TCP connection, reading
//! only the status line. Enough for activation webhooks, without an HTTP stack as a dependency
//! (decision 0009). `http://` only.

use std::fmt;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An `http://` URL, split for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpUrl {
    /// Host name or address (IPv6 without brackets).
    host: String,
    port: u16,
    /// `Host` header value: the URL's authority.
    authority: String,
    /// Path and query, starting with `/`.
    target: String,
    text: String,
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl HttpUrl {
    /// Parses `http://host[:port][/path][?query]`; the error says what is wrong.
    pub(crate) fn parse(url: &str) -> Result<Self, String> {
        let scheme_end = url
            .find("://")
            .ok_or_else(|| format!("'{url}' is not a URL; write http://HOST[:PORT]/PATH"))?;
        let scheme = &url[..scheme_end];
        if !scheme.eq_ignore_ascii_case("http") {
            return Err(format!(
                "'{url}': only http:// URLs are supported (put a TLS-terminating proxy in front, or use a command hook)"
            ));
        }
        let rest = &url[scheme_end + 3..];
        let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(split);
        let target = target.split('#').next().unwrap_or("");
        let target = match target {
            "" => "/".to_owned(),
            t if t.starts_with('?') => format!("/{t}"),
            t => t.to_owned(),
        };
        if authority.is_empty() {
            return Err(format!("'{url}' names no host"));
        }
        if authority.contains('@') {
            return Err(format!(
                "'{url}': user names and passwords in URLs are not supported"
            ));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("'{url}': unclosed '[' in the host"))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        let port = match port {
            None | Some("") => 80,
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| format!("'{url}': port '{p}' is not a number from 0 to 65535"))?,
        };
        if host.is_empty() {
            return Err(format!("'{url}' names no host"));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            authority: authority.to_owned(),
            target,
            text: url.to_owned(),
        })
    }

    /// Sends `POST` with a JSON body and returns the response's status code. The caller bounds
    /// the time it takes.
    pub(crate) async fn post_json(&self, body: &[u8]) -> std::io::Result<u16> {
        let mut stream = self.send_post(body).await?;
        // Only the status line matters: read until its end (or the peer closes).
        let mut response = Vec::with_capacity(256);
        let mut buf = [0u8; 256];
        while !response.contains(&b'\n') && response.len() < 8192 {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            response.extend_from_slice(&buf[..n]);
        }
        parse_status(&response).ok_or_else(no_status_line)
    }

    /// Sends `POST` with a JSON body and returns the status code and the response body (read
    /// until the server closes the connection, at most 64 KiB). The caller bounds the time.
    pub(crate) async fn post_json_for_body(&self, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
        let mut stream = self.send_post(body).await?;
        let mut response = Vec::with_capacity(512);
        let mut buf = [0u8; 1024];
        while response.len() < 64 * 1024 {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            response.extend_from_slice(&buf[..n]);
        }
        let status = parse_status(&response).ok_or_else(no_status_line)?;
        let body = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or_else(Vec::new, |i| response[i + 4..].to_vec());
        Ok((status, body))
    }

    /// This URL with `segment` appended to its path.
    pub(crate) fn join(&self, segment: &str) -> Self {
        let (path, query) = match self.target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (self.target.as_str(), None),
        };
        let mut target = format!("{}/{segment}", path.trim_end_matches('/'));
        if let Some(q) = query {
            target.push('?');
            target.push_str(q);
        }
        Self {
            text: format!("http://{}{target}", self.authority),
            target,
            ..self.clone()
        }
    }

    async fn send_post(&self, body: &[u8]) -> std::io::Result<TcpStream> {
        let mut stream = TcpStream::connect((self.host.as_str(), self.port)).await?;
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: instore-management\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.target,
            self.authority,
            body.len()
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        stream.flush().await?;
        Ok(stream)
    }
}

fn no_status_line() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "the server did not answer with an HTTP status line",
    )
}

/// The status code of `HTTP/1.x NNN ...`.
fn parse_status(response: &[u8]) -> Option<u16> {
    let line = response.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_ascii_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_port_and_target() {
        let u = HttpUrl::parse("http://example.org/hooks/start?x=1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.target.as_str()),
            ("example.org", 80, "/hooks/start?x=1")
        );
        assert_eq!(u.authority, "example.org");
        let u = HttpUrl::parse("HTTP://127.0.0.1:8080").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.target.as_str()),
            ("127.0.0.1", 8080, "/")
        );
        let u = HttpUrl::parse("http://[::1]:9/a#frag").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.target.as_str()),
            ("::1", 9, "/a")
        );
        assert_eq!(u.authority, "[::1]:9");
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (url, says) in [
            ("https://x/", "only http://"),
            ("x/y", "not a URL"),
            ("http:///p", "no host"),
            ("http://u:p@x/", "passwords"),
            ("http://x:99999/", "port"),
        ] {
            let e = HttpUrl::parse(url).unwrap_err();
            assert!(e.contains(says), "{url}: {e}");
        }
    }

    #[test]
    fn joined_urls_append_a_path_segment() {
        let u = HttpUrl::parse("http://h:1/control/?a=b").unwrap().join("x");
        assert_eq!(
            (u.target.as_str(), u.to_string().as_str()),
            ("/control/x?a=b", "http://h:1/control/x?a=b")
        );
        let u = HttpUrl::parse("http://h").unwrap().join("x");
        assert_eq!(u.target, "/x");
    }

    #[test]
    fn status_lines_parse() {
        assert_eq!(parse_status(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(parse_status(b"HTTP/1.0 500\r\n"), Some(500));
        assert_eq!(parse_status(b"SSH-2.0-x\r\n"), None);
        assert_eq!(parse_status(b""), None);
    }
}
