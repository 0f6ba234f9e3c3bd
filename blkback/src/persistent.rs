//! Persistently mapped grants (`feature-persistent`).
//!
//! A frontend that negotiated `feature-persistent` reuses a bounded set of
//! grants for all its data pages. The backend maps each page once, keeps it
//! mapped and copies data through the mapping, saving a grant operation per
//! segment. The table is bounded ([`crate::Config::max_persistent_grants`]);
//! when it is full, the least recently used eighth of the entries is
//! unmapped, as blkif.h's note 7 recommends (an LRU paired with the
//! frontend's LIFO reuse keeps the hot set mapped).
//!
//! A segment whose gref is not (or no longer) in the table is served by grant
//! copy instead, so purging never fails a request.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use xenbus::platform::GrantRef;

struct Entry<M> {
    mapping: M,
    last_used: u64,
}

/// A bounded gref -> mapping table with least-recently-used eviction.
pub(crate) struct PersistentGrants<M> {
    entries: BTreeMap<GrantRef, Entry<M>>,
    capacity: usize,
    clock: u64,
}

impl<M> PersistentGrants<M> {
    /// An empty table holding at most `capacity` mappings.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: BTreeMap::new(),
            capacity,
            clock: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The mapping of `gref`, marking it used.
    pub(crate) fn get(&mut self, gref: GrantRef) -> Option<&M> {
        self.clock += 1;
        let clock = self.clock;
        self.entries.get_mut(&gref).map(|entry| {
            entry.last_used = clock;
            &entry.mapping
        })
    }

    /// Whether `gref` is mapped.
    pub(crate) fn contains(&self, gref: GrantRef) -> bool {
        self.entries.contains_key(&gref)
    }

    /// Whether a new mapping can be inserted without evicting.
    pub(crate) fn has_room(&self) -> bool {
        self.entries.len() < self.capacity
    }

    /// Removes the least recently used eighth of the entries (at least one)
    /// and returns their mappings, for the caller to unmap.
    pub(crate) fn evict_least_recently_used(&mut self) -> Vec<M> {
        let count = (self.entries.len() / 8).max(1).min(self.entries.len());
        let mut ages: Vec<(u64, GrantRef)> = self
            .entries
            .iter()
            .map(|(&gref, entry)| (entry.last_used, gref))
            .collect();
        // Only the `count` oldest are needed, not a full sort.
        if count < ages.len() {
            ages.select_nth_unstable(count);
        }
        ages.truncate(count);
        ages.into_iter()
            .filter_map(|(_, gref)| self.entries.remove(&gref).map(|entry| entry.mapping))
            .collect()
    }

    /// Inserts a mapping; the caller made room first. Returns the mapping if
    /// the table is still full or `gref` is already present.
    pub(crate) fn insert(&mut self, gref: GrantRef, mapping: M) -> Result<(), M> {
        if !self.has_room() || self.entries.contains_key(&gref) {
            return Err(mapping);
        }
        self.clock += 1;
        self.entries.insert(
            gref,
            Entry {
                mapping,
                last_used: self.clock,
            },
        );
        Ok(())
    }

    /// Empties the table, returning every mapping for unmapping.
    pub(crate) fn drain(&mut self) -> Vec<M> {
        core::mem::take(&mut self.entries)
            .into_values()
            .map(|entry| entry.mapping)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eviction_takes_the_least_recently_used() {
        let mut table = PersistentGrants::new(16);
        for gref in 0..16u32 {
            table.insert(gref, gref * 10).unwrap();
        }
        assert!(!table.has_room());
        assert_eq!(table.insert(99, 990), Err(990));
        // Touch 0 and 1 so that 2 and 3 become the oldest.
        assert_eq!(table.get(0), Some(&0));
        assert_eq!(table.get(1), Some(&10));
        let mut evicted = table.evict_least_recently_used();
        evicted.sort_unstable();
        assert_eq!(evicted, [20, 30]);
        assert!(table.get(0).is_some() && table.get(2).is_none());
        table.insert(99, 990).unwrap();
        assert_eq!(table.len(), 15);
        assert_eq!(table.drain().len(), 15);
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn a_tiny_table_still_evicts_one() {
        let mut table = PersistentGrants::new(1);
        table.insert(1, 'a').unwrap();
        assert_eq!(table.evict_least_recently_used(), ['a']);
        assert!(table.has_room());
    }
}
