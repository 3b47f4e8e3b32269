//! `fuwa-steady floor`: the least a server can do for the forward and HTTP
//! loads, to measure what the kernel alone costs per message at a steady
//! rate (sockets, wake-ups) on this machine. It reads each message whole
//! (forward: walks the msgpack message to its end and its `chunk` option; HTTP: the headers and
//! `Content-Length` body) and answers it (forward: `{"ack": chunk}`; HTTP:
//! `204`), one thread per connection, and keeps nothing. What an agent
//! spends above it is its own work: parsing, buffering, fsync, output.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use fuwa_api::msgpack::{self, Framer, Head};

/// Binds 127.0.0.1:0, prints the port, and serves until killed.
pub fn serve(kind: &str) -> Result<(), String> {
    let forward = match kind {
        "forward" => true,
        "http" => false,
        k => return Err(format!("--kind {k}: forward or http")),
    };
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    let port = l.local_addr().map_err(|e| e.to_string())?.port();
    println!("{port}");
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    for s in l.incoming() {
        let s = s.map_err(|e| format!("accept: {e}"))?;
        std::thread::spawn(move || {
            let r = if forward {
                forward_conn(s)
            } else {
                http_conn(s)
            };
            if let Err(e) = r {
                eprintln!("floor: {e}");
            }
        });
    }
    Ok(())
}

/// Reads more of the stream into `buf`; false at its end.
fn fill(s: &mut TcpStream, buf: &mut Vec<u8>) -> Result<bool, String> {
    let mut tmp = [0u8; 64 << 10];
    let n = s.read(&mut tmp).map_err(|e| format!("read: {e}"))?;
    buf.extend_from_slice(&tmp[..n]);
    Ok(n > 0)
}

fn forward_conn(mut s: TcpStream) -> Result<(), String> {
    let mut buf = Vec::new();
    let mut framer = Framer::new();
    loop {
        match framer.advance(&buf).map_err(|e| e.to_string())? {
            Some(len) => {
                if let Some(id) = chunk_option(&buf[..len]) {
                    let mut out = vec![0x81, 0xa3, b'a', b'c', b'k'];
                    msgpack::write_str(&mut out, id);
                    s.write_all(&out).map_err(|e| format!("write: {e}"))?;
                }
                buf.drain(..len);
            }
            None => {
                if !fill(&mut s, &mut buf)? {
                    return Ok(());
                }
            }
        }
    }
}

/// The `chunk` option of a Forward-mode message `[tag, entries, options]`,
/// found by skipping over the tag and the entries (nothing is decoded).
fn chunk_option(msg: &[u8]) -> Option<&[u8]> {
    let (Head::Array(3), p) = msgpack::read_head(msg, 0).ok()? else {
        return None;
    };
    let p = msgpack::skip(msg, p).ok()?;
    let p = msgpack::skip(msg, p).ok()?;
    let (Head::Map(n), mut p) = msgpack::read_head(msg, p).ok()? else {
        return None;
    };
    for _ in 0..n {
        let (key, after) = msgpack::read_bytes_like(msg, p).ok()?;
        if key == b"chunk" {
            return msgpack::read_bytes_like(msg, after).ok().map(|(v, _)| v);
        }
        p = msgpack::skip(msg, after).ok()?;
    }
    None
}

fn http_conn(mut s: TcpStream) -> Result<(), String> {
    const REPLY: &[u8] = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n";
    let mut buf = Vec::new();
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len = super::content_length(&head);
            if buf.len() >= end + 4 + len {
                s.write_all(REPLY).map_err(|e| format!("write: {e}"))?;
                buf.drain(..end + 4 + len);
                continue;
            }
        }
        if !fill(&mut s, &mut buf)? {
            return Ok(());
        }
    }
}
