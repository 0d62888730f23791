//! A small HTTP/1.1 client, enough for what iPXE and an installer's `wget`
//! ask of a boot server: GET (with Range), POST, keep-alive, Content-Length
//! or chunked bodies. Our own, so that each simulated machine has its own
//! connection from its own address, as real machines do.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

/// `http://a.b.c.d[:port]/path`: the only URLs a boot script here holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub addr: SocketAddr,
    pub path: String,
}

impl Url {
    pub fn parse(url: &str) -> Result<Url, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: not an http:// URL"))?;
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let addr = match host.parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => SocketAddr::new(
                host.parse::<IpAddr>()
                    .map_err(|_| format!("{url}: the host is not an IP address"))?,
                80,
            ),
        };
        let path = if path.is_empty() { "/" } else { path };
        Ok(Url {
            addr,
            path: path.to_string(),
        })
    }
}

/// An answer: its status, how many body bytes came, the first of them
/// (up to the `keep` asked for) and its Content-Range.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub len: u64,
    pub body: Vec<u8>,
    pub content_range: Option<String>,
    close: bool,
}

pub struct Request<'a> {
    pub method: &'a str,
    pub url: &'a Url,
    pub range: Option<(u64, u64)>,
    pub body: &'a [u8],
    pub headers: &'a [(&'a str, &'a str)],
    /// How much of the answer's body to keep (the rest is counted).
    pub keep: usize,
}

impl<'a> Request<'a> {
    pub fn get(url: &'a Url) -> Request<'a> {
        Request {
            method: "GET",
            url,
            range: None,
            body: &[],
            headers: &[],
            keep: 0,
        }
    }
}

/// One machine's HTTP client: a connection kept open between requests to
/// the same server, as iPXE keeps it.
pub struct Client {
    from: IpAddr,
    timeout: Duration,
    conn: Option<(SocketAddr, BufReader<TcpStream>)>,
}

impl Client {
    pub fn new(from: IpAddr, timeout: Duration) -> Client {
        Client {
            from,
            timeout,
            conn: None,
        }
    }

    /// Sends `req`, on the open connection if it goes to the same server
    /// (once more on a new one if the server had closed it).
    pub async fn send(&mut self, req: &Request<'_>) -> Result<Reply, String> {
        let reused = matches!(&self.conn, Some((to, _)) if *to == req.url.addr);
        if !reused {
            self.conn = Some((req.url.addr, self.connect(req.url.addr).await?));
        }
        match self.exchange(req).await {
            Err(_) if reused => {
                self.conn = Some((req.url.addr, self.connect(req.url.addr).await?));
                self.exchange(req).await
            }
            other => other,
        }
    }

    async fn connect(&self, to: SocketAddr) -> Result<BufReader<TcpStream>, String> {
        let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
        socket
            .bind(SocketAddr::new(self.from, 0))
            .map_err(|e| format!("bind {}: {e}", self.from))?;
        let stream = tokio::time::timeout(self.timeout, socket.connect(to))
            .await
            .map_err(|_| format!("connect to {to}: timed out"))?
            .map_err(|e| format!("connect to {to}: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("nodelay: {e}"))?;
        Ok(BufReader::with_capacity(64 * 1024, stream))
    }

    async fn exchange(&mut self, req: &Request<'_>) -> Result<Reply, String> {
        let Some((_, stream)) = self.conn.as_mut() else {
            return Err("no connection".into());
        };
        let outcome = tokio::time::timeout(self.timeout, exchange(stream, req))
            .await
            .unwrap_or_else(|_| Err(format!("{} {}: timed out", req.method, req.url.path)));
        match &outcome {
            Ok(reply) if !reply.close => {}
            _ => self.conn = None,
        }
        outcome
    }
}

async fn exchange(stream: &mut BufReader<TcpStream>, req: &Request<'_>) -> Result<Reply, String> {
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: bootstorm\r\nConnection: keep-alive\r\n",
        req.method, req.url.path, req.url.addr
    );
    if let Some((first, last)) = req.range {
        head.push_str(&format!("Range: bytes={first}-{last}\r\n"));
    }
    for (name, value) in req.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !req.body.is_empty() || req.method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", req.body.len()));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(req.body);
    let what = |e: std::io::Error| format!("{} {}: {e}", req.method, req.url.path);
    stream.get_mut().write_all(&out).await.map_err(what)?;

    let mut line = String::new();
    read_line(stream, &mut line).await.map_err(what)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("{} {}: bad status line {line:?}", req.method, req.url.path))?;
    let (mut length, mut chunked, mut close, mut content_range) = (None, false, false, None);
    loop {
        read_line(stream, &mut line).await.map_err(what)?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.parse::<u64>().ok(),
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "connection" => close = value.eq_ignore_ascii_case("close"),
            "content-range" => content_range = Some(value.to_string()),
            _ => {}
        }
    }
    let mut reply = Reply {
        status,
        len: 0,
        body: Vec::new(),
        content_range,
        close,
    };
    if req.method == "HEAD" || status == 204 || status == 304 {
        return Ok(reply);
    }
    if chunked {
        loop {
            read_line(stream, &mut line).await.map_err(what)?;
            let size = line.trim().split(';').next().unwrap_or("");
            let size = u64::from_str_radix(size, 16)
                .map_err(|_| format!("{}: bad chunk size {line:?}", req.url.path))?;
            if size == 0 {
                read_line(stream, &mut line).await.map_err(what)?;
                break;
            }
            body(stream, size, req.keep, &mut reply)
                .await
                .map_err(what)?;
            read_line(stream, &mut line).await.map_err(what)?;
        }
    } else if let Some(n) = length {
        body(stream, n, req.keep, &mut reply).await.map_err(what)?;
    } else {
        body(stream, u64::MAX, req.keep, &mut reply)
            .await
            .map_err(what)?;
        reply.close = true;
    }
    Ok(reply)
}

async fn read_line(stream: &mut BufReader<TcpStream>, line: &mut String) -> std::io::Result<()> {
    line.clear();
    let n = (&mut *stream).take(8192).read_line(line).await?;
    if n == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// Reads `n` body bytes (or to the end, for `u64::MAX`), keeping `keep`.
async fn body(
    stream: &mut BufReader<TcpStream>,
    n: u64,
    keep: usize,
    reply: &mut Reply,
) -> std::io::Result<()> {
    let mut left = n;
    while left > 0 {
        let buf = stream.fill_buf().await?;
        if buf.is_empty() {
            if n == u64::MAX {
                return Ok(());
            }
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let take = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let room = keep.saturating_sub(reply.body.len()).min(take);
        reply.body.extend_from_slice(&buf[..room]);
        stream.consume(take);
        reply.len += take as u64;
        left -= take as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_an_address_and_a_path() {
        assert_eq!(
            Url::parse("http://10.0.0.1:8080/ipxe/x").unwrap(),
            Url {
                addr: "10.0.0.1:8080".parse().unwrap(),
                path: "/ipxe/x".into()
            }
        );
        assert_eq!(
            Url::parse("http://10.0.0.1").unwrap(),
            Url {
                addr: "10.0.0.1:80".parse().unwrap(),
                path: "/".into()
            }
        );
        assert!(Url::parse("https://10.0.0.1/").is_err());
        assert!(Url::parse("http://boot.example/").is_err());
    }
}
