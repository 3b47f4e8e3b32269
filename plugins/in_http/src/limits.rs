//! What bounds one input's resources: the memory budget for bodies, each
//! connection's head and idle deadlines, the default connection limit, and
//! which peers may speak for a client in `X-Forwarded-For`.

use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Bytes of bodies held across the input (`body_buffer_limit`).
#[derive(Debug)]
pub struct Budget {
    used: AtomicUsize,
    limit: usize,
}

impl Budget {
    pub fn new(limit: usize) -> Arc<Budget> {
        Arc::new(Budget {
            used: AtomicUsize::new(0),
            limit,
        })
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes held right now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// An empty hold; it grows with [`Held::take`] and gives everything back
    /// when dropped.
    pub fn hold(self: &Arc<Self>) -> Held {
        Held {
            budget: self.clone(),
            n: 0,
        }
    }
}

/// Bytes one request holds of the budget.
#[derive(Debug)]
pub struct Held {
    budget: Arc<Budget>,
    n: usize,
}

impl Held {
    /// Takes `n` more bytes; false (and nothing taken) when that would go
    /// over the limit.
    pub fn take(&mut self, n: usize) -> bool {
        let b = &self.budget;
        let mut cur = b.used.load(Ordering::Relaxed);
        loop {
            let Some(next) = cur.checked_add(n).filter(|&x| x <= b.limit) else {
                return false;
            };
            match b
                .used
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    self.n += n;
                    return true;
                }
                Err(c) => cur = c,
            }
        }
    }

    pub fn bytes(&self) -> usize {
        self.n
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.n, Ordering::AcqRel);
    }
}

/// One connection's timing: when it must have sent a request head, or its
/// next one.
#[derive(Debug)]
pub struct Clock {
    header_timeout: Duration,
    idle_timeout: Duration,
    state: Mutex<ClockState>,
}

#[derive(Debug)]
struct ClockState {
    in_flight: u32,
    /// accepted, or the last response was handed over
    since: Instant,
    /// no request has started yet
    first: bool,
    /// the first byte of the next head arrived
    head_started: Option<Instant>,
}

/// Why a connection was closed by its clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// no complete request head within header_timeout
    Head,
    /// no new request within idle_timeout
    Idle,
}

impl Clock {
    pub fn new(header_timeout: Duration, idle_timeout: Duration) -> Arc<Clock> {
        Arc::new(Clock {
            header_timeout,
            idle_timeout,
            state: Mutex::new(ClockState {
                in_flight: 0,
                since: Instant::now(),
                first: true,
                head_started: None,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ClockState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes came in.
    fn read(&self) {
        let mut s = self.lock();
        if s.in_flight == 0 && s.head_started.is_none() {
            s.head_started = Some(Instant::now());
        }
    }

    /// A request head is complete: it is being answered. The clock stops
    /// until the returned guard is dropped (the body has its own timeout).
    pub fn request(self: &Arc<Self>) -> Busy {
        let mut s = self.lock();
        s.in_flight += 1;
        s.first = false;
        s.head_started = None;
        Busy(self.clone())
    }

    /// When the connection must be closed, and why; `None` while a request
    /// is being answered.
    pub fn deadline(&self) -> Option<(Instant, Expired)> {
        let s = self.lock();
        if s.in_flight > 0 {
            None
        } else if s.first {
            Some((s.since + self.header_timeout, Expired::Head))
        } else if let Some(h) = s.head_started {
            Some((h + self.header_timeout, Expired::Head))
        } else {
            Some((s.since + self.idle_timeout, Expired::Idle))
        }
    }

    /// How often to look again while a request is answered.
    pub fn recheck(&self) -> Duration {
        self.header_timeout.min(self.idle_timeout)
    }
}

/// A request in flight on a connection (see [`Clock::request`]).
pub struct Busy(Arc<Clock>);

impl Drop for Busy {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        s.since = Instant::now();
        s.head_started = None;
    }
}

/// A socket that tells its [`Clock`] when bytes arrive.
pub struct Watched<T> {
    inner: T,
    clock: Arc<Clock>,
}

impl<T> Watched<T> {
    pub fn new(inner: T, clock: Arc<Clock>) -> Self {
        Watched { inner, clock }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.read();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// `trusted_proxies`: addresses and networks allowed to say who the client
/// is in `X-Forwarded-For`.
#[derive(Debug, Clone, Default)]
pub struct Proxies(Vec<(IpAddr, u8)>);

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

impl Proxies {
    /// Each entry is an IP (`10.0.0.1`, `::1`) or a CIDR (`10.0.0.0/8`).
    pub fn new(list: &[String]) -> Result<Proxies, String> {
        let mut out = Vec::new();
        for e in list {
            let e = e.trim();
            let (ip, bits) = match e.split_once('/') {
                Some((ip, bits)) => (ip, Some(bits)),
                None => (e, None),
            };
            let ip: IpAddr = ip
                .parse()
                .map_err(|_| format!("`{e}` is not an IP address or a CIDR like 10.0.0.0/8"))?;
            let ip = canonical(ip);
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                None => max,
                Some(b) => match b.parse::<u8>() {
                    Ok(b) if b <= max => b,
                    _ => return Err(format!("`{e}`: the prefix length must be 0 to {max}")),
                },
            };
            out.push((ip, bits));
        }
        Ok(Proxies(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|&(net, bits)| match (net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - bits as u32).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - bits as u32).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        })
    }

    /// The client's address: the peer, unless the peer is trusted; then the
    /// right-most address of `X-Forwarded-For` (all its headers, in order)
    /// that is not trusted, as nginx's `real_ip_recursive on`. An entry that
    /// is not an address ends the walk at the last trusted one.
    pub fn client<'a>(&self, peer: IpAddr, forwarded: impl Iterator<Item = &'a [u8]>) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        let mut hops: Vec<&[u8]> = Vec::new();
        for h in forwarded {
            hops.extend(h.split(|&b| b == b','));
        }
        let mut client = peer;
        for hop in hops.iter().rev() {
            let Some(ip) = parse_hop(hop) else {
                break;
            };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: `1.2.3.4`, `1.2.3.4:80`, `::1`, `[::1]:80`.
fn parse_hop(hop: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(hop).ok()?.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    s.parse::<std::net::SocketAddr>()
        .ok()
        .map(|a| canonical(a.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_takes_and_gives_back() {
        let b = Budget::new(100);
        let mut a = b.hold();
        assert!(a.take(60));
        let mut c = b.hold();
        assert!(!c.take(41), "over the limit");
        assert!(c.take(40));
        assert_eq!(b.used(), 100);
        drop(a);
        assert_eq!(b.used(), 40);
        assert!(c.take(60));
        assert!(!c.take(usize::MAX), "no overflow");
        drop(c);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn proxies_and_forwarded_for() {
        let p = Proxies::new(&["10.0.0.0/8".into(), "::1".into(), "192.168.1.7".into()]).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(p.trusts(ip("10.1.2.3")) && p.trusts(ip("::ffff:10.0.0.1")));
        assert!(!p.trusts(ip("11.0.0.1")) && !p.trusts(ip("192.168.1.8")));
        let xff = |peer: &str, h: &[&str]| p.client(ip(peer), h.iter().map(|s| s.as_bytes()));
        // an untrusted peer: the header is ignored
        assert_eq!(xff("203.0.113.9", &["1.1.1.1"]), ip("203.0.113.9"));
        // a trusted peer: the right-most untrusted hop
        assert_eq!(
            xff("10.0.0.2", &["6.6.6.6, 1.1.1.1, 10.9.9.9"]),
            ip("1.1.1.1")
        );
        assert_eq!(xff("10.0.0.2", &["6.6.6.6", "1.1.1.1:443"]), ip("1.1.1.1"));
        // all trusted: the left-most
        assert_eq!(xff("::1", &["10.0.0.5, 10.0.0.6"]), ip("10.0.0.5"));
        // garbage ends the walk at the last trusted hop
        assert_eq!(xff("10.0.0.2", &["1.1.1.1, junk"]), ip("10.0.0.2"));
        assert_eq!(xff("10.0.0.2", &[]), ip("10.0.0.2"));
        let none = Proxies::new(&[]).unwrap();
        assert_eq!(
            none.client(ip("10.0.0.2"), [&b"1.1.1.1"[..]].into_iter()),
            ip("10.0.0.2")
        );
        for bad in ["nope", "10.0.0.0/33", "::/129", "1.2.3.4/x"] {
            assert!(Proxies::new(&[bad.into()]).is_err(), "{bad}");
        }
        assert!(Proxies::new(&["0.0.0.0/0".into()])
            .unwrap()
            .trusts(ip("8.8.8.8")));
    }

    #[test]
    fn clock_deadlines() {
        let c = Clock::new(Duration::from_secs(10), Duration::from_secs(30));
        let (d, why) = c.deadline().unwrap();
        assert_eq!(
            why,
            Expired::Head,
            "the first head is due header_timeout after the accept"
        );
        assert!(d <= Instant::now() + Duration::from_secs(10));
        let busy = c.request();
        assert_eq!(
            c.deadline(),
            None,
            "no deadline while a request is answered"
        );
        drop(busy);
        let (d, why) = c.deadline().unwrap();
        assert_eq!(why, Expired::Idle);
        assert!(d > Instant::now() + Duration::from_secs(20));
        c.read();
        let (d, why) = c.deadline().unwrap();
        assert_eq!(
            why,
            Expired::Head,
            "a head started: header_timeout from its first byte"
        );
        assert!(d <= Instant::now() + Duration::from_secs(10));
    }
}
