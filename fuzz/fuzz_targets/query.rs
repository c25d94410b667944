//! Query strings on both routes: decoded strictly or refused in one line, never a panic, and a
//! subscription's topics are always valid.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssehub::event::Topic;
use ssehub::http::{query::parse_query, subscribe_request_from};

fuzz_target!(|input: (&str, Option<&[u8]>)| {
    let (query, last_event_id) = input;
    let _ = parse_query(query);
    match subscribe_request_from(query, last_event_id) {
        Ok(request) => {
            assert!(!request.topic_list().is_empty());
            for t in request.topic_list() {
                assert!(Topic::new(t.as_str()).is_ok());
            }
        }
        Err(reason) => assert!(!reason.contains('\n')),
    }
});
