//! Registry envelopes come from the network: parsing any bytes must not panic, and what it
//! accepts must hold up (events forwarded byte for byte, namespaces valid).

#![no_main]

use herald::hooks::types::NamespaceName;
use herald::registry::envelope::parse_envelope;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(events) = parse_envelope(data) else {
        return;
    };
    let text = std::str::from_utf8(data).expect("an accepted envelope is UTF-8");
    for event in events {
        assert!(
            text.contains(&event.body),
            "an event is forwarded exactly as the registry sent it"
        );
        // Well-formed JSON, checked for syntax only: JSON numbers may exceed what
        // serde_json's `Value` holds, and Herald never re-parses a body into one.
        assert!(serde_json::from_str::<&serde_json::value::RawValue>(&event.body).is_ok());
        if let Some(ns) = &event.namespace {
            assert!(NamespaceName::parse(ns.as_str()).is_ok());
        }
    }
});
