use std::str::FromStr;

use super::*;

fn why(s: &str) -> Option<Reason> {
    classify(s.parse().unwrap()).map(|f| f.reason)
}

#[test]
fn ipv4_ranges() {
    use Reason::*;
    let cases = [
        ("0.0.0.0", Some(Unspecified)),
        ("0.1.2.3", Some(Reserved)),
        ("10.0.0.1", Some(Private)),
        ("172.16.0.1", Some(Private)),
        ("172.31.255.255", Some(Private)),
        ("172.32.0.1", None),
        ("192.168.1.1", Some(Private)),
        ("100.64.1.1", Some(SharedAddressSpace)),
        ("100.127.255.255", Some(SharedAddressSpace)),
        ("100.128.0.1", None),
        ("127.0.0.1", Some(Loopback)),
        ("127.0.0.2", Some(Loopback)),
        ("169.254.169.254", Some(CloudMetadata)),
        ("169.254.1.1", Some(LinkLocal)),
        ("192.0.0.8", Some(Reserved)),
        ("192.0.2.1", Some(Documentation)),
        ("198.51.100.7", Some(Documentation)),
        ("203.0.113.9", Some(Documentation)),
        ("198.18.0.1", Some(Benchmarking)),
        ("198.19.255.255", Some(Benchmarking)),
        ("198.20.0.1", None),
        ("224.0.0.1", Some(Multicast)),
        ("239.255.255.250", Some(Multicast)),
        ("240.0.0.1", Some(Reserved)),
        ("255.255.255.255", Some(Broadcast)),
        ("93.184.216.34", None),
        ("8.8.8.8", None),
        ("1.1.1.1", None),
    ];
    for (ip, expected) in cases {
        assert_eq!(why(ip), expected, "{ip}");
    }
}

#[test]
fn ipv6_ranges() {
    use Reason::*;
    let cases = [
        ("::", Some(Unspecified)),
        ("::1", Some(Loopback)),
        ("fd00::1", Some(UniqueLocal)),
        ("fc00::1", Some(UniqueLocal)),
        ("fd00:ec2::254", Some(UniqueLocal)),
        ("fe80::1", Some(LinkLocal)),
        ("febf::1", Some(LinkLocal)),
        ("fec0::1", Some(SiteLocal)),
        ("ff02::1", Some(Multicast)),
        ("2001:db8::1", Some(Documentation)),
        ("3fff::1", Some(Documentation)),
        ("2001:2::1", Some(Benchmarking)),
        ("100::1", Some(Reserved)),
        ("64:ff9b:1::a", Some(Reserved)),
        ("2606:2800:220:1:248:1893:25c8:1946", None),
        ("2a00:1450:4001:80b::200e", None),
    ];
    for (ip, expected) in cases {
        assert_eq!(why(ip), expected, "{ip}");
    }
}

#[test]
fn embedded_ipv4_is_judged_by_the_ipv4_address() {
    let cases = [
        (
            "::ffff:127.0.0.1",
            Embedding::Ipv4Mapped,
            "127.0.0.1",
            Reason::Loopback,
        ),
        (
            "::ffff:a9fe:a9fe",
            Embedding::Ipv4Mapped,
            "169.254.169.254",
            Reason::CloudMetadata,
        ),
        (
            "::10.0.0.1",
            Embedding::Ipv4Compatible,
            "10.0.0.1",
            Reason::Private,
        ),
        (
            "64:ff9b::a00:1",
            Embedding::Nat64,
            "10.0.0.1",
            Reason::Private,
        ),
        (
            "2002:7f00:1::",
            Embedding::SixToFour,
            "127.0.0.1",
            Reason::Loopback,
        ),
        (
            "2002:c0a8:101::1",
            Embedding::SixToFour,
            "192.168.1.1",
            Reason::Private,
        ),
        // Teredo keeps the client address inverted: !127.0.0.1 = 128.255.255.254.
        (
            "2001:0:4136:e378:8000:63bf:80ff:fffe",
            Embedding::Teredo,
            "127.0.0.1",
            Reason::Loopback,
        ),
    ];
    for (ip, form, v4, reason) in cases {
        let got = classify(ip.parse().unwrap());
        assert_eq!(
            got,
            Some(Forbidden {
                reason,
                via: Some((form, v4.parse().unwrap()))
            }),
            "{ip}"
        );
    }
    // The forms are fine when the address inside is public.
    for ip in [
        "::ffff:93.184.216.34",
        "64:ff9b::5db8:d822",
        "2002:5db8:d822::1",
    ] {
        assert_eq!(classify(ip.parse().unwrap()), None, "{ip}");
    }
}

#[test]
fn allow_list_parses_and_matches() {
    let list = AllowList::parse("127.0.0.1/32, 10.1.0.0/16,fd00::/8,192.168.5.5").unwrap();
    assert_eq!(
        list.to_string(),
        "127.0.0.1/32,10.1.0.0/16,fd00::/8,192.168.5.5/32"
    );
    let guard = SsrfGuard::new(list);
    for ok in [
        "127.0.0.1",
        "10.1.200.3",
        "fd12::1",
        "192.168.5.5",
        "::ffff:127.0.0.1",
        "93.184.216.34",
    ] {
        assert!(guard.check(ok.parse().unwrap()).is_ok(), "{ok}");
    }
    for refused in [
        "127.0.0.2",
        "10.2.0.1",
        "::1",
        "192.168.5.6",
        "169.254.169.254",
    ] {
        assert!(guard.check(refused.parse().unwrap()).is_err(), "{refused}");
    }
    assert!(AllowList::parse("").unwrap().is_empty());
    // Host bits are dropped, as the operator plainly meant the network.
    assert_eq!(
        AllowList::parse("10.1.2.3/16").unwrap().to_string(),
        "10.1.0.0/16"
    );
    for bad in [
        "10.0.0.0/33",
        "example.org",
        "10.0.0/8",
        "fd00::/129",
        "1.2.3.4/",
    ] {
        let err = AllowList::parse(&format!("127.0.0.1/32,{bad}")).unwrap_err();
        assert!(err.contains(&format!("'{bad}'")), "{err}");
    }
}

#[test]
fn literal_urls_are_checked_and_named_hosts_are_left_to_the_resolver() {
    let guard = SsrfGuard::new(AllowList::parse("127.0.0.1/32").unwrap());
    assert!(guard.check_url("http://127.0.0.1:8080/x").is_ok());
    assert!(guard.check_url("http://example.org/").is_ok());
    assert_eq!(
        guard
            .check_url("http://127.0.0.2:9/")
            .unwrap_err()
            .to_string(),
        "blocked by the SSRF guard: 127.0.0.2 is a loopback address \
         (allow it with HERALD_DELIVERY_ALLOW_NETWORKS)"
    );
    assert_eq!(
        guard.check_url("http://[::1]:9/").unwrap_err().to_string(),
        "blocked by the SSRF guard: ::1 is a loopback address \
         (allow it with HERALD_DELIVERY_ALLOW_NETWORKS)"
    );
    // The url crate reads these as IPv4 literals, as browsers do.
    for sneaky in ["http://2130706434/", "http://0x7f.0.0.2/", "http://127.2/"] {
        assert!(guard.check_url(sneaky).is_err(), "{sneaky}");
    }
    assert_eq!(
        guard
            .check_url("http://[::ffff:a9fe:a9fe]/latest/meta-data/")
            .unwrap_err()
            .to_string(),
        "blocked by the SSRF guard: ::ffff:169.254.169.254 is the IPv4-mapped \
         (::ffff:0:0/96) form of 169.254.169.254, the cloud metadata address \
         (allow it with HERALD_DELIVERY_ALLOW_NETWORKS)"
    );
}

#[test]
fn through_a_proxy_one_forbidden_address_refuses_the_name() {
    let guard = SsrfGuard::new(AllowList::parse("127.0.0.1/32").unwrap());
    let addr = |s: &str| SocketAddr::new(s.parse().unwrap(), 80);
    assert!(guard
        .vet_every("ok.example", [addr("127.0.0.1"), addr("93.184.216.34")])
        .is_ok());
    assert_eq!(
        guard
            .vet_every("mixed.example", [addr("93.184.216.34"), addr("10.0.0.1")])
            .unwrap_err()
            .to_string(),
        "blocked by the SSRF guard: mixed.example resolves to 10.0.0.1, a private address \
         (allow it with HERALD_DELIVERY_ALLOW_NETWORKS)"
    );
    assert_eq!(
        guard
            .vet_every(
                "two.example",
                [addr("93.184.216.34"), addr("10.0.0.1"), addr("::1")]
            )
            .unwrap_err()
            .to_string(),
        "blocked by the SSRF guard: two.example resolves to forbidden addresses: \
         10.0.0.1 (a private address), ::1 (a loopback address) \
         (allow them with HERALD_DELIVERY_ALLOW_NETWORKS)"
    );
    assert!(!guard.is_off());
    assert!(!SsrfGuard::new(AllowList::parse("0.0.0.0/0").unwrap()).is_off());
    assert!(SsrfGuard::new(AllowList::parse("0.0.0.0/0,::/0").unwrap()).is_off());
}

#[tokio::test]
async fn a_proxy_name_resolves_unvetted_and_other_names_are_vetted() {
    use reqwest::dns::Resolve;
    let name = || reqwest::dns::Name::from_str("localhost").unwrap();
    let guard = SsrfGuard::default();
    let plain = GuardedResolver::new(guard.clone());
    let err = match plain.resolve(name()).await {
        Ok(_) => panic!("localhost is loopback, which the guard refuses"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.starts_with("blocked by the SSRF guard: localhost"),
        "{err}"
    );
    let for_proxy = GuardedResolver::for_proxy(guard.clone(), Some("LocalHost."));
    assert!(
        for_proxy.resolve(name()).await.is_ok(),
        "the proxy's own name"
    );
    let other = GuardedResolver::for_proxy(guard, Some("proxy.internal"));
    assert!(other.resolve(name()).await.is_err(), "a receiver's name");
}

#[tokio::test]
async fn vet_target_resolves_names_and_leaves_literals_to_check_url() {
    let guard = SsrfGuard::default();
    let url = |s: &str| url::Url::parse(s).unwrap();
    let wait = std::time::Duration::from_secs(5);
    let err = guard
        .vet_target(&url("http://localhost:9/"), wait)
        .await
        .unwrap_err();
    assert!(
        err.starts_with("blocked by the SSRF guard: localhost resolves"),
        "{err}"
    );
    assert!(guard
        .vet_target(&url("http://127.0.0.1:9/"), wait)
        .await
        .is_ok());
    let off = SsrfGuard::new(AllowList::parse("0.0.0.0/0,::/0").unwrap());
    assert!(off
        .vet_target(&url("http://localhost:9/"), wait)
        .await
        .is_ok());
}

#[test]
fn resolved_addresses_are_filtered() {
    let guard = SsrfGuard::default();
    let addr = |s: &str| SocketAddr::new(s.parse().unwrap(), 0);
    let kept = guard
        .vet_resolved(
            "mixed.example",
            [addr("10.0.0.1"), addr("93.184.216.34"), addr("::1")],
        )
        .unwrap();
    assert_eq!(kept, vec![addr("93.184.216.34")]);
    let err = guard
        .vet_resolved("localhost", [addr("127.0.0.1"), addr("::1"), addr("::1")])
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "blocked by the SSRF guard: localhost resolves only to forbidden addresses: \
         127.0.0.1 (a loopback address), ::1 (a loopback address) \
         (allow them with HERALD_DELIVERY_ALLOW_NETWORKS)"
    );
    let err = guard
        .vet_resolved("meta.example", [addr("169.254.169.254")])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("meta.example resolves to 169.254.169.254, the cloud metadata address"),
        "{err}"
    );
}
