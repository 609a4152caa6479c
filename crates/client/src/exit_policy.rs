//! Which addresses and ports an exit opens connections to.
//!
//! An exit resolves a name first, then checks every address it would connect to with
//! [`ExitPolicy::check`], so a name that resolves to 127.0.0.1 meets the same refusal as the
//! address itself. The check has three parts, in order:
//!
//! 1. Special-purpose ranges (loopback, private, link-local, CGNAT, multicast, unspecified,
//!    documentation, tunnels that embed IPv4 addresses, ...) are refused, whatever the rules
//!    say; see [`special_purpose`]. `insecure_allow_private` lifts this for loopback and
//!    private ranges only, for local testing.
//! 2. The rules, first match wins: Tor-style lines `accept|reject ADDRESS[/MASK]:PORT[-PORT]`
//!    (the format is in `docs/exit-policy.md`).
//! 3. A destination no rule matches is refused.
//!
//! IPv4-mapped IPv6 addresses (`::ffff:127.0.0.1`) are checked as the IPv4 address they carry.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The exit policy settings of an exit service.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExitPolicyConfig {
    /// A file of rules (format: `docs/exit-policy.md`). Without one, the exit accepts every
    /// public address and port ([`ExitPolicy::default`]).
    pub file: Option<PathBuf>,
    /// Lets connections through to loopback and private addresses (127.0.0.0/8, ::1,
    /// 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10, link-local, fc00::/7), if the
    /// rules accept them. Anyone who can reach the exit can then reach the exit's own
    /// machine and its local network. For local testing only.
    pub insecure_allow_private: bool,
}

/// Rules deciding which destinations an exit connects to. See the [module documentation](self).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExitPolicy {
    rules: Vec<Rule>,
    insecure_allow_private: bool,
}

impl Default for ExitPolicy {
    /// Accepts every public address and port: `accept *:*` after the special-purpose ranges.
    fn default() -> Self {
        ExitPolicy::new(vec![Rule {
            action: Action::Accept,
            address: AddressPattern::Any,
            ports: PortRange::ALL,
            line: 0,
        }])
    }
}

impl ExitPolicy {
    /// A policy of these rules (after the refusal of special-purpose ranges; a destination no
    /// rule matches is refused).
    pub fn new(rules: Vec<Rule>) -> Self {
        ExitPolicy {
            rules,
            insecure_allow_private: false,
        }
    }

    /// Reads a policy file: one rule per line, `#` comments, blank lines ignored.
    pub fn parse(text: &str) -> Result<Self, ExitPolicyError> {
        let mut rules = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line_number = index + 1;
            let content = line.split('#').next().unwrap_or_default().trim();
            if content.is_empty() {
                continue;
            }
            let rule = parse_rule(content, line_number).map_err(|problem| ExitPolicyError {
                line: line_number,
                problem,
            })?;
            rules.push(rule);
        }
        Ok(ExitPolicy::new(rules))
    }

    /// The same policy, letting loopback and private addresses through when `allow` (see
    /// [`ExitPolicyConfig::insecure_allow_private`]).
    pub fn insecure_allow_private(mut self, allow: bool) -> Self {
        self.insecure_allow_private = allow;
        self
    }

    /// The rules, in the order they are tried.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Whether the exit may connect to this (already resolved) address and port.
    pub fn check(&self, destination: SocketAddr) -> Result<(), PolicyRefusal> {
        let ip = destination.ip().to_canonical();
        let port = destination.port();
        if let Some(range) = special_purpose(ip)
            && !(range.local && self.insecure_allow_private)
        {
            return Err(PolicyRefusal::SpecialPurpose { ip, range });
        }
        match self.rules.iter().find(|rule| rule.matches(ip, port)) {
            Some(rule) if rule.action == Action::Accept => Ok(()),
            Some(rule) => Err(PolicyRefusal::Rejected {
                destination,
                rule: rule.to_string(),
                line: rule.line,
            }),
            None => Err(PolicyRefusal::NoRule(destination)),
        }
    }
}

/// Why the exit policy refuses a destination.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyRefusal {
    /// The address is in a special-purpose range.
    #[error("{ip} is in {range}, which this exit does not connect to")]
    SpecialPurpose {
        /// The address (IPv4 if it was IPv4-mapped).
        ip: IpAddr,
        /// Its range.
        range: SpecialRange,
    },
    /// A `reject` rule matched.
    #[error("{destination} is refused by `{rule}` (exit policy line {line})")]
    Rejected {
        /// The destination.
        destination: SocketAddr,
        /// The rule that matched.
        rule: String,
        /// Its line in the policy file (0 for a rule not read from a file).
        line: usize,
    },
    /// No rule matched.
    #[error("no rule of the exit policy accepts {0}")]
    NoRule(SocketAddr),
}

/// Whether a rule lets a destination through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Connect.
    Accept,
    /// Refuse.
    Reject,
}

/// One line of a policy: `accept|reject ADDRESS[/MASK]:PORT[-PORT]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rule {
    /// What to do with a destination the rule matches.
    pub action: Action,
    /// The addresses it matches.
    pub address: AddressPattern,
    /// The ports it matches.
    pub ports: PortRange,
    /// Its line in the policy file (0 for a rule not read from a file).
    pub line: usize,
}

impl Rule {
    /// Whether the rule applies to this address (IPv4-mapped addresses already made IPv4).
    fn matches(&self, ip: IpAddr, port: u16) -> bool {
        self.address.contains(ip) && self.ports.contains(port)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let action = match self.action {
            Action::Accept => "accept",
            Action::Reject => "reject",
        };
        write!(f, "{action} {}:{}", self.address, self.ports)
    }
}

/// The addresses a rule matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddressPattern {
    /// Every address (`*`).
    Any,
    /// Every IPv4 address (`*4`).
    AnyV4,
    /// Every IPv6 address (`*6`).
    AnyV6,
    /// An IPv4 network (`10.0.0.0/8`, or one address `192.0.2.1`).
    V4 {
        /// The network address (no bits set after the prefix).
        network: Ipv4Addr,
        /// The prefix length, 0 to 32.
        prefix: u8,
    },
    /// An IPv6 network (`[fc00::]/7`, or one address `[::1]`).
    V6 {
        /// The network address (no bits set after the prefix).
        network: Ipv6Addr,
        /// The prefix length, 0 to 128.
        prefix: u8,
    },
}

impl AddressPattern {
    /// Whether the pattern matches this address.
    pub fn contains(self, ip: IpAddr) -> bool {
        match (self, ip) {
            (AddressPattern::Any, _)
            | (AddressPattern::AnyV4, IpAddr::V4(_))
            | (AddressPattern::AnyV6, IpAddr::V6(_)) => true,
            (AddressPattern::V4 { network, prefix }, IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                u32::from(ip) & mask == u32::from(network)
            }
            (AddressPattern::V6 { network, prefix }, IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                u128::from(ip) & mask == u128::from(network)
            }
            _ => false,
        }
    }
}

impl fmt::Display for AddressPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressPattern::Any => f.write_str("*"),
            AddressPattern::AnyV4 => f.write_str("*4"),
            AddressPattern::AnyV6 => f.write_str("*6"),
            AddressPattern::V4 { network, prefix } => write!(f, "{network}/{prefix}"),
            AddressPattern::V6 { network, prefix } => write!(f, "[{network}]/{prefix}"),
        }
    }
}

/// The ports a rule matches: `first` to `last`, both included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortRange {
    /// The lowest port.
    pub first: u16,
    /// The highest port.
    pub last: u16,
}

impl PortRange {
    /// Every port (`*`).
    pub const ALL: PortRange = PortRange {
        first: 1,
        last: u16::MAX,
    };

    /// Whether the port is in the range.
    pub fn contains(self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.first, self.last) {
            (1, u16::MAX) => f.write_str("*"),
            (first, last) if first == last => write!(f, "{first}"),
            (first, last) => write!(f, "{first}-{last}"),
        }
    }
}

/// A line of a policy file that cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("exit policy, line {line}: {problem}")]
pub struct ExitPolicyError {
    /// The line, counting from 1.
    pub line: usize,
    /// What is wrong and how to write it.
    pub problem: String,
}

const EXAMPLE: &str =
    "e.g. `reject 10.0.0.0/8:*`, `accept *:443` or `accept [2001:db8::]/32:80-81`";

fn parse_rule(content: &str, line: usize) -> Result<Rule, String> {
    if content.contains(',') {
        return Err(format!(
            "`{content}`: one rule per line, without commas; put each rule on its own line"
        ));
    }
    let mut words = content.split_whitespace();
    let action = match words.next().unwrap_or_default() {
        word if word.eq_ignore_ascii_case("accept") => Action::Accept,
        word if word.eq_ignore_ascii_case("reject") => Action::Reject,
        word => {
            return Err(format!(
                "a rule starts with `accept` or `reject`, not `{word}` ({EXAMPLE})"
            ));
        }
    };
    let Some(pattern) = words.next() else {
        return Err(format!(
            "`{content}` says what to do but not to what: add ADDRESS:PORTS ({EXAMPLE})"
        ));
    };
    if let Some(extra) = words.next() {
        return Err(format!(
            "unexpected `{extra}` after `{pattern}`: a rule is an action and one ADDRESS:PORTS, \
             with no spaces inside ({EXAMPLE})"
        ));
    }
    let (address, ports) = parse_pattern(pattern)?;
    Ok(Rule {
        action,
        address,
        ports,
        line,
    })
}

/// `ADDRESS[/MASK]:PORTS`, IPv6 addresses in brackets.
fn parse_pattern(pattern: &str) -> Result<(AddressPattern, PortRange), String> {
    let (address, mask, ports) = if let Some(bracketed) = pattern.strip_prefix('[') {
        let Some((inside, after)) = bracketed.split_once(']') else {
            return Err(format!(
                "`{pattern}`: an IPv6 address opened with `[` needs a `]`, e.g. `[::1]/128:*`"
            ));
        };
        let (mask, ports) = if let Some(after) = after.strip_prefix('/') {
            match after.split_once(':') {
                Some((mask, ports)) => (Some(mask), ports),
                None => return Err(missing_port(pattern)),
            }
        } else if let Some(ports) = after.strip_prefix(':') {
            (None, ports)
        } else {
            return Err(missing_port(pattern));
        };
        let Ok(ip) = inside.parse::<Ipv6Addr>() else {
            return Err(format!(
                "`[{inside}]` is not an IPv6 address; write e.g. `[2001:db8::1]` or `[fc00::]/7`"
            ));
        };
        (Some(IpAddr::V6(ip)), mask, ports)
    } else {
        let Some((address, ports)) = pattern.rsplit_once(':') else {
            return Err(missing_port(pattern));
        };
        let (address, mask) = match address.split_once('/') {
            Some((address, mask)) => (address, Some(mask)),
            None => (address, None),
        };
        if address.contains(':') {
            return Err(format!(
                "`{pattern}`: write IPv6 addresses in brackets, e.g. `[2001:db8::]/32:443`"
            ));
        }
        let ip = match address {
            "*" | "*4" | "*6" => None,
            _ => match address.parse::<Ipv4Addr>() {
                Ok(ip) => Some(IpAddr::V4(ip)),
                Err(_) => {
                    return Err(format!(
                        "`{address}` is not an address: write an IPv4 address such as \
                         `192.0.2.1` or `10.0.0.0/8`, an IPv6 one in brackets such as `[::1]`, \
                         or `*` for any (`*4`, `*6` for any of one family)"
                    ));
                }
            },
        };
        if ip.is_none() {
            if mask.is_some() {
                return Err(format!("`{pattern}`: `{address}` takes no mask"));
            }
            let any = match address {
                "*4" => AddressPattern::AnyV4,
                "*6" => AddressPattern::AnyV6,
                _ => AddressPattern::Any,
            };
            return Ok((any, parse_ports(ports)?));
        }
        (ip, mask, ports)
    };
    let address = match address {
        Some(ip) => network(ip, mask)?,
        None => AddressPattern::Any,
    };
    Ok((address, parse_ports(ports)?))
}

fn missing_port(pattern: &str) -> String {
    format!(
        "`{pattern}` has no port: write ADDRESS:PORTS, e.g. `192.0.2.1:443`, `[::1]:*` or \
         `10.0.0.0/8:1-1023` (`*` for every port)"
    )
}

/// The network of `ip/mask`, refusing masks that leave host bits set.
fn network(ip: IpAddr, mask: Option<&str>) -> Result<AddressPattern, String> {
    let bits = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = match mask {
        None => bits,
        Some(mask) if mask.contains('.') => {
            return Err(format!(
                "`/{mask}`: write the mask as a prefix length, e.g. `/16` for 255.255.0.0"
            ));
        }
        Some(mask) => match mask.parse::<u8>() {
            Ok(prefix) if prefix <= bits => prefix,
            _ => {
                return Err(format!(
                    "`/{mask}` is not a prefix length: write a number from 0 to {bits}"
                ));
            }
        },
    };
    let pattern = match ip {
        IpAddr::V4(network) => AddressPattern::V4 { network, prefix },
        IpAddr::V6(network) => AddressPattern::V6 { network, prefix },
    };
    let masked = match ip {
        IpAddr::V4(ip) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(ip) & mask))
        }
        IpAddr::V6(ip) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(ip) & mask))
        }
    };
    if masked != ip {
        let shown = match masked {
            IpAddr::V4(masked) => format!("{masked}/{prefix}"),
            IpAddr::V6(masked) => format!("[{masked}]/{prefix}"),
        };
        return Err(format!(
            "`{ip}/{prefix}` has bits set after the first {prefix}; did you mean `{shown}`?"
        ));
    }
    Ok(pattern)
}

/// `*`, `PORT` or `FIRST-LAST`, ports 1 to 65535.
fn parse_ports(ports: &str) -> Result<PortRange, String> {
    if ports == "*" {
        return Ok(PortRange::ALL);
    }
    let port = |text: &str| match text.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(format!(
            "`{text}` is not a port: write a number from 1 to 65535, a range such as `80-443`, \
             or `*` for every port"
        )),
    };
    let (first, last) = match ports.split_once('-') {
        Some((first, last)) => (port(first)?, port(last)?),
        None => {
            let only = port(ports)?;
            (only, only)
        }
    };
    if first > last {
        return Err(format!(
            "the port range `{ports}` runs backwards; write `{last}-{first}`"
        ));
    }
    Ok(PortRange { first, last })
}

/// A special-purpose address range (RFC 6890 and the IANA special-purpose registries).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SpecialRange {
    /// What the range is for.
    pub name: &'static str,
    /// The range.
    pub network: AddressPattern,
    /// Whether it is loopback or private, which `insecure_allow_private` lets through.
    pub local: bool,
}

impl fmt::Display for SpecialRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.network)
    }
}

const fn v4(name: &'static str, a: [u8; 4], prefix: u8, local: bool) -> SpecialRange {
    SpecialRange {
        name,
        network: AddressPattern::V4 {
            network: Ipv4Addr::new(a[0], a[1], a[2], a[3]),
            prefix,
        },
        local,
    }
}

const fn v6(name: &'static str, s: [u16; 8], prefix: u8, local: bool) -> SpecialRange {
    SpecialRange {
        name,
        network: AddressPattern::V6 {
            network: Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]),
            prefix,
        },
        local,
    }
}

/// The ranges refused before any rule, most specific first. Those marked local are what
/// `insecure_allow_private` lets through.
const SPECIAL_RANGES: &[SpecialRange] = &[
    v4("loopback", [127, 0, 0, 0], 8, true),
    v4("private network", [10, 0, 0, 0], 8, true),
    v4("private network", [172, 16, 0, 0], 12, true),
    v4("private network", [192, 168, 0, 0], 16, true),
    v4("shared address space (CGNAT)", [100, 64, 0, 0], 10, true),
    v4("link-local", [169, 254, 0, 0], 16, true),
    v4("\"this network\" (unspecified)", [0, 0, 0, 0], 8, false),
    v4("IETF protocol assignments", [192, 0, 0, 0], 24, false),
    v4("documentation", [192, 0, 2, 0], 24, false),
    v4("documentation", [198, 51, 100, 0], 24, false),
    v4("documentation", [203, 0, 113, 0], 24, false),
    v4("6to4 relay anycast", [192, 88, 99, 0], 24, false),
    v4("benchmarking", [198, 18, 0, 0], 15, false),
    v4("multicast", [224, 0, 0, 0], 4, false),
    v4("reserved and broadcast", [240, 0, 0, 0], 4, false),
    v6("loopback", [0, 0, 0, 0, 0, 0, 0, 1], 128, true),
    v6("unspecified", [0; 8], 128, false),
    v6("IPv4-compatible (deprecated)", [0; 8], 96, false),
    v6("unique local", [0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, true),
    v6("link-local", [0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, true),
    v6(
        "site-local (deprecated)",
        [0xfec0, 0, 0, 0, 0, 0, 0, 0],
        10,
        true,
    ),
    v6(
        "IPv4/IPv6 translation (NAT64)",
        [0x64, 0xff9b, 0, 0, 0, 0, 0, 0],
        96,
        false,
    ),
    v6(
        "local IPv4/IPv6 translation",
        [0x64, 0xff9b, 1, 0, 0, 0, 0, 0],
        48,
        false,
    ),
    v6("discard-only", [0x100, 0, 0, 0, 0, 0, 0, 0], 64, false),
    v6(
        "IETF protocol assignments (Teredo, ...)",
        [0x2001, 0, 0, 0, 0, 0, 0, 0],
        23,
        false,
    ),
    v6(
        "documentation",
        [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0],
        32,
        false,
    ),
    v6("documentation", [0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, false),
    v6("6to4", [0x2002, 0, 0, 0, 0, 0, 0, 0], 16, false),
    v6("multicast", [0xff00, 0, 0, 0, 0, 0, 0, 0], 8, false),
];

/// The special-purpose range an address is in, if any. IPv4-mapped IPv6 addresses are looked
/// up as their IPv4 address.
pub fn special_purpose(ip: IpAddr) -> Option<SpecialRange> {
    let ip = ip.to_canonical();
    SPECIAL_RANGES
        .iter()
        .find(|range| range.network.contains(ip))
        .copied()
}
