//! One read transfer as a sans-IO state machine: option negotiation
//! (RFC 2347/2348/2349), lock-step or windowed (RFC 7440) sending, block
//! number roll-over, retransmission with backoff and a retry bound, and an
//! immediate end when the client sends ERROR (PXE ROMs probe `tsize` and
//! abort).
//!
//! The adapter feeds `handle_packet` and `handle_timeout(now)`, sends what
//! `poll_transmit(now)` returns (reading the file range of a `Data`
//! itself), and sleeps until `poll_timeout()`. Nothing here touches a
//! socket, a file or the clock.

use std::time::{Duration, Instant};

use super::packet::{ErrorCode, Packet};

/// The largest `timeout` option honoured, in seconds.
pub const MAX_CLIENT_TIMEOUT_SECS: u64 = 10;
/// The largest window: beyond half the block-number space a stale ACK
/// could not be told from a new one after roll-over.
pub const MAX_WINDOWSIZE: u64 = 32768;
/// Retransmissions of an OACK before the client has acknowledged anything:
/// a request from a spoofed address must not hold a slot for long.
pub const MAX_RETRIES_BEFORE_FIRST_ACK: u32 = 2;
/// Retransmissions of the first DATA block (a request without options) to
/// a client that has not answered: each is up to 516 bytes sent for a
/// request of a dozen, to an address nobody has verified.
pub const MAX_DATA_RETRIES_BEFORE_FIRST_ACK: u32 = 1;
/// How long a client that has not answered yet gets per try, whatever
/// `timeout` it asked for, and without backoff: a real client answers in
/// milliseconds, and a spoofed request then holds its slot at most
/// (1 + retries) of these.
pub const FIRST_ACK_TIMEOUT: Duration = Duration::from_secs(1);

/// Server-side bounds on what a client may negotiate.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest block size granted (RFC 2348 allows up to 65464).
    pub max_blksize: u16,
    /// Largest window granted (RFC 7440).
    pub max_windowsize: u16,
    /// Retransmission timeout when the client does not ask for one.
    pub default_timeout: Duration,
    /// Ceiling of the backed-off timeout.
    pub max_timeout: Duration,
    /// Retransmissions of one window before giving up.
    pub max_retries: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_blksize: 65464,
            max_windowsize: 64,
            default_timeout: Duration::from_secs(1),
            max_timeout: Duration::from_secs(8),
            max_retries: 5,
        }
    }
}

/// What was agreed for a transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub blksize: u16,
    pub windowsize: u16,
    pub timeout: Duration,
    /// The options to acknowledge in an OACK; empty means no OACK.
    pub oack: Vec<(String, String)>,
}

/// Decides the options of a read request for a file of `size` bytes.
/// Options outside their ranges and unknown ones are left out of the OACK,
/// which RFC 2347 allows; the transfer then uses the defaults.
pub fn negotiate(options: &[(String, String)], size: u64, limits: &Limits) -> Negotiated {
    let mut n = Negotiated {
        blksize: 512,
        windowsize: 1,
        timeout: limits.default_timeout,
        oack: Vec::new(),
    };
    for (name, value) in options {
        let Ok(v) = value.trim().parse::<u64>() else {
            continue;
        };
        match name.as_str() {
            "blksize" if v >= 8 => {
                n.blksize = v.min(u64::from(limits.max_blksize)).min(65464) as u16;
                n.oack.push((name.clone(), n.blksize.to_string()));
            }
            "tsize" => n.oack.push((name.clone(), size.to_string())),
            // RFC 2349: the server must answer the same value or ignore it.
            // Long timeouts would let one (spoofed) request hold a transfer
            // slot for many minutes, so they are ignored.
            "timeout" if (1..=MAX_CLIENT_TIMEOUT_SECS).contains(&v) => {
                n.timeout = Duration::from_secs(v);
                n.oack.push((name.clone(), v.to_string()));
            }
            "windowsize" if (1..=65535).contains(&v) => {
                n.windowsize = v
                    .min(u64::from(limits.max_windowsize.max(1)))
                    .min(MAX_WINDOWSIZE) as u16;
                n.oack.push((name.clone(), n.windowsize.to_string()));
            }
            _ => {}
        }
    }
    n
}

/// Something to send to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transmit {
    Oack(Vec<(String, String)>),
    /// DATA `block` carrying `len` bytes of the file from `offset`.
    Data {
        block: u16,
        offset: u64,
        len: usize,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
}

/// How a transfer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The client acknowledged the last block.
    Complete,
    /// The client sent ERROR; nothing more is sent.
    Aborted { code: ErrorCode, message: String },
    /// No acknowledgement after every retry.
    TimedOut,
    /// The client sent something that has no place in a read transfer.
    ProtocolError(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// OACK to send or sent; waiting for ACK 0.
    Negotiating {
        oack_sent: bool,
    },
    Sending,
    Done(Outcome),
}

#[derive(Debug)]
pub struct Transfer {
    size: u64,
    blksize: u64,
    windowsize: u64,
    oack: Vec<(String, String)>,
    /// Data blocks in the file, counting the final short (maybe empty) one.
    total_blocks: u64,
    /// Blocks 1..=acked are confirmed.
    acked: u64,
    /// The next block to send (absolute, from 1).
    next: u64,
    /// The highest block sent so far.
    sent_max: u64,
    base_timeout: Duration,
    timeout: Duration,
    max_timeout: Duration,
    max_retries: u32,
    retries: u32,
    deadline: Option<Instant>,
    state: State,
    /// An error reply owed to the client.
    pending_error: Option<Transmit>,
    retransmits: u64,
    /// The client has acknowledged something.
    heard: bool,
}

impl Transfer {
    pub fn new(negotiated: Negotiated, size: u64, limits: &Limits) -> Self {
        let blksize = u64::from(negotiated.blksize.max(8));
        let state = if negotiated.oack.is_empty() {
            State::Sending
        } else {
            State::Negotiating { oack_sent: false }
        };
        Self {
            size,
            blksize,
            windowsize: u64::from(negotiated.windowsize.max(1)),
            oack: negotiated.oack,
            total_blocks: size / blksize + 1,
            acked: 0,
            next: 1,
            sent_max: 0,
            base_timeout: negotiated.timeout,
            timeout: negotiated.timeout,
            max_timeout: limits.max_timeout.max(negotiated.timeout),
            max_retries: limits.max_retries,
            retries: 0,
            deadline: None,
            state,
            pending_error: None,
            retransmits: 0,
            heard: false,
        }
    }

    pub fn outcome(&self) -> Option<&Outcome> {
        match &self.state {
            State::Done(o) => Some(o),
            _ => None,
        }
    }

    /// Blocks sent again after a timeout or a client's rewind.
    pub fn retransmits(&self) -> u64 {
        self.retransmits
    }

    /// When `handle_timeout` is due, if anything is outstanding.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Done(_) => None,
            _ => self.deadline,
        }
    }

    fn finish(&mut self, outcome: Outcome) {
        self.state = State::Done(outcome);
        self.deadline = None;
    }

    /// Maps a wire block number to the absolute block it acknowledges, if
    /// it lies in what was sent and not yet acknowledged.
    fn absolute(&self, wire: u16) -> Option<u64> {
        let wire = u64::from(wire);
        // The candidates are acked+1 ..= sent_max, fewer than 65536 of them.
        let base = self.acked + 1;
        let delta = (wire + 65536 - (base % 65536)) % 65536;
        let k = base + delta;
        (k <= self.sent_max).then_some(k)
    }

    pub fn handle_packet(&mut self, packet: &Packet<'_>) {
        if matches!(self.state, State::Done(_)) {
            return;
        }
        match packet {
            Packet::Error { code, message } => {
                self.finish(Outcome::Aborted {
                    code: *code,
                    message: message.clone(),
                });
            }
            Packet::Ack { block } => self.handle_ack(*block),
            other => {
                let what = match other {
                    Packet::Rrq(_) => "RRQ",
                    Packet::Wrq(_) => "WRQ",
                    Packet::Data { .. } => "DATA",
                    Packet::Oack { .. } => "OACK",
                    Packet::Ack { .. } | Packet::Error { .. } => "packet",
                };
                self.pending_error = Some(Transmit::Error {
                    code: ErrorCode::IllegalOperation,
                    message: format!("unexpected {what} during a read"),
                });
                self.finish(Outcome::ProtocolError(format!("client sent {what}")));
            }
        }
    }

    fn handle_ack(&mut self, block: u16) {
        match self.state {
            State::Negotiating { oack_sent: true } if block == 0 => {
                self.heard = true;
                self.state = State::Sending;
                self.progress();
            }
            State::Negotiating { .. } => {}
            State::Sending => {
                // Old and duplicate ACKs are ignored: answering them would
                // double the traffic (the sorcerer's apprentice problem).
                let Some(k) = self.absolute(block) else {
                    return;
                };
                self.heard = true;
                self.acked = k;
                if k >= self.total_blocks {
                    self.finish(Outcome::Complete);
                    return;
                }
                if k < self.sent_max && k + 1 < self.next {
                    // RFC 7440: an ACK inside the window means the rest was
                    // lost; go on from the block after it.
                    self.retransmits += self.sent_max - k;
                    self.next = k + 1;
                }
                self.progress();
            }
            State::Done(_) => {}
        }
    }

    /// Acknowledged progress resets the retry count and the backoff.
    fn progress(&mut self) {
        self.retries = 0;
        self.timeout = self.base_timeout;
        self.deadline = None;
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        match self.deadline {
            Some(d) if now >= d => {}
            _ => return,
        }
        if matches!(self.state, State::Done(_)) {
            return;
        }
        let bound = match (self.heard, &self.state) {
            (true, _) => self.max_retries,
            (false, State::Negotiating { .. }) => {
                self.max_retries.min(MAX_RETRIES_BEFORE_FIRST_ACK)
            }
            (false, _) => self.max_retries.min(MAX_DATA_RETRIES_BEFORE_FIRST_ACK),
        };
        if self.retries >= bound {
            self.finish(Outcome::TimedOut);
            return;
        }
        self.retries += 1;
        if self.heard {
            self.timeout = (self.timeout * 2).min(self.max_timeout);
        }
        self.deadline = None;
        match self.state {
            State::Negotiating { .. } => self.state = State::Negotiating { oack_sent: false },
            State::Sending => {
                self.retransmits += self.sent_max.saturating_sub(self.acked);
                self.next = self.acked + 1;
            }
            State::Done(_) => {}
        }
    }

    /// How long to wait for an acknowledgement: the negotiated, backed-off
    /// timeout once the client has answered; `FIRST_ACK_TIMEOUT` at most
    /// before.
    fn wait(&self) -> Duration {
        if self.heard {
            self.timeout
        } else {
            self.timeout.min(FIRST_ACK_TIMEOUT)
        }
    }

    /// The next packet to send, if any. Call until it returns `None`.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        if let Some(error) = self.pending_error.take() {
            return Some(error);
        }
        match self.state {
            State::Done(_) => None,
            State::Negotiating { oack_sent: true } => None,
            State::Negotiating { oack_sent: false } => {
                self.state = State::Negotiating { oack_sent: true };
                self.deadline = Some(now + self.wait());
                Some(Transmit::Oack(self.oack.clone()))
            }
            State::Sending => {
                let window_end = (self.acked + self.windowsize).min(self.total_blocks);
                if self.next > window_end {
                    return None;
                }
                let k = self.next;
                self.next += 1;
                self.sent_max = self.sent_max.max(k);
                if self.next > window_end {
                    self.deadline = Some(now + self.wait());
                }
                let offset = (k - 1) * self.blksize;
                let len = self.blksize.min(self.size.saturating_sub(offset)) as usize;
                Some(Transmit::Data {
                    block: (k % 65536) as u16,
                    offset,
                    len,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn negotiation_table() {
        let limits = Limits {
            max_blksize: 1468,
            max_windowsize: 16,
            ..Limits::default()
        };
        let check =
            |options: &[(&str, &str)], blksize: u16, windowsize: u16, oack: &[(&str, &str)]| {
                let n = negotiate(&opts(options), 1000, &limits);
                assert_eq!(
                    (n.blksize, n.windowsize, n.oack),
                    (blksize, windowsize, opts(oack)),
                    "{options:?}"
                );
            };
        check(&[], 512, 1, &[]);
        check(&[("tsize", "0")], 512, 1, &[("tsize", "1000")]);
        check(
            &[("blksize", "1468"), ("tsize", "0")],
            1468,
            1,
            &[("blksize", "1468"), ("tsize", "1000")],
        );
        check(&[("blksize", "9000")], 1468, 1, &[("blksize", "1468")]);
        check(&[("blksize", "4")], 512, 1, &[]);
        check(&[("windowsize", "64")], 512, 16, &[("windowsize", "16")]);
        check(&[("timeout", "200")], 512, 1, &[]);
        check(
            &[("windowsize", "0"), ("timeout", "300"), ("x-ipxe", "1")],
            512,
            1,
            &[],
        );
        check(
            &[("timeout", "3"), ("blksize", "abc")],
            512,
            1,
            &[("timeout", "3")],
        );
    }

    /// Drives a transfer against a client that acknowledges every window,
    /// and returns the blocks (wire number, len) it received.
    fn run_clean(size: u64, options: &[(&str, &str)]) -> (Vec<(u16, usize)>, Outcome) {
        let limits = Limits::default();
        let n = negotiate(&opts(options), size, &limits);
        let oack = !n.oack.is_empty();
        let mut t = Transfer::new(n, size, &limits);
        let now = Instant::now();
        let mut got = Vec::new();
        if oack {
            assert!(matches!(t.poll_transmit(now), Some(Transmit::Oack(_))));
            assert_eq!(t.poll_transmit(now), None);
            t.handle_packet(&Packet::Ack { block: 0 });
        }
        for _ in 0..1_000_000 {
            let mut last = None;
            while let Some(tx) = t.poll_transmit(now) {
                let Transmit::Data { block, len, .. } = tx else {
                    panic!("{tx:?}")
                };
                got.push((block, len));
                last = Some(block);
            }
            match last {
                Some(b) => t.handle_packet(&Packet::Ack { block: b }),
                None => break,
            }
        }
        (got, t.outcome().cloned().expect("finished"))
    }

    #[test]
    fn lock_step_and_windowed_transfers_deliver_every_byte() {
        let (blocks, outcome) = run_clean(1024, &[]);
        assert_eq!(outcome, Outcome::Complete);
        assert_eq!(
            blocks,
            vec![(1, 512), (2, 512), (3, 0)],
            "an exact multiple ends with an empty block"
        );
        let (blocks, _) = run_clean(1000, &[("blksize", "1468")]);
        assert_eq!(blocks, vec![(1, 1000)]);
        let (blocks, outcome) = run_clean(10_000, &[("blksize", "1000"), ("windowsize", "4")]);
        assert_eq!(outcome, Outcome::Complete);
        assert_eq!(blocks.iter().map(|b| b.1).sum::<usize>(), 10_000);
        assert_eq!(blocks.len(), 11);
        let (blocks, _) = run_clean(0, &[]);
        assert_eq!(blocks, vec![(1, 0)]);
    }

    #[test]
    fn block_numbers_roll_over() {
        // 70000 blocks of 8 bytes: past 65535 the numbers wrap to 0.
        let size = 70_000 * 8 - 3;
        let (blocks, outcome) = run_clean(size, &[("blksize", "8"), ("windowsize", "64")]);
        assert_eq!(outcome, Outcome::Complete);
        assert_eq!(blocks.len(), 70_000);
        assert_eq!(blocks[65_534].0, 65_535);
        assert_eq!(blocks[65_535].0, 0);
        assert_eq!(blocks[65_536].0, 1);
        assert_eq!(blocks.iter().map(|b| b.1 as u64).sum::<u64>(), size);
    }

    #[test]
    fn silent_clients_get_few_retries() {
        // A request from a spoofed address is never acknowledged.
        let limits = Limits::default();
        let mut t = Transfer::new(negotiate(&[], 2000, &limits), 2000, &limits);
        let mut now = Instant::now();
        let mut sends = 0;
        loop {
            while t.poll_transmit(now).is_some() {
                sends += 1;
            }
            let Some(deadline) = t.poll_timeout() else {
                break;
            };
            now = deadline;
            t.handle_timeout(now);
        }
        assert_eq!(t.outcome(), Some(&Outcome::TimedOut));
        assert_eq!(sends, 1 + MAX_DATA_RETRIES_BEFORE_FIRST_ACK as usize);
    }

    #[test]
    fn an_unverified_request_holds_its_slot_briefly() {
        // Whatever timeout it asks for, a client that never answers is
        // given up within (1 + retries) seconds, with small packets first.
        let limits = Limits::default();
        for options in [
            opts(&[]),
            opts(&[("timeout", "10"), ("blksize", "1468"), ("tsize", "0")]),
        ] {
            let mut t = Transfer::new(negotiate(&options, 1_000_000, &limits), 1_000_000, &limits);
            let start = Instant::now();
            let mut now = start;
            let mut sent = Vec::new();
            loop {
                while let Some(p) = t.poll_transmit(now) {
                    sent.push(p);
                }
                let Some(deadline) = t.poll_timeout() else {
                    break;
                };
                now = deadline;
                t.handle_timeout(now);
            }
            assert_eq!(t.outcome(), Some(&Outcome::TimedOut));
            assert!(
                now - start <= Duration::from_secs(3),
                "{options:?}: {:?}",
                now - start
            );
            if options.is_empty() {
                assert_eq!(sent.len(), 2, "one DATA block and one retransmission");
            } else {
                assert!(
                    sent.iter().all(|p| matches!(p, Transmit::Oack(_))),
                    "only OACKs to a client that has not answered: {sent:?}"
                );
            }
        }
    }

    #[test]
    fn client_error_ends_the_transfer_at_once() {
        let limits = Limits::default();
        let n = negotiate(&opts(&[("tsize", "0")]), 5000, &limits);
        let mut t = Transfer::new(n, 5000, &limits);
        let now = Instant::now();
        assert_eq!(
            t.poll_transmit(now),
            Some(Transmit::Oack(opts(&[("tsize", "5000")])))
        );
        t.handle_packet(&Packet::Error {
            code: ErrorCode::OptionsRefused,
            message: String::new(),
        });
        assert!(matches!(
            t.outcome(),
            Some(Outcome::Aborted {
                code: ErrorCode::OptionsRefused,
                ..
            })
        ));
        assert_eq!(t.poll_transmit(now), None);
        assert_eq!(t.poll_timeout(), None, "no retransmission after ERROR");
        t.handle_timeout(now + Duration::from_secs(60));
        assert_eq!(t.poll_transmit(now), None);
    }

    #[test]
    fn retransmits_with_backoff_then_gives_up() {
        let limits = Limits {
            max_retries: 3,
            ..Limits::default()
        };
        let mut t = Transfer::new(negotiate(&[], 2000, &limits), 2000, &limits);
        let mut now = Instant::now();
        assert!(matches!(
            t.poll_transmit(now),
            Some(Transmit::Data { block: 1, .. })
        ));
        t.handle_packet(&Packet::Ack { block: 1 });
        let first = t.poll_transmit(now);
        assert!(matches!(first, Some(Transmit::Data { block: 2, .. })));
        let mut gaps = Vec::new();
        while let Some(deadline) = t.poll_timeout() {
            gaps.push(deadline - now);
            now = deadline;
            t.handle_timeout(now);
            if let Some(tx) = t.poll_transmit(now) {
                assert_eq!(tx, first.clone().unwrap(), "the same block again");
            }
        }
        assert_eq!(
            gaps,
            vec![
                Duration::from_secs(1),
                Duration::from_secs(2),
                Duration::from_secs(4),
                Duration::from_secs(8)
            ]
        );
        assert_eq!(t.outcome(), Some(&Outcome::TimedOut));
        assert_eq!(t.retransmits(), 3);
    }

    #[test]
    fn window_rewinds_to_the_block_after_a_partial_ack() {
        let limits = Limits::default();
        let n = negotiate(&opts(&[("windowsize", "4")]), 512 * 10, &limits);
        let mut t = Transfer::new(n, 512 * 10, &limits);
        let now = Instant::now();
        assert!(matches!(t.poll_transmit(now), Some(Transmit::Oack(_))));
        t.handle_packet(&Packet::Ack { block: 0 });
        let sent: Vec<u16> = std::iter::from_fn(|| t.poll_transmit(now))
            .map(|tx| match tx {
                Transmit::Data { block, .. } => block,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(sent, vec![1, 2, 3, 4]);
        // Block 3 was lost: the client acknowledges 2.
        t.handle_packet(&Packet::Ack { block: 2 });
        let sent: Vec<u16> = std::iter::from_fn(|| t.poll_transmit(now))
            .map(|tx| match tx {
                Transmit::Data { block, .. } => block,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(sent, vec![3, 4, 5, 6]);
        // A duplicate of an old ACK changes nothing.
        t.handle_packet(&Packet::Ack { block: 2 });
        assert_eq!(t.poll_transmit(now), None);
    }

    #[test]
    fn unexpected_packets_end_with_an_error_reply() {
        let limits = Limits::default();
        let mut t = Transfer::new(negotiate(&[], 10, &limits), 10, &limits);
        let now = Instant::now();
        t.handle_packet(&Packet::Data {
            block: 1,
            data: b"x",
        });
        assert!(matches!(
            t.poll_transmit(now),
            Some(Transmit::Error {
                code: ErrorCode::IllegalOperation,
                ..
            })
        ));
        assert_eq!(t.poll_transmit(now), None);
        assert!(matches!(t.outcome(), Some(Outcome::ProtocolError(_))));
    }
}
