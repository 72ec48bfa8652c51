//! A bound on the number of sealed segments kept memory-mapped at once.
//!
//! Each mapped segment costs three map areas (log, offset index, time index) against the
//! kernel's `vm.max_map_count` (65530 by default; Kafka's ops guide warns of "Map failed" with
//! many partitions). Sealed segments are mapped on first read and unmapped, oldest mapping
//! first, once more than `max_mapped` are live. Views already handed out keep their mapping
//! alive until dropped, so eviction never invalidates a reader.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

/// Something whose mapping can be released (a sealed segment).
pub(crate) trait Unmappable: Send + Sync {
    /// Releases the mapping if it is still the one mapped at `generation`.
    fn unmap(&self, generation: u64);
}

/// Shared budget of mapped sealed segments; one per [`crate::LogManager`] or standalone log.
pub struct MapBudget {
    max_mapped: usize,
    order: Mutex<VecDeque<(Weak<dyn Unmappable>, u64)>>,
}

impl std::fmt::Debug for MapBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapBudget")
            .field("max_mapped", &self.max_mapped)
            .finish()
    }
}

impl MapBudget {
    /// Default bound: 8192 sealed segments, i.e. about 24,600 map areas, well under the
    /// kernel's default `vm.max_map_count` of 65530 with room for active segments.
    pub const DEFAULT_MAX_MAPPED: usize = 8192;

    /// A budget allowing `max_mapped` sealed segments to stay mapped.
    pub fn new(max_mapped: usize) -> Arc<MapBudget> {
        Arc::new(MapBudget {
            max_mapped: max_mapped.max(1),
            order: Mutex::new(VecDeque::new()),
        })
    }

    /// Records that `segment` mapped its files at `generation`; evicts the oldest if over budget.
    pub(crate) fn mapped(&self, segment: Weak<dyn Unmappable>, generation: u64) {
        let evicted: Vec<_> = {
            let mut order = self.order.lock();
            order.push_back((segment, generation));
            let mut out = Vec::new();
            while order.len() > self.max_mapped {
                if let Some(e) = order.pop_front() {
                    out.push(e);
                }
            }
            out
        };
        // Unmap outside the budget lock: unmapping takes the segment's own lock.
        for (weak, generation) in evicted {
            if let Some(seg) = weak.upgrade() {
                seg.unmap(generation);
            }
        }
    }
}
