//! The user-space wire relay of the soak test: frames read from one interface
//! are written to the other, with seeded loss, reordering, duplication and a
//! delay that changes over time (this kernel has no `tc netem`).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::time::{Duration, Instant};

use ix_driver::PacketSocket;
use ix_driver::packet_socket::wait_readable;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Largest frame the relay carries (a 1,500-byte MTU with its headers, and
/// room for a VLAN tag); a longer one is cut, which its receiver drops.
const FRAME_MAX_BYTES: usize = 1536;
/// Frames read from one side before the relay looks at the other.
const READ_BURST_FRAMES: usize = 64;
/// Longest sleep when nothing is held (the stats period is checked then).
const IDLE_WAIT: Duration = Duration::from_millis(100);

/// The faults, applied to each frame independently in both directions.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultPlan {
    /// Probability a frame is dropped.
    pub loss: f64,
    /// Probability a frame is held back by `reorder_hold` more than the
    /// others, so that later frames overtake it.
    pub reorder: f64,
    /// How long a reordered frame is held beyond the path's delay.
    pub reorder_hold: Duration,
    /// Probability a frame is sent twice.
    pub duplicate: f64,
    /// The path's one-way delay, stepping through these values.
    pub delays: Vec<Duration>,
    /// How long each delay lasts before the next (then the list repeats).
    pub delay_period: Duration,
}

impl FaultPlan {
    /// Checks the probabilities and the delay list.
    ///
    /// # Errors
    /// A message naming the bad setting.
    pub fn validate(&self) -> Result<(), String> {
        for (name, p) in [("loss", self.loss), ("reorder", self.reorder), ("duplicate", self.duplicate)] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("{name} {p} is not a probability between 0 and 1"));
            }
        }
        if self.delays.is_empty() {
            return Err("at least one delay (0 for none)".into());
        }
        if self.delay_period.is_zero() {
            return Err("the delay period must be longer than zero".into());
        }
        Ok(())
    }

    /// The one-way delay `elapsed` after the start.
    pub fn delay_at(&self, elapsed: Duration) -> Duration {
        let step = elapsed.as_nanos() / self.delay_period.as_nanos().max(1);
        self.delays[(step % self.delays.len() as u128) as usize]
    }

    /// The longest a frame that is not lost waits in the relay.
    pub fn longest_hold(&self) -> Duration {
        self.delays.iter().max().copied().unwrap_or_default() + self.reorder_hold
    }

    /// What happens to a frame read `elapsed` after the start: dropped, or
    /// sent after the returned hold, once or twice.
    pub fn decide(&self, rng: &mut SmallRng, elapsed: Duration) -> Fate {
        if rng.random_bool(self.loss) {
            return Fate::Drop;
        }
        let mut hold = self.delay_at(elapsed);
        let reordered = rng.random_bool(self.reorder);
        if reordered {
            hold += self.reorder_hold;
        }
        Fate::Send { hold, reordered, twice: rng.random_bool(self.duplicate) }
    }
}

/// A frame's fate at the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Not sent.
    Drop,
    /// Sent after `hold`.
    Send {
        /// Time in the relay.
        hold: Duration,
        /// Held beyond the path's delay.
        reordered: bool,
        /// Sent a second time right after the first.
        twice: bool,
    },
}

/// What the relay did, for one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayCounts {
    /// Frames read.
    pub frames_in: u64,
    /// Frames sent (duplicates counted twice).
    pub frames_out: u64,
    /// Frames dropped on purpose.
    pub lost: u64,
    /// Frames held back past later ones.
    pub reordered: u64,
    /// Frames sent twice.
    pub duplicated: u64,
    /// Frames the relay failed to send (device queue full) or the kernel
    /// dropped before the relay read them: loss it did not choose.
    pub overflow: u64,
}

/// A frame waiting for its time, ordered by that time then arrival.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Held {
    due: Instant,
    seq: u64,
    to_b: bool,
    frame: Vec<u8>,
}

/// Two interfaces joined by the relay; `a_to_b` and `b_to_a` count each way.
#[derive(Debug)]
pub struct Relay {
    a: PacketSocket,
    b: PacketSocket,
    plan: FaultPlan,
    rng: SmallRng,
    held: BinaryHeap<Reverse<Held>>,
    seq: u64,
    /// Frames from `a` to `b`.
    pub a_to_b: RelayCounts,
    /// Frames from `b` to `a`.
    pub b_to_a: RelayCounts,
}

impl Relay {
    /// A relay between `a` and `b` with `plan`, its choices drawn from `seed`.
    pub fn new(a: PacketSocket, b: PacketSocket, plan: FaultPlan, seed: u64) -> Self {
        Self {
            a,
            b,
            plan,
            rng: SmallRng::seed_from_u64(seed),
            held: BinaryHeap::new(),
            seq: 0,
            a_to_b: RelayCounts::default(),
            b_to_a: RelayCounts::default(),
        }
    }

    /// Relays for `duration`, calling `report` with the counts (both ways)
    /// and the current delay every `report_every` and at the end.
    ///
    /// # Errors
    /// A failed `poll` or `recv` (not a failed send: that is counted).
    pub fn run(
        &mut self,
        duration: Duration,
        report_every: Duration,
        mut report: impl FnMut(&Relay, Duration),
    ) -> io::Result<()> {
        let start = Instant::now();
        let end = start + duration;
        let mut next_report = start + report_every;
        let mut buf = vec![0u8; FRAME_MAX_BYTES];
        loop {
            let now = Instant::now();
            self.release(now);
            if now >= next_report || now >= end {
                self.count_kernel_drops();
                report(self, self.plan.delay_at(now - start));
                next_report += report_every;
            }
            if now >= end {
                return Ok(());
            }
            let wake = self.held.peek().map_or(now + IDLE_WAIT, |h| h.0.due).min(next_report).min(end);
            let [from_a, from_b] = wait_readable([&self.a, &self.b], wake.saturating_duration_since(now))?;
            if from_a {
                self.read_side(true, start, &mut buf)?;
            }
            if from_b {
                self.read_side(false, start, &mut buf)?;
            }
        }
    }

    /// Reads a burst from `a` (`from_a`) or `b` and holds each frame per the plan.
    fn read_side(&mut self, from_a: bool, start: Instant, buf: &mut [u8]) -> io::Result<()> {
        for _ in 0..READ_BURST_FRAMES {
            let socket = if from_a { &self.a } else { &self.b };
            let Some(len) = socket.recv(buf)? else { break };
            let now = Instant::now();
            let fate = self.plan.decide(&mut self.rng, now - start);
            let counts = if from_a { &mut self.a_to_b } else { &mut self.b_to_a };
            counts.frames_in += 1;
            let Fate::Send { hold, reordered, twice } = fate else {
                counts.lost += 1;
                continue;
            };
            counts.reordered += u64::from(reordered);
            counts.duplicated += u64::from(twice);
            for _ in 0..1 + usize::from(twice) {
                self.seq += 1;
                let held = Held { due: now + hold, seq: self.seq, to_b: from_a, frame: buf[..len].to_vec() };
                self.held.push(Reverse(held));
            }
        }
        Ok(())
    }

    /// Sends every held frame whose time has come.
    fn release(&mut self, now: Instant) {
        while self.held.peek().is_some_and(|h| h.0.due <= now) {
            let Some(Reverse(held)) = self.held.pop() else { break };
            let (socket, counts) = if held.to_b { (&self.b, &mut self.a_to_b) } else { (&self.a, &mut self.b_to_a) };
            match socket.send(&held.frame) {
                Ok(()) => counts.frames_out += 1,
                Err(error) => {
                    counts.overflow += 1;
                    tracing::debug!(iface = socket.iface(), %error, "relay send failed");
                }
            }
        }
    }

    /// Adds the frames the kernel dropped before the relay could read them.
    fn count_kernel_drops(&mut self) {
        for (socket, counts) in [(&self.a, &mut self.a_to_b), (&self.b, &mut self.b_to_a)] {
            counts.overflow += socket.take_drops().unwrap_or(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> FaultPlan {
        FaultPlan {
            loss: 0.01,
            reorder: 0.02,
            reorder_hold: Duration::from_millis(3),
            duplicate: 0.01,
            delays: vec![Duration::from_millis(1), Duration::from_millis(20)],
            delay_period: Duration::from_secs(10),
        }
    }

    #[test]
    fn the_delay_steps_through_the_list_and_repeats() {
        let plan = plan();
        assert_eq!(plan.delay_at(Duration::from_secs(3)), Duration::from_millis(1));
        assert_eq!(plan.delay_at(Duration::from_secs(12)), Duration::from_millis(20));
        assert_eq!(plan.delay_at(Duration::from_secs(21)), Duration::from_millis(1));
        assert_eq!(plan.longest_hold(), Duration::from_millis(23));
    }

    #[test]
    fn fates_follow_the_probabilities() {
        let plan = plan();
        let mut rng = SmallRng::seed_from_u64(7);
        let (mut lost, mut reordered, mut twice) = (0u32, 0u32, 0u32);
        const FRAMES: u32 = 100_000;
        for _ in 0..FRAMES {
            match plan.decide(&mut rng, Duration::ZERO) {
                Fate::Drop => lost += 1,
                Fate::Send { hold, reordered: r, twice: t } => {
                    let base = Duration::from_millis(1);
                    assert_eq!(hold, if r { base + plan.reorder_hold } else { base });
                    reordered += u32::from(r);
                    twice += u32::from(t);
                }
            }
        }
        // Expected 1,000, 1,980 and 990; binomial spread is about 31-44.
        assert!((800..1200).contains(&lost), "lost {lost}");
        assert!((1700..2300).contains(&reordered), "reordered {reordered}");
        assert!((800..1200).contains(&twice), "twice {twice}");
    }

    #[test]
    fn bad_plans_are_refused() {
        assert!(plan().validate().is_ok());
        assert!(FaultPlan { loss: 1.5, ..plan() }.validate().is_err());
        assert!(FaultPlan { delays: vec![], ..plan() }.validate().is_err());
        assert!(FaultPlan { delay_period: Duration::ZERO, ..plan() }.validate().is_err());
    }
}
