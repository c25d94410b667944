//! Locks that ignore poisoning: every critical section of the log and its rings leaves the data
//! consistent at each step that can panic (none should), and refusing all later publishes would
//! be worse.

macro_rules! lock {
    ($e:expr) => {
        $e.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    };
}
macro_rules! read {
    ($e:expr) => {
        $e.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    };
}
macro_rules! write {
    ($e:expr) => {
        $e.write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
}

pub(super) use {lock, read, write};
