//! The event-stream parser: any bytes, split anywhere, give the same frames as in one piece,
//! and never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssehub::parse::{Frame, Parser};

fuzz_target!(|input: (u16, &[u8])| {
    let (cut, bytes) = input;
    let whole = {
        let mut p = Parser::new();
        let mut v: Vec<Frame> = Vec::new();
        p.feed(bytes, &mut |f| v.push(f));
        v
    };
    let cut = cut as usize % (bytes.len() + 1);
    let mut p = Parser::new();
    let mut split: Vec<Frame> = Vec::new();
    p.feed(&bytes[..cut], &mut |f| split.push(f));
    p.feed(&bytes[cut..], &mut |f| split.push(f));
    assert_eq!(whole, split);
});
