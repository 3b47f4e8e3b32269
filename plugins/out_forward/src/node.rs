//! The servers: their health, their idle connections, and the choice of
//! which one gets the next chunk (Fluentd's out_forward rules: weighted
//! among the healthy non-standby servers; standby servers only when every
//! non-standby one is down).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::conn::Conn;
use crate::protocol::Credentials;

/// Idle connections kept per server (beyond that they are closed).
const MAX_IDLE: usize = 16;

pub struct Node {
    /// for logs: `name` from the config or `host:port`
    pub name: String,
    pub host: String,
    pub port: u16,
    pub weight: u32,
    pub standby: bool,
    /// handshake credentials; `None`: no handshake
    pub cred: Option<Credentials>,
    state: Mutex<NodeState>,
}

struct NodeState {
    available: bool,
    /// when a down server may be tried again without a heartbeat
    retry_at: Option<Instant>,
    last_error: String,
    idle: Vec<Conn>,
}

impl Node {
    pub fn new(
        name: String,
        host: String,
        port: u16,
        weight: u32,
        standby: bool,
        cred: Option<Credentials>,
    ) -> Self {
        Node {
            name,
            host,
            port,
            weight,
            standby,
            cred,
            state: Mutex::new(NodeState {
                available: true,
                retry_at: None,
                last_error: String::new(),
                idle: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, NodeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the server may be sent to now. A down server comes back
    /// through the heartbeat, or (without heartbeat) once `recover_wait`
    /// has passed.
    pub fn usable(&self, now: Instant, heartbeat: bool) -> bool {
        let st = self.lock();
        st.available || (!heartbeat && st.retry_at.map(|t| now >= t).unwrap_or(true))
    }

    /// Marks the server down; returns whether it was up until now (to log
    /// the change once). Its idle connections are dropped.
    pub fn mark_down(&self, reason: &str, recover_wait: Duration) -> bool {
        let mut st = self.lock();
        let was = st.available;
        st.available = false;
        st.retry_at = Some(Instant::now() + recover_wait);
        st.last_error = reason.to_string();
        st.idle.clear();
        was
    }

    /// Marks the server up; returns whether it was down until now.
    pub fn mark_up(&self) -> bool {
        let mut st = self.lock();
        let was_down = !st.available;
        st.available = true;
        st.retry_at = None;
        was_down
    }

    pub fn last_error(&self) -> String {
        self.lock().last_error.clone()
    }

    pub fn take_idle(&self) -> Option<Conn> {
        self.lock().idle.pop()
    }

    pub fn put_idle(&self, c: Conn) -> Option<Conn> {
        let mut st = self.lock();
        if st.idle.len() >= MAX_IDLE {
            return Some(c);
        }
        st.idle.push(c);
        None
    }

    pub fn drain_idle(&self) -> Vec<Conn> {
        std::mem::take(&mut self.lock().idle)
    }
}

/// The servers to try for one chunk, in order: the usable non-standby ones
/// in weighted random order, then the usable standby ones the same way.
/// Servers of weight 0 come after the weighted ones of their kind.
pub fn attempt_order<R: Rng>(
    nodes: &[Node],
    usable: impl Fn(&Node) -> bool,
    rng: &mut R,
) -> Vec<usize> {
    let mut order = Vec::with_capacity(nodes.len());
    for standby in [false, true] {
        let mut group: Vec<usize> = (0..nodes.len())
            .filter(|&i| nodes[i].standby == standby && usable(&nodes[i]))
            .collect();
        // weighted sampling without replacement
        while !group.is_empty() {
            let total: u64 = group.iter().map(|&i| nodes[i].weight as u64).sum();
            let pos = if total == 0 {
                rng.gen_range(0..group.len())
            } else {
                let mut x = rng.gen_range(0..total);
                let mut pos = 0;
                for (k, &i) in group.iter().enumerate() {
                    let w = nodes[i].weight as u64;
                    if x < w {
                        pos = k;
                        break;
                    }
                    x -= w;
                }
                pos
            };
            order.push(group.remove(pos));
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn node(name: &str, weight: u32, standby: bool) -> Node {
        Node::new(name.into(), "h".into(), 1, weight, standby, None)
    }

    #[test]
    fn weights_are_respected_and_standby_comes_last() {
        let nodes = vec![
            node("a", 3, false),
            node("b", 1, false),
            node("s", 60, true),
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut first = [0u32; 3];
        for _ in 0..4000 {
            let o = attempt_order(&nodes, |_| true, &mut rng);
            assert_eq!(o.len(), 3);
            assert_eq!(o[2], 2, "standby only after every primary");
            first[o[0]] += 1;
        }
        assert_eq!(first[2], 0);
        let share = first[0] as f64 / 4000.0;
        assert!((0.70..0.80).contains(&share), "a first in {share}");
    }

    #[test]
    fn down_servers_are_skipped_and_standby_takes_over() {
        let nodes = vec![
            node("a", 60, false),
            node("b", 60, false),
            node("s", 60, true),
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        nodes[0].mark_down("refused", Duration::from_secs(60));
        let now = Instant::now();
        let o = attempt_order(&nodes, |n| n.usable(now, false), &mut rng);
        assert_eq!(o, vec![1, 2]);
        nodes[1].mark_down("refused", Duration::from_secs(60));
        let o = attempt_order(&nodes, |n| n.usable(now, false), &mut rng);
        assert_eq!(o, vec![2]);
        // without heartbeat a down server is tried again after recover_wait
        assert!(nodes[0].usable(now + Duration::from_secs(61), false));
        // with heartbeat only the heartbeat brings it back
        assert!(!nodes[0].usable(now + Duration::from_secs(61), true));
        assert!(nodes[0].mark_up());
        assert!(nodes[0].usable(now, true));
        assert!(!nodes[0].mark_up());
    }

    #[test]
    fn zero_weight_goes_after_weighted() {
        let nodes = vec![node("z", 0, false), node("w", 1, false)];
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for _ in 0..100 {
            assert_eq!(attempt_order(&nodes, |_| true, &mut rng), vec![1, 0]);
        }
    }
}
