//! The exit policy: reading files (good and bad), first-match rules, the special-purpose
//! ranges refused by default, and the insecure setting for local tests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, SocketAddr};

use umbra_client::exit_policy::{
    Action, AddressPattern, ExitPolicy, ExitPolicyConfig, PolicyRefusal, PortRange, special_purpose,
};

fn at(text: &str) -> SocketAddr {
    text.parse()
        .unwrap_or_else(|_| panic!("{text} is not a socket address"))
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// The example policy of docs/exit-policy.md.
fn documented_example() -> String {
    let doc = include_str!("../../../docs/exit-policy.md");
    let example = doc.split("## Example").nth(1).unwrap();
    let block = example.split("```text\n").nth(1).unwrap();
    block.split("```").next().unwrap().to_string()
}

#[test]
fn the_documented_example_loads_and_means_what_it_says() {
    let policy = ExitPolicy::parse(&documented_example()).unwrap();
    assert_eq!(policy.rules().len(), 9);
    assert_eq!(policy.rules()[0].line, 2);
    let shown: Vec<String> = policy.rules().iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "reject *:25",
            "reject *:465",
            "reject *:587",
            "reject 198.51.0.0/16:*",
            "reject [2001:db8:bad::]/48:*",
            "accept *:80",
            "accept *:443",
            "accept [2606:4700::]/32:8080-8090",
            "reject *:*",
        ]
    );
    assert_eq!(policy.check(at("93.184.216.34:443")), Ok(()));
    assert_eq!(policy.check(at("[2606:4700::1111]:443")), Ok(()));
    assert_eq!(policy.check(at("[2606:4700::1111]:8085")), Ok(()));
    assert_eq!(
        policy.check(at("93.184.216.34:25")),
        Err(PolicyRefusal::Rejected {
            destination: at("93.184.216.34:25"),
            rule: "reject *:25".into(),
            line: 2,
        })
    );
    assert!(
        policy.check(at("198.51.7.7:443")).is_err(),
        "first match wins"
    );
    assert!(policy.check(at("[2606:4700::1111]:8091")).is_err());
    assert!(policy.check(at("93.184.216.34:22")).is_err());
    // The special ranges come first: an accept rule cannot open them.
    let refusal = policy.check(at("127.0.0.1:443")).unwrap_err();
    assert_eq!(
        refusal.to_string(),
        "127.0.0.1 is in loopback (127.0.0.0/8), which this exit does not connect to"
    );
}

#[test]
fn rules_parse_into_patterns() {
    let policy = ExitPolicy::parse(
        "ACCEPT [::1]/128:*\n\
         reject 10.0.0.0/8:1-1023\n\
         accept 192.0.2.1:443\n\
         accept *4:80\n\
         accept *6:80\n\
         accept [2001:db8::]:22\n\
         \n   # only a comment\n",
    )
    .unwrap();
    let rules = policy.rules();
    assert_eq!(rules.len(), 6);
    assert_eq!(rules[0].action, Action::Accept);
    assert_eq!(
        rules[0].address,
        AddressPattern::V6 {
            network: "::1".parse().unwrap(),
            prefix: 128
        }
    );
    assert_eq!(rules[0].ports, PortRange::ALL);
    assert_eq!(rules[1].action, Action::Reject);
    assert_eq!(
        rules[1].ports,
        PortRange {
            first: 1,
            last: 1023
        }
    );
    assert_eq!(
        rules[2].address,
        AddressPattern::V4 {
            network: "192.0.2.1".parse().unwrap(),
            prefix: 32
        }
    );
    assert_eq!(rules[3].address, AddressPattern::AnyV4);
    assert_eq!(rules[4].address, AddressPattern::AnyV6);
    assert_eq!(rules[5].to_string(), "accept [2001:db8::]/128:22");
    assert!(AddressPattern::AnyV4.contains(ip("1.2.3.4")));
    assert!(!AddressPattern::AnyV4.contains(ip("::2")));
    assert!(!AddressPattern::AnyV6.contains(ip("1.2.3.4")));
}

#[test]
fn an_empty_policy_refuses_everything() {
    let policy = ExitPolicy::parse("# nothing\n\n").unwrap();
    assert_eq!(
        policy.check(at("93.184.216.34:80")),
        Err(PolicyRefusal::NoRule(at("93.184.216.34:80")))
    );
}

#[test]
fn bad_files_name_the_line_and_how_to_write_it() {
    let cases = [
        (
            "allow *:80",
            "a rule starts with `accept` or `reject`, not `allow`",
        ),
        ("accept", "says what to do but not to what"),
        ("accept *:80 *:443", "unexpected `*:443`"),
        (
            "accept *:80, reject *:*",
            "one rule per line, without commas",
        ),
        ("accept 1.2.3.4", "has no port: write ADDRESS:PORTS"),
        ("accept [::1]/128", "has no port"),
        ("accept [::1:80", "needs a `]`"),
        ("accept 2001:db8::1:443", "write IPv6 addresses in brackets"),
        ("accept [1.2.3.4]:80", "is not an IPv6 address"),
        ("accept example.com:80", "`example.com` is not an address"),
        ("accept 1.2.3/8:80", "`1.2.3` is not an address"),
        ("accept *:0", "`0` is not a port"),
        ("accept *:65536", "`65536` is not a port"),
        ("accept *:http", "`http` is not a port"),
        ("accept *:443-80", "runs backwards; write `80-443`"),
        ("accept *:80-", "`` is not a port"),
        ("accept */8:80", "`*` takes no mask"),
        (
            "accept 10.0.0.0/33:80",
            "`/33` is not a prefix length: write a number from 0 to 32",
        ),
        ("accept [::]/129:80", "from 0 to 128"),
        (
            "accept 10.0.0.0/255.0.0.0:80",
            "write the mask as a prefix length",
        ),
        ("accept 10.0.0.1/8:80", "did you mean `10.0.0.0/8`?"),
        (
            "accept [2001:db8::1]/32:80",
            "did you mean `[2001:db8::]/32`?",
        ),
    ];
    for (line, expected) in cases {
        let text = format!("# a policy\n\naccept *:443\n{line}\n");
        let error = ExitPolicy::parse(&text).unwrap_err();
        assert_eq!(error.line, 4, "{line}");
        let message = error.to_string();
        assert!(message.starts_with("exit policy, line 4: "), "{message}");
        assert!(message.contains(expected), "{line}: {message}");
    }
    // The message the documentation shows.
    let error = ExitPolicy::parse("accept *:80\n#\naccept 2001:db8::1:443").unwrap_err();
    assert_eq!(
        error.to_string(),
        "exit policy, line 3: `2001:db8::1:443`: write IPv6 addresses in brackets, e.g. \
         `[2001:db8::]/32:443`"
    );
}

#[test]
fn edge_masks_and_ports() {
    let policy =
        ExitPolicy::parse("reject 0.0.0.0/0:1\naccept [::]/0:65535\naccept 8.8.8.8/32:53-53")
            .unwrap();
    assert!(policy.check(at("8.8.8.8:1")).is_err());
    assert!(policy.check(at("[2606:4700::1]:65535")).is_ok());
    assert!(policy.check(at("8.8.8.8:53")).is_ok());
    assert!(policy.check(at("8.8.4.4:53")).is_err());
    assert_eq!(policy.rules()[2].to_string(), "accept 8.8.8.8/32:53");
}

/// One address of every special-purpose range, and whether it is local.
const SPECIAL: &[(&str, bool)] = &[
    ("127.0.0.1", true),
    ("127.255.255.254", true),
    ("10.1.2.3", true),
    ("172.16.0.1", true),
    ("172.31.255.255", true),
    ("192.168.1.1", true),
    ("100.64.0.1", true),
    ("100.127.255.255", true),
    ("169.254.169.254", true),
    ("::1", true),
    ("fc00::1", true),
    ("fd12:3456::1", true),
    ("fe80::1", true),
    ("fec0::1", true),
    ("::ffff:127.0.0.1", true),
    ("::ffff:10.0.0.1", true),
    ("::ffff:192.168.0.1", true),
    ("0.0.0.0", false),
    ("0.1.2.3", false),
    ("192.0.0.8", false),
    ("192.0.2.1", false),
    ("198.51.100.1", false),
    ("203.0.113.1", false),
    ("192.88.99.1", false),
    ("198.18.0.1", false),
    ("198.19.255.255", false),
    ("224.0.0.1", false),
    ("239.255.255.250", false),
    ("240.0.0.1", false),
    ("255.255.255.255", false),
    ("::", false),
    ("::127.0.0.1", false),
    ("::ffff:0.0.0.0", false),
    ("::ffff:224.0.0.1", false),
    ("64:ff9b::7f00:1", false),
    ("64:ff9b:1::1", false),
    ("100::1", false),
    ("2001::1", false),
    ("2001:db8::1", false),
    ("3fff::1", false),
    ("2002:7f00:1::", false),
    ("ff02::1", false),
];

#[test]
fn the_default_policy_refuses_every_special_range() {
    let policy = ExitPolicy::default();
    for (address, local) in SPECIAL {
        let range = special_purpose(ip(address)).unwrap_or_else(|| panic!("{address}"));
        assert_eq!(range.local, *local, "{address} is {range}");
        let destination = SocketAddr::new(ip(address), 443);
        match policy.check(destination) {
            Err(PolicyRefusal::SpecialPurpose { range: refused, .. }) => {
                assert_eq!(refused, range)
            }
            other => panic!("{address}: {other:?}"),
        }
    }
}

#[test]
fn the_default_policy_accepts_public_addresses() {
    let policy = ExitPolicy::default();
    for address in [
        "1.1.1.1:443",
        "93.184.216.34:80",
        "172.32.0.1:22",
        "100.128.0.1:80",
        "192.169.0.1:80",
        "223.255.255.255:1",
        "[2606:4700::1111]:443",
        "[2a00:1450:4001::200e]:65535",
        "[::ffff:1.1.1.1]:443",
    ] {
        assert_eq!(policy.check(at(address)), Ok(()), "{address}");
        assert_eq!(special_purpose(at(address).ip()), None, "{address}");
    }
}

#[test]
fn insecure_allow_private_lets_only_local_ranges_through() {
    let policy = ExitPolicy::default().insecure_allow_private(true);
    for (address, local) in SPECIAL {
        let outcome = policy.check(SocketAddr::new(ip(address), 8080));
        assert_eq!(outcome.is_ok(), *local, "{address}: {outcome:?}");
    }
    // The rules still apply to local addresses.
    let policy = ExitPolicy::parse("reject 127.0.0.1:22\naccept 127.0.0.0/8:*\naccept [::1]:*")
        .unwrap()
        .insecure_allow_private(true);
    assert!(policy.check(at("127.0.0.1:22")).is_err());
    assert!(policy.check(at("127.0.0.1:8080")).is_ok());
    assert!(policy.check(at("[::ffff:127.0.0.1]:8080")).is_ok());
    assert!(policy.check(at("[::1]:22")).is_ok());
    assert!(
        policy.check(at("10.0.0.1:8080")).is_err(),
        "no rule accepts it"
    );
    // Off again.
    let policy = policy.insecure_allow_private(false);
    assert!(policy.check(at("127.0.0.1:8080")).is_err());
}

#[test]
fn v4_rules_match_v4_mapped_addresses() {
    let policy = ExitPolicy::parse("reject 93.184.216.0/24:*\naccept *:*").unwrap();
    assert!(policy.check(at("[::ffff:93.184.216.34]:80")).is_err());
    assert!(policy.check(at("[::ffff:93.184.217.34]:80")).is_ok());
}

#[test]
fn the_setting_defaults_to_safe() {
    let config: ExitPolicyConfig = toml::from_str("").unwrap();
    assert_eq!(config, ExitPolicyConfig::default());
    assert!(!config.insecure_allow_private);
    assert_eq!(config.file, None);
    let config: ExitPolicyConfig =
        toml::from_str("file = \"exit-policy\"\ninsecure_allow_private = true").unwrap();
    assert!(config.insecure_allow_private);
    assert!(toml::from_str::<ExitPolicyConfig>("allow_private = true").is_err());
}
