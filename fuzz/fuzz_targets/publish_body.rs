//! Publish bodies, raw and JSON, with any query string: a clear refusal or events that all
//! encode to exactly as many frames, and never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssehub::event::encode;
use ssehub::http::publish_request_events;
use ssehub::parse::{Frame, Parser};

fuzz_target!(|input: (bool, &str, &[u8])| {
    let (json, query, body) = input;
    match publish_request_events(query, json, body) {
        Ok(events) => {
            for event in events {
                let mut frames = 0;
                Parser::new().feed(&encode("e-1", &event), &mut |f| {
                    frames += matches!(f, Frame::Event(_)) as usize
                });
                assert_eq!(frames, 1, "one event, one frame: no forged frames");
            }
        }
        Err(reason) => assert!(!reason.contains('\n'), "one-line reasons: {reason:?}"),
    }
});
