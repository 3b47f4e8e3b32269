//! The forward protocol's handshake: HELO from the server, PING from the
//! client, PONG back, with SHA-512 digests over the shared key and, when
//! configured, user passwords.

use fuwa_api::msgpack::{self, Head};

use crate::config::User;

pub struct Security {
    pub shared_key: String,
    pub self_hostname: String,
    pub users: Vec<User>,
}

/// One handshake in progress.
pub struct Handshake {
    pub nonce: [u8; 16],
    /// empty when user authentication is off
    pub auth_salt: Vec<u8>,
}

use fuwa_codec::sha512_hex as hexdigest;

impl Handshake {
    pub fn new(sec: &Security) -> Self {
        let nonce: [u8; 16] = rand::random();
        let auth_salt = if sec.users.is_empty() {
            Vec::new()
        } else {
            rand::random::<[u8; 16]>().to_vec()
        };
        Handshake { nonce, auth_salt }
    }

    /// `["HELO", {"nonce": bin, "auth": bin, "keepalive": true}]`
    pub fn helo(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        msgpack::write_array_len(&mut out, 2);
        msgpack::write_str(&mut out, b"HELO");
        msgpack::write_map_len(&mut out, 3);
        msgpack::write_str(&mut out, b"nonce");
        msgpack::write_bin(&mut out, &self.nonce);
        msgpack::write_str(&mut out, b"auth");
        msgpack::write_bin(&mut out, &self.auth_salt);
        msgpack::write_str(&mut out, b"keepalive");
        out.push(0xc3);
        out
    }

    /// Checks a PING and returns the PONG to send and whether the client is
    /// accepted (and, when refused, why).
    pub fn check_ping(&self, sec: &Security, ping: &[u8]) -> (Vec<u8>, Result<(), String>) {
        let parsed = parse_ping(ping);
        let (verdict, salt) = match parsed {
            Err(e) => (Err(e), Vec::new()),
            Ok(p) => {
                let expect = hexdigest(&[
                    &p.salt,
                    p.hostname.as_bytes(),
                    &self.nonce,
                    sec.shared_key.as_bytes(),
                ]);
                let verdict = if p.hostname == sec.self_hostname {
                    Err("same hostname between input and output: invalid configuration".to_string())
                } else if !constant_eq(expect.as_bytes(), p.digest.as_bytes()) {
                    Err("shared_key mismatch".to_string())
                } else if !sec.users.is_empty() {
                    let ok = sec.users.iter().any(|u| {
                        u.username == p.username
                            && constant_eq(
                                hexdigest(&[
                                    &self.auth_salt,
                                    u.username.as_bytes(),
                                    u.password.as_bytes(),
                                ])
                                .as_bytes(),
                                p.password_digest.as_bytes(),
                            )
                    });
                    if ok {
                        Ok(())
                    } else {
                        Err("username/password mismatch".to_string())
                    }
                } else {
                    Ok(())
                };
                (verdict, p.salt)
            }
        };
        let mut out = Vec::with_capacity(200);
        msgpack::write_array_len(&mut out, 5);
        msgpack::write_str(&mut out, b"PONG");
        out.push(if verdict.is_ok() { 0xc3 } else { 0xc2 });
        msgpack::write_str(
            &mut out,
            verdict.as_ref().err().map(|s| s.as_bytes()).unwrap_or(b""),
        );
        msgpack::write_str(&mut out, sec.self_hostname.as_bytes());
        let digest = if verdict.is_ok() {
            hexdigest(&[
                &salt,
                sec.self_hostname.as_bytes(),
                &self.nonce,
                sec.shared_key.as_bytes(),
            ])
        } else {
            String::new()
        };
        msgpack::write_str(&mut out, digest.as_bytes());
        (out, verdict)
    }
}

struct Ping {
    hostname: String,
    salt: Vec<u8>,
    digest: String,
    username: String,
    password_digest: String,
}

fn parse_ping(b: &[u8]) -> Result<Ping, String> {
    let bad = |what: &str| format!("invalid PING: {what}");
    let (head, mut p) = msgpack::read_head(b, 0).map_err(|e| bad(&e.to_string()))?;
    let n = match head {
        Head::Array(n) if n == 4 || n == 6 => n,
        _ => {
            return Err(bad(
                "expected an array of 6 elements (did the client skip the handshake?)",
            ))
        }
    };
    let mut fields: Vec<Vec<u8>> = Vec::with_capacity(n);
    for _ in 0..n {
        let (s, next) =
            msgpack::read_bytes_like(b, p).map_err(|_| bad("every element must be a string"))?;
        fields.push(s.to_vec());
        p = next;
    }
    if fields[0] != b"PING" {
        return Err(bad("first element is not \"PING\""));
    }
    let text = |v: &Vec<u8>| String::from_utf8_lossy(v).into_owned();
    Ok(Ping {
        hostname: text(&fields[1]),
        salt: fields[2].clone(),
        digest: text(&fields[3]),
        username: fields.get(4).map(text).unwrap_or_default(),
        password_digest: fields.get(5).map(text).unwrap_or_default(),
    })
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Builds a PING as a client would (used by tests and the forward output).
pub fn client_ping(
    helo_nonce: &[u8],
    auth_salt: &[u8],
    hostname: &str,
    shared_key: &str,
    user: Option<(&str, &str)>,
) -> Vec<u8> {
    let salt: [u8; 16] = rand::random();
    let salt_hex = hex::encode(salt);
    let mut out = Vec::new();
    msgpack::write_array_len(&mut out, 6);
    msgpack::write_str(&mut out, b"PING");
    msgpack::write_str(&mut out, hostname.as_bytes());
    msgpack::write_str(&mut out, salt_hex.as_bytes());
    msgpack::write_str(
        &mut out,
        hexdigest(&[
            salt_hex.as_bytes(),
            hostname.as_bytes(),
            helo_nonce,
            shared_key.as_bytes(),
        ])
        .as_bytes(),
    );
    let (u, pw) = user.unwrap_or(("", ""));
    msgpack::write_str(&mut out, u.as_bytes());
    let pd = if user.is_some() {
        hexdigest(&[auth_salt, u.as_bytes(), pw.as_bytes()])
    } else {
        String::new()
    };
    msgpack::write_str(&mut out, pd.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sec(users: Vec<User>) -> Security {
        Security {
            shared_key: "secret".into(),
            self_hostname: "server".into(),
            users,
        }
    }

    #[test]
    fn accepts_right_key_refuses_wrong_key() {
        let s = sec(vec![]);
        let hs = Handshake::new(&s);
        let ok = client_ping(&hs.nonce, &hs.auth_salt, "client", "secret", None);
        assert!(hs.check_ping(&s, &ok).1.is_ok());
        let bad = client_ping(&hs.nonce, &hs.auth_salt, "client", "nope", None);
        let (pong, v) = hs.check_ping(&s, &bad);
        assert_eq!(v.unwrap_err(), "shared_key mismatch");
        // PONG false carries the reason
        assert!(pong.windows(19).any(|w| w == b"shared_key mismatch"));
    }

    #[test]
    fn user_auth() {
        let s = sec(vec![User {
            username: "alice".into(),
            password: "pw".into(),
        }]);
        let hs = Handshake::new(&s);
        assert_eq!(hs.auth_salt.len(), 16);
        let ok = client_ping(
            &hs.nonce,
            &hs.auth_salt,
            "client",
            "secret",
            Some(("alice", "pw")),
        );
        assert!(hs.check_ping(&s, &ok).1.is_ok());
        let bad = client_ping(
            &hs.nonce,
            &hs.auth_salt,
            "client",
            "secret",
            Some(("alice", "wrong")),
        );
        assert_eq!(
            hs.check_ping(&s, &bad).1.unwrap_err(),
            "username/password mismatch"
        );
        let none = client_ping(&hs.nonce, &hs.auth_salt, "client", "secret", None);
        assert!(hs.check_ping(&s, &none).1.is_err());
    }

    #[test]
    fn a_data_message_instead_of_ping_is_refused() {
        let s = sec(vec![]);
        let hs = Handshake::new(&s);
        // ["tag", 1, {}]
        let msg = [0x93, 0xa3, b't', b'a', b'g', 0x01, 0x80];
        assert!(hs.check_ping(&s, &msg).1.is_err());
    }
}
