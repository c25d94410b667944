//! Hub-made event ids: `<epoch>-<seq>` (a publisher may choose its own instead; see
//! [`Event::with_id`](crate::Event::with_id)). The epoch names the history (a fresh random one per in-memory run),
//! so an id from another run is recognised as foreign instead of being misread as a current one.

use std::fmt::Write as _;

/// The name of one history. Ids carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Epoch(Box<str>);

impl Epoch {
    /// A fresh random epoch: 12 lowercase hex digits.
    ///
    /// ```
    /// use ssehub::hub::{Epoch, IdMatch};
    /// let epoch = Epoch::random();
    /// assert_eq!(Epoch::from_text(epoch.as_str()), Some(epoch.clone()));
    /// assert_eq!(epoch.parse(&epoch.id(7)), IdMatch::Current(7));
    /// assert_eq!(epoch.parse("nonsense"), IdMatch::Unknown);
    /// ```
    pub fn random() -> Epoch {
        let mut raw = [0u8; 6];
        // A failing OS random source is not worth refusing to start over: fall back to the clock.
        if getrandom::fill(&mut raw).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            raw.copy_from_slice(&nanos.to_le_bytes()[..6]);
        }
        let mut s = String::with_capacity(12);
        for b in raw {
            let _ = write!(s, "{b:02x}");
        }
        Epoch(s.into())
    }

    /// An epoch read back from a store: 12 lowercase hex digits, or `None` (example at [`Epoch::random`]).
    pub fn from_text(text: &str) -> Option<Epoch> {
        let ok = text.len() == 12
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| Epoch(text.into()))
    }

    /// The epoch as text (example at [`Epoch::random`]).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id of event `seq` in this history (example at [`Epoch::random`]).
    pub fn id(&self, seq: u64) -> String {
        format!("{}-{seq}", self.0)
    }

    /// Reads a client's last event id against this history (example at [`Epoch::random`]).
    pub fn parse(&self, id: &str) -> IdMatch {
        match id.rsplit_once('-') {
            // Only the canonical spelling counts ("+5" or "05" were never given out).
            Some((epoch, text)) if epoch == &*self.0 => match text.parse::<u64>() {
                Ok(seq) if seq.to_string() == text => IdMatch::Current(seq),
                _ => IdMatch::Unknown,
            },
            Some((epoch, seq))
                if !epoch.is_empty()
                    && epoch.bytes().all(|b| b.is_ascii_alphanumeric())
                    && seq.parse::<u64>().is_ok() =>
            {
                IdMatch::OtherHistory
            }
            _ => IdMatch::Unknown,
        }
    }
}

/// What a client's last event id means to this hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdMatch {
    /// An id of this history, naming the event with this sequence number (it may be one the hub
    /// has not given yet; the hub checks that).
    Current(u64),
    /// Well formed, but from another history (an earlier run, or another hub).
    OtherHistory,
    /// Not an id this hub could have given.
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_name_their_history() {
        let a = Epoch::random();
        let b = Epoch::random();
        assert_ne!(a, b);
        assert_eq!(a.parse(&a.id(42)), IdMatch::Current(42));
        assert_eq!(a.parse(&b.id(42)), IdMatch::OtherHistory);
        assert_eq!(a.parse("42"), IdMatch::Unknown);
        assert_eq!(a.parse(&format!("{}-x", a.as_str())), IdMatch::Unknown);
        assert_eq!(a.parse(&format!("{}-+5", a.as_str())), IdMatch::Unknown);
        assert_eq!(a.parse(""), IdMatch::Unknown);
        assert_eq!(Epoch::from_text(a.as_str()), Some(a.clone()));
        assert_eq!(Epoch::from_text("ABCDEF012345"), None);
        assert_eq!(Epoch::from_text("abc"), None);
    }
}
