//! One connection's life as a client: connect (TCP, then TLS when
//! configured), handshake when a shared key is set, send a chunk, wait for
//! its ack.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use fuwa_api::msgpack::Framer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::protocol::{self, Credentials, HandshakeError, Helo};

/// Largest reply accepted from a server (HELO, PONG, ack are all tiny).
const REPLY_LIMIT: usize = 64 * 1024;

const CLOSED: &str = "the server closed the connection";

pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// How one attempt on a server failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// connect, TLS or I/O failure before the chunk could have been taken:
    /// the server is down or unreachable
    Unreachable(String),
    /// the handshake was refused or the server failed to prove itself
    Auth(String),
    /// the chunk may have reached the server, but no (matching) ack came
    NoAck(String),
    /// the server closed the connection instead of acknowledging
    Closed(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Unreachable(m)
            | SendError::Auth(m)
            | SendError::NoAck(m)
            | SendError::Closed(m) => f.write_str(m),
        }
    }
}

/// What a connection needs to know, shared by all servers.
pub struct Transport {
    pub connect_timeout: Duration,
    pub send_timeout: Duration,
    pub ack_timeout: Duration,
    pub tls: Option<(TlsConnector, Option<String>)>,
}

/// An open (and, when required, authenticated) connection.
pub struct Conn {
    stream: Box<dyn Stream>,
    buf: BytesMut,
    /// the server allows more than one message per connection
    pub server_keepalive: bool,
    pub last_used: Instant,
}

impl Transport {
    /// Connects to `host:port` and completes the TLS handshake.
    pub async fn open(&self, host: &str, port: u16) -> Result<Box<dyn Stream>, SendError> {
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect((host, port)))
            .await
            .map_err(|_| {
                SendError::Unreachable(format!(
                    "connect timed out after {:?}",
                    self.connect_timeout
                ))
            })?
            .map_err(|e| SendError::Unreachable(format!("cannot connect: {e}")))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(Box::new(tcp)),
            Some((connector, server_name)) => {
                let name = server_name.as_deref().unwrap_or(host).to_string();
                let sn = rustls::pki_types::ServerName::try_from(name.clone()).map_err(|e| {
                    SendError::Unreachable(format!("{name:?} is not a valid TLS server name: {e}"))
                })?;
                let tls = tokio::time::timeout(self.connect_timeout, connector.connect(sn, tcp))
                    .await
                    .map_err(|_| SendError::Unreachable("TLS handshake timed out".into()))?
                    .map_err(|e| SendError::Unreachable(format!("TLS handshake failed: {e}")))?;
                Ok(Box::new(tls))
            }
        }
    }

    /// A UDP heartbeat: one NUL byte to `host:port`, any answer within
    /// `timeout` means the server is alive.
    pub async fn udp_heartbeat(host: &str, port: u16, timeout: Duration) -> Result<(), String> {
        let addr = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host} has no address"))?;
        let local: std::net::SocketAddr = if addr.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sock = tokio::net::UdpSocket::bind(local)
            .await
            .map_err(|e| format!("UDP bind failed: {e}"))?;
        sock.connect(addr)
            .await
            .map_err(|e| format!("UDP connect failed: {e}"))?;
        sock.send(b"\0")
            .await
            .map_err(|e| format!("UDP heartbeat not sent: {e}"))?;
        let mut b = [0u8; 64];
        match tokio::time::timeout(timeout, sock.recv(&mut b)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("UDP heartbeat failed: {e}")),
            Err(_) => Err(format!("no UDP heartbeat answer within {timeout:?}")),
        }
    }

    /// Opens a connection ready for data: connected, TLS, handshake done.
    pub async fn connect(
        &self,
        host: &str,
        port: u16,
        cred: Option<&Credentials>,
    ) -> Result<Conn, SendError> {
        let stream = self.open(host, port).await?;
        let mut conn = Conn {
            stream,
            buf: BytesMut::new(),
            server_keepalive: true,
            last_used: Instant::now(),
        };
        if let Some(cred) = cred {
            let t = self.send_timeout;
            match tokio::time::timeout(t, conn.handshake(cred)).await {
                Ok(r) => r?,
                Err(_) => {
                    return Err(SendError::Unreachable(format!(
                        "handshake: no answer within {t:?}"
                    )))
                }
            }
        }
        Ok(conn)
    }
}

impl Conn {
    async fn handshake(&mut self, cred: &Credentials) -> Result<(), SendError> {
        let helo_bytes = self
            .read_reply()
            .await
            .map_err(|e| SendError::Unreachable(format!("handshake: waiting for HELO: {e}")))?;
        let helo: Helo = protocol::parse_helo(&helo_bytes)
            .map_err(|e| SendError::Auth(format!("handshake: {e}")))?;
        self.server_keepalive = helo.keepalive;
        let salt = hex::encode(rand::random::<[u8; 16]>());
        let ping = protocol::ping(&helo, cred, &salt);
        self.stream
            .write_all(&ping)
            .await
            .map_err(|e| SendError::Unreachable(format!("handshake: cannot send PING: {e}")))?;
        self.stream
            .flush()
            .await
            .map_err(|e| SendError::Unreachable(format!("handshake: cannot send PING: {e}")))?;
        let pong = self
            .read_reply()
            .await
            .map_err(|e| SendError::Unreachable(format!("handshake: waiting for PONG: {e}")))?;
        match protocol::check_pong(&pong, &helo, cred, &salt) {
            Ok(_) => Ok(()),
            Err(e @ HandshakeError::Reply(_)) => Err(SendError::Auth(format!("handshake: {e}"))),
            Err(e) => Err(SendError::Auth(e.to_string())),
        }
    }

    /// Reads one msgpack value from the server.
    async fn read_reply(&mut self) -> Result<Bytes, String> {
        let mut framer = Framer::with_limit(REPLY_LIMIT);
        loop {
            match framer.advance(&self.buf) {
                Ok(Some(len)) => return Ok(self.buf.split_to(len).freeze()),
                Ok(None) if self.buf.len() > REPLY_LIMIT => {
                    return Err(format!("reply larger than {REPLY_LIMIT} bytes"))
                }
                Ok(None) => {}
                Err(e) => return Err(format!("malformed msgpack from the server: {e}")),
            }
            self.buf.reserve(4096);
            let n = self
                .stream
                .read_buf(&mut self.buf)
                .await
                .map_err(|e| format!("read failed: {e}"))?;
            if n == 0 {
                return Err(CLOSED.into());
            }
        }
    }

    /// Whether an idle connection still looks usable: no EOF and no
    /// unexpected bytes waiting.
    pub async fn still_open(&mut self) -> bool {
        let mut probe = [0u8; 1];
        // pending (nothing to read) means open; EOF, an error or bytes
        // nobody asked for mean it is not
        tokio::time::timeout(Duration::ZERO, self.stream.read(&mut probe))
            .await
            .is_err()
    }

    /// Sends one message (header, body segments, trailer) and, when `ack`
    /// is given, waits for `{"ack": ack}`.
    pub async fn send(
        &mut self,
        t: &Transport,
        header: &[u8],
        body: &[Bytes],
        trailer: &[u8],
        ack: Option<&str>,
    ) -> Result<(), SendError> {
        let write = async {
            let mut w = BufWriter::with_capacity(64 * 1024, &mut self.stream);
            w.write_all(header).await?;
            for seg in body {
                w.write_all(seg).await?;
            }
            w.write_all(trailer).await?;
            w.flush().await
        };
        match tokio::time::timeout(t.send_timeout, write).await {
            Err(_) => {
                return Err(SendError::NoAck(format!(
                    "sending the chunk timed out after {:?}",
                    t.send_timeout
                )))
            }
            Ok(Err(e)) => return Err(SendError::Unreachable(format!("send failed: {e}"))),
            Ok(Ok(())) => {}
        }
        self.last_used = Instant::now();
        let Some(expect) = ack else {
            return Ok(());
        };
        let reply = match tokio::time::timeout(t.ack_timeout, self.read_reply()).await {
            Err(_) => {
                return Err(SendError::NoAck(format!(
                    "no ack within ack_response_timeout ({:?})",
                    t.ack_timeout
                )))
            }
            Ok(Err(e)) if e == CLOSED => return Err(SendError::Closed(format!("no ack: {e}"))),
            Ok(Err(e)) => return Err(SendError::NoAck(format!("no ack: {e}"))),
            Ok(Ok(r)) => r,
        };
        match protocol::parse_ack(&reply) {
            Ok(got) if got == expect.as_bytes() => {
                self.last_used = Instant::now();
                Ok(())
            }
            Ok(got) => Err(SendError::NoAck(format!(
                "ack for another chunk ({:?}, expected {expect:?})",
                String::from_utf8_lossy(got)
            ))),
            Err(e) => Err(SendError::NoAck(format!("bad ack: {e}"))),
        }
    }

    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.stream.shutdown()).await;
    }
}

/// The TLS client config: trusted roots from `ca_path` (PEM) or the
/// system, or no verification at all when `verify = false`.
pub fn tls_connector(t: &crate::config::TlsConfig) -> Result<TlsConnector, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let config = if !t.verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        match &t.ca_path {
            Some(p) => {
                for c in fuwa_codec::load_certs(p, "ca_path")? {
                    roots
                        .add(c)
                        .map_err(|e| format!("unusable CA certificate in {}: {e}", p.display()))?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    return Err(
                        "no ca_path given and no system CA certificates found: set tls.ca_path"
                            .into(),
                    );
                }
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(TlsConnector::from(Arc::new(config)))
}

/// `verify = false`: any certificate is accepted (the handshake signatures
/// are still checked, so the session is encrypted, just not authenticated).
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
