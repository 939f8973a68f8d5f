//! Entries the engine has already checked, recognised by identity.
//!
//! A backend that keeps entries in memory hands out the same `Arc<Entry>` read
//! after read (see [`MetadataBackend::get_shared`](crate::MetadataBackend::get_shared)).
//! Checking such an entry again (its parameters against its key, its signature,
//! the blake3 of its inline bytes) would find what it found the first time: an
//! `Entry` has no interior mutability, and a backend that changes one makes a new
//! allocation (`Arc::make_mut` on a shared entry) or a new `Arc` (a put).
//!
//! So the engine remembers the last checked entry of each of a fixed number of
//! slots, by address, holding a [`Weak`] to it. The `Weak` keeps the allocation
//! alive, so no other entry can appear at that address while it is remembered: an
//! equal address is the very same, unchanged entry. Only the allocations of
//! entries the backend has since dropped stay behind (the strings and bytes in
//! them are freed), one per slot at most.

use std::sync::{Arc, Mutex, Weak};

use crate::entry::Entry;

/// Slots of remembered entries, chosen by key: enough for a hot working set
/// without holding more than a few hundred KiB of dropped allocations.
const SLOTS: usize = 1024;

/// The checked-entry memo of one engine.
pub(crate) struct CheckedEntries {
    slots: Box<[Mutex<Weak<Entry>>]>,
}

impl CheckedEntries {
    pub(crate) fn new() -> Self {
        CheckedEntries {
            slots: (0..SLOTS).map(|_| Mutex::new(Weak::new())).collect(),
        }
    }

    /// Whether `entry` is the very entry last remembered in its slot.
    pub(crate) fn contains(&self, entry: &Arc<Entry>) -> bool {
        let remembered = self.slot(entry).lock().unwrap_or_else(|p| p.into_inner());
        std::ptr::eq(remembered.as_ptr(), Arc::as_ptr(entry))
    }

    /// Remembers `entry` as checked, if the backend keeps a share of it (an entry
    /// nobody else holds will never be handed out again).
    pub(crate) fn remember(&self, entry: &Arc<Entry>) {
        if Arc::strong_count(entry) > 1 {
            *self.slot(entry).lock().unwrap_or_else(|p| p.into_inner()) = Arc::downgrade(entry);
        }
    }

    fn slot(&self, entry: &Entry) -> &Mutex<Weak<Entry>> {
        let bytes = entry.key.as_bytes();
        let index = usize::from(u16::from_le_bytes([bytes[0], bytes[1]])) % SLOTS;
        &self.slots[index]
    }
}

impl std::fmt::Debug for CheckedEntries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckedEntries")
            .field("slots", &self.slots.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{Compression, ContentHash, Location};
    use crate::key::CacheKey;

    fn entry(tag: &str) -> Entry {
        Entry {
            key: CacheKey::from_bytes([7; 16]),
            prefix: String::new(),
            description: String::new(),
            type_tag: tag.to_owned(),
            codec: "raw".to_owned(),
            params: None,
            created_at: 1,
            accessed_at: 1,
            expires_at: None,
            access_count: 0,
            stored_size: 1,
            raw_size: 1,
            compression: Compression::None,
            content_hash: ContentHash::of(b"x"),
            location: Location::Inline(b"x".to_vec()),
            signature: None,
            user_metadata: Default::default(),
        }
    }

    #[test]
    fn recognises_only_the_shared_entry_it_remembered() {
        let checked = CheckedEntries::new();
        let held = Arc::new(entry("a"));
        let read = Arc::clone(&held);
        assert!(!checked.contains(&read));
        checked.remember(&read);
        assert!(checked.contains(&Arc::clone(&held)));

        // An equal entry in another allocation is not the one checked.
        assert!(!checked.contains(&Arc::new(entry("a"))));
    }

    #[test]
    fn forgets_nothing_it_should_not_trust_after_a_change() {
        let checked = CheckedEntries::new();
        let mut held = Arc::new(entry("a"));
        checked.remember(&Arc::clone(&held));
        // The backend changes its copy while only the memo's Weak points at it:
        // the change moves it to a new allocation.
        Arc::make_mut(&mut held).type_tag = "b".to_owned();
        assert!(!checked.contains(&held));
    }

    #[test]
    fn does_not_remember_entries_nobody_keeps() {
        let checked = CheckedEntries::new();
        let alone = Arc::new(entry("a"));
        checked.remember(&alone);
        assert!(!checked.contains(&alone));
    }
}
