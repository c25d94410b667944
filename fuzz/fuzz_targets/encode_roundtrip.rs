//! The encoder: any event the hub accepts encodes to bytes that our parser (the WHATWG rules)
//! reads back as that same event (data with its line ends made LF), and nothing else.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssehub::event::{encode, Event};
use ssehub::parse::{Frame, Parser};

fuzz_target!(|input: (String, String, Option<u32>, String)| {
    let (name, data, retry, topic) = input;
    let Ok(mut event) = Event::new(data.clone()).with_topic(&topic) else {
        return;
    };
    if !name.is_empty() {
        let Ok(named) = event.with_name(&name) else {
            return;
        };
        event = named;
    }
    if let Some(ms) = retry {
        event = event.with_retry(ms.into());
    }
    let bytes = encode("0123456789ab-42", &event);
    let mut frames = Vec::new();
    Parser::new().feed(&bytes, &mut |f| frames.push(f));
    let mut want = Vec::new();
    if let Some(ms) = retry {
        want.push(Frame::Retry(ms.into()));
    }
    want.push(Frame::Event(ssehub::parse::ParsedEvent {
        event: if name.is_empty() {
            "message".into()
        } else {
            name
        },
        data: data.replace("\r\n", "\n").replace('\r', "\n"),
        id: "0123456789ab-42".into(),
    }));
    assert_eq!(frames, want);
});
