//! The schedule of the wide-area link emulator (`src/bin/valet-link.rs`), as pure functions of
//! time, so it can be tested without a clock or a network.
//!
//! Each direction of the link is a [`Line`]: a FIFO with a fixed one-way delay, a rate cap and a
//! bounded queue, as `tc qdisc … netem delay D rate R limit L` would be. A packet arriving at
//! `t` leaves at `max(t + delay, departure of the packet before it) + its length / rate`, which is
//! how netem's `rate` serializes packets; when `limit` packets are already waiting, the new one is
//! dropped (tail drop). Times are nanoseconds on any monotonic clock.

use std::collections::VecDeque;

/// What a direction of the link does to the packets that cross it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// One-way delay added to every packet.
    pub delay_ns: u64,
    /// The rate cap, in bits per second (10^6 per Mbit/s, as netem counts).
    pub rate_bits_per_s: u64,
    /// Packets that may wait at once, in the delay line and behind the rate cap together.
    pub limit_packets: usize,
}

impl Shape {
    /// A link of `rtt_ms` round trip (half of it each way) and `rate_mbit` Mbit/s, with a queue of
    /// `limit_packets`, or of about twice the bandwidth-delay product in `mtu`-sized packets.
    pub fn new(rtt_ms: u64, rate_mbit: u64, mtu: usize, limit_packets: Option<usize>) -> Self {
        let rate_bits_per_s = rate_mbit * 1_000_000;
        let delay_ns = rtt_ms * 1_000_000 / 2;
        let limit_packets = limit_packets.unwrap_or_else(|| {
            let bdp_bytes = rate_bits_per_s / 8 * rtt_ms / 1000;
            (2 * bdp_bytes as usize).div_ceil(mtu.max(1)).max(100)
        });
        Self {
            delay_ns,
            rate_bits_per_s,
            limit_packets,
        }
    }

    /// How long `len` bytes take to leave at the rate cap.
    pub fn serialization_ns(&self, len: usize) -> u64 {
        (len as u64 * 8 * 1_000_000_000).div_ceil(self.rate_bits_per_s)
    }
}

/// One direction of the link: the packets on their way (of any type `P`: bytes, or an id in
/// tests) and when each leaves.
#[derive(Debug)]
pub struct Line<P> {
    shape: Shape,
    waiting: VecDeque<(u64, P)>,
    last_departure_ns: u64,
}

impl<P> Line<P> {
    /// An empty line shaped by `shape`.
    pub fn new(shape: Shape) -> Self {
        Self {
            shape,
            waiting: VecDeque::with_capacity(shape.limit_packets.min(4096)),
            last_departure_ns: 0,
        }
    }

    /// Takes `packet` of `len` bytes on the wire, arrived at `now_ns`, and returns when it will
    /// leave; or `None` when the queue is full and the packet is dropped.
    pub fn push(&mut self, now_ns: u64, len: usize, packet: P) -> Option<u64> {
        if self.waiting.len() >= self.shape.limit_packets {
            return None;
        }
        let start = (now_ns + self.shape.delay_ns).max(self.last_departure_ns);
        let departure = start + self.shape.serialization_ns(len);
        self.last_departure_ns = departure;
        self.waiting.push_back((departure, packet));
        Some(departure)
    }

    /// When the first waiting packet leaves, if any waits.
    pub fn next_departure(&self) -> Option<u64> {
        self.waiting.front().map(|(departure, _)| *departure)
    }

    /// When to send next, sending packets in batches to save wake-ups: when at least
    /// `min_batch` of the first `max_batch` packets are due within `tick_ns` of the first, at the
    /// last of those (the others wait for it, each at most a tick); otherwise, sparse traffic,
    /// at the first one's departure.
    pub fn next_wake(&self, min_batch: usize, max_batch: usize, tick_ns: u64) -> Option<u64> {
        let first = self.next_departure()?;
        let within_tick = self
            .waiting
            .iter()
            .take(max_batch)
            .map(|&(departure, _)| departure)
            .take_while(|&departure| departure <= first + tick_ns);
        let (count, last) =
            within_tick.fold((0, first), |(count, _), departure| (count + 1, departure));
        Some(if count >= min_batch { last } else { first })
    }

    /// The first waiting packet, if its time to leave has come by `now_ns`.
    pub fn pop_due(&mut self, now_ns: u64) -> Option<P> {
        if self.next_departure()? <= now_ns {
            self.waiting.pop_front().map(|(_, packet)| packet)
        } else {
            None
        }
    }

    /// Packets waiting now.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether no packet waits.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// 40 ms round trip, 200 Mbit/s: a 1500-byte packet takes 60 µs to serialize.
    fn wan(limit: Option<usize>) -> Shape {
        Shape::new(40, 200, 1500, limit)
    }

    #[test]
    fn the_default_queue_holds_twice_the_bandwidth_delay_product() {
        // 200 Mbit/s × 40 ms = 1,000,000 bytes; twice that in 1500-byte packets.
        assert_eq!(wan(None).limit_packets, 1334);
        assert_eq!(wan(Some(7)).limit_packets, 7);
        // A tiny link still queues a useful number of packets.
        assert_eq!(Shape::new(1, 1, 1500, None).limit_packets, 100);
    }

    #[test]
    fn a_lone_packet_leaves_after_the_delay_and_its_serialization() {
        let shape = wan(None);
        assert_eq!(shape.delay_ns, 20 * MS);
        assert_eq!(shape.serialization_ns(1500), 60_000);
        let mut line = Line::new(shape);
        assert_eq!(line.push(5 * MS, 1500, 0), Some(25 * MS + 60_000));
        assert_eq!(line.pop_due(25 * MS + 59_999), None);
        assert_eq!(line.pop_due(25 * MS + 60_000), Some(0));
        assert!(line.is_empty());
    }

    #[test]
    fn a_burst_leaves_at_the_rate_cap_one_after_the_other() {
        let mut line = Line::new(wan(None));
        let departures: Vec<u64> = (0..4).map(|_| line.push(0, 1500, 0).unwrap()).collect();
        let first = 20 * MS + 60_000;
        assert_eq!(
            departures,
            [first, first + 60_000, first + 120_000, first + 180_000]
        );
        // A small packet 100 µs behind them waits its turn, then its own (shorter) serialization.
        let last = first + 180_000;
        assert_eq!(line.push(100_000, 40, 0), Some(last + 1_600));
        // One that arrives after they have all gone only pays the delay and its serialization.
        assert_eq!(line.push(MS, 40, 0), Some(21 * MS + 1_600));
    }

    #[test]
    fn a_packet_after_the_line_went_idle_only_pays_the_delay() {
        let mut line = Line::new(wan(None));
        line.push(0, 1500, 0);
        // Arrives long after the first left: the rate cap does not hold it back.
        assert_eq!(line.push(50 * MS, 1500, 0), Some(70 * MS + 60_000));
    }

    #[test]
    fn the_rate_cap_holds_over_a_long_run() {
        // Packets offered at twice the cap leave at the cap: 200 Mbit/s is 25 MB/s.
        let mut line = Line::new(wan(Some(1_000_000)));
        let mut last = 0;
        for i in 0..10_000 {
            last = line.push(i * 30_000, 1500, 0).unwrap();
        }
        assert_eq!(last, 20 * MS + 10_000 * 60_000);
    }

    #[test]
    fn dense_packets_leave_in_batches_and_sparse_ones_on_time() {
        let mut line = Line::new(wan(None));
        assert_eq!(line.next_wake(4, 16, MS), None);
        // Three packets 100 µs apart, then one 5 ms later: too few for a batch, each is sent
        // at its own time.
        let first = line.push(0, 40, 0).unwrap();
        line.push(100_000, 40, 0);
        line.push(200_000, 40, 0);
        let lone = line.push(5 * MS, 40, 0).unwrap();
        assert_eq!(line.next_wake(4, 16, MS), Some(first));
        while line.pop_due(first + 200_000).is_some() {}
        assert_eq!(line.next_wake(4, 16, MS), Some(lone));
        assert!(line.pop_due(lone).is_some());
        // A burst at the rate cap, a packet every 60 µs: 16 (the most) go together when the
        // 16th is due, the first 900 µs late.
        let departures: Vec<u64> = (0..40)
            .map(|_| line.push(40 * MS, 1500, 0).unwrap())
            .collect();
        assert_eq!(line.next_wake(4, 16, MS), Some(departures[15]));
        // With a shorter tick, the batch is what fits in it: 300 µs holds 6 packets.
        assert_eq!(line.next_wake(4, 16, 300_000), Some(departures[5]));
        // Too short a tick for a batch: the first leaves on time.
        assert_eq!(line.next_wake(4, 16, 100_000), Some(departures[0]));
        let mut sent = 0;
        while line.pop_due(departures[15]).is_some() {
            sent += 1;
        }
        assert_eq!(sent, 16);
    }

    #[test]
    fn a_full_queue_drops_new_packets_until_one_leaves() {
        let mut line = Line::new(wan(Some(3)));
        for i in 0..3u8 {
            assert!(line.push(0, 100, i).is_some());
        }
        assert_eq!(line.push(0, 100, 3), None);
        assert_eq!(line.len(), 3);
        let first_due = line.next_departure().unwrap();
        assert_eq!(line.pop_due(first_due), Some(0));
        // Room for one more, which queues behind the two still waiting.
        let fourth = line.push(first_due, 100, 4).unwrap();
        assert!(fourth > line.next_departure().unwrap());
        assert_eq!(line.push(first_due, 100, 5), None);
        // The survivors leave in order, the dropped ones never.
        let mut left = Vec::new();
        while let Some(packet) = line.pop_due(fourth) {
            left.push(packet);
        }
        assert_eq!(left, [1, 2, 4]);
    }

    #[test]
    fn the_two_directions_do_not_hold_each_other_back() {
        let mut upstream = Line::new(wan(Some(10)));
        let mut downstream = Line::new(wan(Some(10)));
        // Upstream saturated and dropping...
        for _ in 0..20 {
            upstream.push(0, 1500, 0);
        }
        assert_eq!(upstream.len(), 10);
        // ...downstream still takes its packets, each after the plain delay.
        assert_eq!(downstream.push(0, 40, 0), Some(20 * MS + 1_600));
        assert_eq!(downstream.len(), 1);
    }
}
