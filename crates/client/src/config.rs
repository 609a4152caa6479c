//! How a client behaves: traffic rates and delays, acknowledgements, message limits, SURBs.
//! Defaults are Nym's; named presets trade anonymity for speed, and say so.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::err::ConfigError;

/// Everything a client can be told.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientConfig {
    /// Rates and delays of the traffic the client sends.
    pub traffic: TrafficConfig,
    /// Acknowledgements and retransmission.
    pub acks: AckConfig,
    /// Message sizes and reassembly.
    pub messages: MessageConfig,
    /// Single-use reply blocks.
    pub surbs: SurbConfig,
}

/// The Loopix traffic a client sends.
///
/// A client sends packets in a Poisson stream whatever its application does: a real packet
/// when one is waiting, a drop-cover packet otherwise, so the link looks the same busy or idle.
/// A second Poisson stream sends loop-cover packets back to the client itself. Each mix node
/// holds a packet for an exponentially distributed delay.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrafficConfig {
    /// Mean delay each mix node holds a packet (Nym: 15 ms). Longer delays mix more packets.
    #[serde(with = "humantime_serde")]
    pub mean_hop_delay: Duration,
    /// Mean delay each mix node holds an acknowledgement (Nym: 15 ms).
    #[serde(with = "humantime_serde")]
    pub mean_ack_delay: Duration,
    /// Mean time between packets of the real stream (Nym: 20 ms, about 50 packets/s). It caps
    /// how fast the client sends, and costs bandwidth when idle.
    #[serde(with = "humantime_serde")]
    pub mean_send_interval: Duration,
    /// Mean time between loop-cover packets (Nym: 200 ms).
    #[serde(with = "humantime_serde")]
    pub mean_loop_interval: Duration,
    /// Time between the frames the gateway sends this client (each 2,464 bytes, with what
    /// waits for the client or padding). It caps how fast the client receives (a frame
    /// carries about one packet's payload), and costs bandwidth when idle.
    #[serde(with = "humantime_serde")]
    pub receive_interval: Duration,
    /// `constant` (a frame every `receive_interval`, exactly) or `poisson` (a Poisson stream
    /// of that mean). Either way the gateway's frames never depend on what arrives.
    pub receive_schedule: ReceiveSchedule,
    /// The gateway pushes each delivery at once, unpadded, and the client confirms each at
    /// once: an observer of the link sees when and how much the client receives (and Nym's
    /// behaviour). For tests and measurements only.
    pub insecure_push_deliveries: bool,
    /// Sends no cover at all: no drop cover in empty slots and no loops. An observer of the
    /// link then sees exactly when the application sends. For tests and measurements only.
    pub insecure_no_cover: bool,
    /// Mix nodes hold no packet of this client: packets cross the network as fast as it goes,
    /// and timing analysis links sender and recipient. For tests and measurements only.
    pub insecure_zero_delays: bool,
}

/// When the gateway sends a client its frames.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReceiveSchedule {
    /// A frame every interval, exactly.
    #[default]
    Constant,
    /// A Poisson stream of frames of that mean interval.
    Poisson,
}

/// Named settings of [`TrafficConfig`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrafficPreset {
    /// Nym's defaults: 15 ms per hop, a packet every 20 ms, a loop every 200 ms.
    Nym,
    /// 5 ms per hop, a packet every 10 ms, a loop every 100 ms: about half the latency, twice
    /// the idle bandwidth, less mixing per hop.
    LowLatency,
    /// Nym's delays with a packet every millisecond: about 1.6 MB/s of data, and as much
    /// cover when idle (about 2.4 MB/s). For transfers, not for leaving on.
    Bulk,
}

impl TrafficPreset {
    /// The preset's settings.
    pub fn config(self) -> TrafficConfig {
        let ms = Duration::from_millis;
        let (hop, send, r#loop) = match self {
            TrafficPreset::Nym => (ms(15), ms(20), ms(200)),
            TrafficPreset::LowLatency => (ms(5), ms(10), ms(100)),
            TrafficPreset::Bulk => (ms(15), ms(1), ms(200)),
        };
        TrafficConfig {
            mean_hop_delay: hop,
            mean_ack_delay: hop,
            mean_send_interval: send,
            mean_loop_interval: r#loop,
            // the gateway sends as often as the client does
            receive_interval: send,
            receive_schedule: ReceiveSchedule::Constant,
            insecure_push_deliveries: false,
            insecure_no_cover: false,
            insecure_zero_delays: false,
        }
    }
}

impl TrafficConfig {
    /// The schedule the client asks its gateway to send its frames on.
    pub fn downlink_schedule(&self) -> umbra_wire::gateway::Schedule {
        use umbra_wire::gateway::Schedule;
        if self.insecure_push_deliveries {
            return Schedule::InsecurePush;
        }
        match self.receive_schedule {
            ReceiveSchedule::Constant => Schedule::Constant {
                interval: self.receive_interval,
            },
            ReceiveSchedule::Poisson => Schedule::Poisson {
                mean: self.receive_interval,
            },
        }
    }

    /// The longest `receive_interval` whose frames carry, with half again to spare, what the
    /// client's own streams bring back when it is idle: an ack for every packet it sends and
    /// its loops.
    pub fn longest_receive_interval(&self) -> Duration {
        // records on the downlink: an ack's, a returning loop's
        const ACK_RECORD: f64 = 33.0;
        const LOOP_RECORD: f64 = 1642.0;
        let per_second = |interval: Duration| 1.0 / interval.as_secs_f64().max(1e-9);
        let sends = per_second(self.mean_send_interval) + per_second(self.mean_loop_interval);
        let demand = sends * ACK_RECORD + per_second(self.mean_loop_interval) * LOOP_RECORD;
        let room = (umbra_wire::gateway::FRAME_LEN - 8) as f64;
        Duration::from_secs_f64(room / (1.5 * demand))
    }
}

impl Default for TrafficConfig {
    fn default() -> Self {
        TrafficPreset::Nym.config()
    }
}

/// Acknowledgements and retransmission.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AckConfig {
    /// A packet is sent again if its ack has not come after (the route's delays there and
    /// back) × this factor + [`AckConfig::extra_wait`] (Nym: 1.5).
    pub wait_factor: f64,
    /// See [`AckConfig::wait_factor`] (Nym: 1.5 s).
    #[serde(with = "humantime_serde")]
    pub extra_wait: Duration,
    /// How long a reply waits for its acknowledgement from the SURB's owner before it is sent
    /// again through another SURB.
    #[serde(with = "humantime_serde")]
    pub reply_wait: Duration,
    /// A message not acknowledged by then is reported failed (Nym retries forever).
    #[serde(with = "humantime_serde")]
    pub give_up_after: Duration,
    /// Routes avoid mix nodes that lose the client's packets (its own and its cover's acks
    /// tell), until their record fades after a minute or so. Without it, a dead node that is
    /// still in the topology costs a retransmission on every route through it.
    pub route_around_failures: bool,
}

impl Default for AckConfig {
    fn default() -> Self {
        AckConfig {
            wait_factor: 1.5,
            extra_wait: Duration::from_millis(1500),
            reply_wait: Duration::from_secs(5),
            give_up_after: Duration::from_secs(30 * 60),
            route_around_failures: true,
        }
    }
}

/// Message sizes and reassembly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MessageConfig {
    /// The largest message sent or received (default 16 MiB).
    pub max_message_size: usize,
    /// Bytes of incomplete messages held at once; the stalest are dropped beyond it.
    pub reassembly_budget: usize,
    /// An incomplete message getting no fragment for this long is dropped.
    #[serde(with = "humantime_serde")]
    pub reassembly_timeout: Duration,
}

impl Default for MessageConfig {
    fn default() -> Self {
        MessageConfig {
            max_message_size: 16 << 20,
            reassembly_budget: 64 << 20,
            reassembly_timeout: Duration::from_secs(120),
        }
    }
}

/// Single-use reply blocks.
///
/// Anyone can send this client SURBs under new sender tags, and anyone it gave SURBs to can
/// ask for more: what it keeps of both is bounded here (see [`crate::surbs`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SurbConfig {
    /// SURBs a client attaches when it sends with SURBs and does not say how many.
    pub attach: u16,
    /// A replier with fewer SURBs than this for a sender asks for more (Nym: 10).
    pub refill_below: u16,
    /// How many it asks for.
    pub request: u16,
    /// The most SURBs kept for one sender (Nym: 200); the oldest go first (the newest are
    /// used first). The keys of twice as many are kept for SURBs this client gave one peer.
    pub max_kept: u16,
    /// Anonymous senders whose SURBs are kept at once (default 1024); beyond, the least
    /// recently used sender's are dropped, and replies to it fail.
    pub max_senders: usize,
    /// SURBs kept for all senders together (default 50,000, about 25 MB); beyond, the oldest
    /// of the least recently used senders' go.
    pub max_held: usize,
    /// Keys of SURBs this client gave out, kept at once (default 50,000, about 10 MB); beyond,
    /// the oldest are dropped and replies through their SURBs cannot be read.
    pub max_issued: usize,
    /// How long a SURB is kept, given or received (default 24 h).
    #[serde(with = "humantime_serde")]
    pub lifetime: Duration,
    /// When the topology changes, the SURBs given out before stop working: peers this client
    /// gave SURBs to or had replies from within this long get `refill_below` fresh ones, and
    /// senders it replied to within this long are asked for some (default 5 min).
    #[serde(with = "humantime_serde")]
    pub top_up_within: Duration,
}

impl Default for SurbConfig {
    fn default() -> Self {
        SurbConfig {
            attach: 20,
            refill_below: 10,
            request: 20,
            max_kept: 200,
            max_senders: 1024,
            max_held: 50_000,
            max_issued: 50_000,
            lifetime: Duration::from_secs(24 * 3600),
            top_up_within: Duration::from_secs(300),
        }
    }
}

impl ClientConfig {
    /// Checks that the settings can work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let t = &self.traffic;
        if t.receive_interval < Duration::from_micros(100)
            || t.receive_interval > Duration::from_secs(10)
        {
            return Err(ConfigError::new(
                "traffic.receive_interval",
                "must be between 100µs and 10s (the default is the preset's send interval, 20ms)",
            ));
        }
        if !t.insecure_push_deliveries
            && !t.mean_send_interval.is_zero()
            && !t.mean_loop_interval.is_zero()
        {
            let longest = t.longest_receive_interval();
            if t.receive_interval > longest {
                return Err(ConfigError::new(
                    "traffic.receive_interval",
                    format!(
                        "at most {}ms with these send and loop intervals: the gateway's frames must carry the acks of every packet this client sends and its returning loops, with room to spare (the default is the send interval)",
                        longest.as_millis()
                    ),
                ));
            }
        }
        if t.mean_send_interval.is_zero() || t.mean_loop_interval.is_zero() {
            return Err(ConfigError::new(
                "traffic.mean_send_interval",
                "the streams' intervals must be above zero (Nym: 20ms and 200ms)",
            ));
        }
        if self.acks.wait_factor.is_nan() || self.acks.wait_factor < 1.0 {
            return Err(ConfigError::new(
                "acks.wait_factor",
                "must be at least 1 (Nym: 1.5)",
            ));
        }
        if self.messages.max_message_size == 0 {
            return Err(ConfigError::new(
                "messages.max_message_size",
                "must be above zero",
            ));
        }
        if self.surbs.refill_below >= self.surbs.max_kept || self.surbs.request == 0 {
            return Err(ConfigError::new(
                "surbs",
                "refill_below must be below max_kept, and request above zero (defaults 10, 200, 20)",
            ));
        }
        let surbs = &self.surbs;
        if surbs.max_senders == 0
            || surbs.max_held < usize::from(surbs.max_kept)
            || surbs.max_issued < 2 * usize::from(surbs.max_kept)
        {
            return Err(ConfigError::new(
                "surbs.max_held",
                "max_senders must be above zero, max_held at least max_kept and max_issued at least twice max_kept (defaults 1024, 50000, 50000; max_kept 200)",
            ));
        }
        if surbs.lifetime.is_zero() || surbs.top_up_within.is_zero() {
            return Err(ConfigError::new(
                "surbs.lifetime",
                "lifetime and top_up_within must be above zero (defaults 24h, 5m)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_downlink_too_slow_for_the_clients_own_acks_is_refused() {
        let mut config = ClientConfig::default();
        config.validate().unwrap();
        // nym: 55 acks and 5 loops a second need 10 kB/s; a frame carries 2,456 bytes
        let longest = config.traffic.longest_receive_interval();
        assert!(
            (Duration::from_millis(150)..Duration::from_millis(180)).contains(&longest),
            "{longest:?}"
        );
        config.traffic.receive_interval = Duration::from_millis(500);
        let error = config.validate().unwrap_err().to_string();
        assert!(
            error.contains("receive_interval") && error.contains("at most 163ms"),
            "{error}"
        );
        // pushed, there is no schedule to keep up with
        config.traffic.insecure_push_deliveries = true;
        config.validate().unwrap();
        for preset in [
            TrafficPreset::Nym,
            TrafficPreset::LowLatency,
            TrafficPreset::Bulk,
        ] {
            let config = ClientConfig {
                traffic: preset.config(),
                ..ClientConfig::default()
            };
            config.validate().unwrap();
        }
    }
}
