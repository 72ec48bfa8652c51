//! Where a new partition's replicas go: spread over brokers so that leaderships and
//! followers balance, and over racks (`broker.rack`) so that losing a rack loses no partition.

use std::collections::{BTreeMap, BTreeSet};

/// Replicas for `partitions` new partitions of `replication_factor` each, over `brokers`
/// (id and rack). `start` rotates the first leader, as Kafka's random start index does.
/// Needs `1 <= replication_factor <= brokers.len()`.
///
/// Followers are chosen with Kafka's shifting scheme (the follower offset grows each time
/// the leader wraps around the broker list), and while a rack has no replica yet, a broker
/// on a used rack is passed over.
pub fn place_replicas(
    brokers: &[(i32, Option<&str>)],
    partitions: usize,
    replication_factor: usize,
    start: usize,
) -> Vec<Vec<i32>> {
    assert!(
        (1..=brokers.len()).contains(&replication_factor),
        "replication factor {replication_factor} with {} brokers",
        brokers.len()
    );
    let list = rack_alternated(brokers);
    let n = list.len();
    let racks: BTreeSet<Option<&str>> = list.iter().map(|(_, r)| *r).collect();
    let mut shift = if n > 1 { (start / n) % (n - 1) } else { 0 };
    let mut out = Vec::with_capacity(partitions);
    for p in 0..partitions {
        let index = start + p;
        if p > 0 && index.is_multiple_of(n) {
            shift += 1;
        }
        let first = index % n;
        let mut replicas = vec![list[first].0];
        let mut used_racks: BTreeSet<Option<&str>> = [list[first].1].into();
        let mut k = 0;
        while replicas.len() < replication_factor {
            let candidate = (first + 1 + (shift + k) % (n - 1)) % n;
            // After one pass over the other brokers, racks are allowed to repeat.
            let first_pass = k < n - 1;
            k += 1;
            let (id, rack) = list[candidate];
            if replicas.contains(&id)
                || (first_pass && used_racks.len() < racks.len() && used_racks.contains(&rack))
            {
                continue;
            }
            replicas.push(id);
            used_racks.insert(rack);
        }
        out.push(replicas);
    }
    out
}

/// Brokers ordered by id, interleaved by rack (rack A's first, rack B's first, ..., rack A's
/// second, ...), so that consecutive brokers sit on different racks.
fn rack_alternated<'a>(brokers: &[(i32, Option<&'a str>)]) -> Vec<(i32, Option<&'a str>)> {
    let mut by_rack: BTreeMap<Option<&str>, Vec<i32>> = BTreeMap::new();
    for (id, rack) in brokers {
        by_rack.entry(*rack).or_default().push(*id);
    }
    for ids in by_rack.values_mut() {
        ids.sort_unstable();
    }
    if by_rack.len() == 1 {
        let (rack, ids) = by_rack.into_iter().next().expect("one rack");
        return ids.into_iter().map(|id| (id, rack)).collect();
    }
    let mut out = Vec::with_capacity(brokers.len());
    let mut round = 0;
    while out.len() < brokers.len() {
        for (rack, ids) in &by_rack {
            if let Some(id) = ids.get(round) {
                out.push((*id, *rack));
            }
        }
        round += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brokers(n: i32) -> Vec<(i32, Option<&'static str>)> {
        (1..=n).map(|id| (id, None)).collect()
    }

    #[test]
    fn replicas_are_distinct_and_leaders_balance() {
        for start in 0..7 {
            let plan = place_replicas(&brokers(5), 20, 3, start);
            let mut leaders = BTreeMap::new();
            let mut all = BTreeMap::new();
            for r in &plan {
                assert_eq!(r.iter().collect::<BTreeSet<_>>().len(), 3, "{r:?}");
                *leaders.entry(r[0]).or_insert(0) += 1;
                for id in r {
                    *all.entry(*id).or_insert(0) += 1;
                }
            }
            assert!(leaders.values().all(|c| *c == 4), "{leaders:?}");
            assert!(all.values().all(|c| *c == 12), "{all:?}");
        }
    }

    #[test]
    fn replicas_spread_over_racks() {
        let b = [
            (1, Some("a")),
            (2, Some("a")),
            (3, Some("b")),
            (4, Some("b")),
            (5, Some("c")),
            (6, Some("c")),
        ];
        let rack = |id: i32| b.iter().find(|x| x.0 == id).unwrap().1;
        for start in 0..6 {
            for r in place_replicas(&b, 12, 3, start) {
                let racks: BTreeSet<_> = r.iter().map(|id| rack(*id)).collect();
                assert_eq!(racks.len(), 3, "{r:?}");
            }
            // More replicas than racks: every rack still holds one.
            for r in place_replicas(&b, 12, 4, start) {
                let racks: BTreeSet<_> = r.iter().map(|id| rack(*id)).collect();
                assert_eq!((racks.len(), r.len()), (3, 4), "{r:?}");
            }
        }
    }

    #[test]
    fn a_single_broker_holds_everything() {
        assert_eq!(place_replicas(&brokers(1), 3, 1, 9), vec![vec![1]; 3]);
        assert_eq!(place_replicas(&brokers(3), 1, 3, 0)[0].len(), 3);
    }
}
