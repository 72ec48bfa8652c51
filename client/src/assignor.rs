//! Partition assignors of the classic consumer protocol. They run on the group leader, in
//! the client, as Kafka designed it; these produce what the Java client's `range` and
//! `cooperative-sticky` assignors would, so members of different client libraries can share
//! a group.

use std::collections::{BTreeMap, BTreeSet};

/// A topic-partition.
pub type TopicPartition = (String, i32);

/// One member's subscription, as the leader sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberSubscription {
    /// Member id.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub group_instance_id: Option<String>,
    /// Subscribed topics.
    pub topics: Vec<String>,
    /// Partitions the member owns now (cooperative protocol).
    pub owned: Vec<TopicPartition>,
}

/// Assignment strategies (`partition.assignment.strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignor {
    /// Contiguous ranges of each topic's partitions per member (eager rebalancing).
    Range,
    /// Balanced, keeps partitions where they are, and revokes before moving (KIP-429).
    CooperativeSticky,
}

impl Assignor {
    /// The protocol name in JoinGroup.
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::CooperativeSticky => "cooperative-sticky",
        }
    }

    /// Parses a protocol name.
    pub fn from_name(name: &str) -> Option<Assignor> {
        match name {
            "range" => Some(Assignor::Range),
            "cooperative-sticky" => Some(Assignor::CooperativeSticky),
            _ => None,
        }
    }

    /// Whether members keep their partitions across a rebalance until told to give them up.
    pub fn is_cooperative(self) -> bool {
        matches!(self, Assignor::CooperativeSticky)
    }

    /// Assigns the partitions of `partition_counts` (topic -> partition count) to `members`.
    pub fn assign(
        self,
        members: &[MemberSubscription],
        partition_counts: &BTreeMap<String, i32>,
    ) -> BTreeMap<String, Vec<TopicPartition>> {
        match self {
            Assignor::Range => range(members, partition_counts),
            Assignor::CooperativeSticky => cooperative_sticky(members, partition_counts),
        }
    }
}

/// Java's member order: static members by instance id first, then by member id.
fn sorted(members: &[MemberSubscription]) -> Vec<&MemberSubscription> {
    let mut v: Vec<&MemberSubscription> = members.iter().collect();
    v.sort_by(|a, b| {
        let key = |m: &MemberSubscription| {
            (
                m.group_instance_id.is_none(),
                m.group_instance_id.clone(),
                m.member_id.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    v
}

fn range(
    members: &[MemberSubscription],
    counts: &BTreeMap<String, i32>,
) -> BTreeMap<String, Vec<TopicPartition>> {
    let mut out: BTreeMap<String, Vec<TopicPartition>> = members
        .iter()
        .map(|m| (m.member_id.clone(), Vec::new()))
        .collect();
    for (topic, &n) in counts {
        let subscribers: Vec<&MemberSubscription> = sorted(members)
            .into_iter()
            .filter(|m| m.topics.contains(topic))
            .collect();
        if subscribers.is_empty() {
            continue;
        }
        let per = n / subscribers.len() as i32;
        let extra = n % subscribers.len() as i32;
        let mut next = 0;
        for (i, m) in subscribers.iter().enumerate() {
            let take = per + i32::from((i as i32) < extra);
            let list = out
                .get_mut(&m.member_id)
                .expect("every member has an entry");
            list.extend((next..next + take).map(|p| (topic.clone(), p)));
            next += take;
        }
    }
    out
}

fn cooperative_sticky(
    members: &[MemberSubscription],
    counts: &BTreeMap<String, i32>,
) -> BTreeMap<String, Vec<TopicPartition>> {
    let members = sorted(members);
    let all: BTreeSet<TopicPartition> = counts
        .iter()
        .filter(|(t, _)| members.iter().any(|m| m.topics.contains(t)))
        .flat_map(|(t, &n)| (0..n).map(move |p| (t.clone(), p)))
        .collect();
    let mut out: BTreeMap<String, Vec<TopicPartition>> = members
        .iter()
        .map(|m| (m.member_id.clone(), Vec::new()))
        .collect();
    if members.is_empty() {
        return out;
    }
    let floor = all.len() / members.len();
    let mut ceil_slots = all.len() % members.len();
    let mut taken: BTreeSet<TopicPartition> = BTreeSet::new();
    // Keep what members own, up to their fair share.
    for m in &members {
        let keep: Vec<TopicPartition> = m
            .owned
            .iter()
            .filter(|tp| all.contains(*tp) && m.topics.contains(&tp.0) && !taken.contains(*tp))
            .cloned()
            .collect();
        let mut quota = floor;
        if keep.len() > floor && ceil_slots > 0 {
            quota += 1;
            ceil_slots -= 1;
        }
        let list = out.get_mut(&m.member_id).expect("entry");
        for tp in keep.into_iter().take(quota) {
            taken.insert(tp.clone());
            list.push(tp);
        }
    }
    // Hand out the rest, each to the least loaded member subscribed to its topic.
    for tp in all.iter().filter(|tp| !taken.contains(*tp)) {
        let target = members
            .iter()
            .filter(|m| m.topics.contains(&tp.0))
            .min_by_key(|m| out[&m.member_id].len())
            .expect("only subscribed topics are in `all`");
        out.get_mut(&target.member_id)
            .expect("entry")
            .push(tp.clone());
    }
    // KIP-429: a partition moving between members is withheld this round; its owner revokes
    // it and rejoins, and the next round hands it over.
    let owner: BTreeMap<&TopicPartition, &str> = members
        .iter()
        .flat_map(|m| m.owned.iter().map(move |tp| (tp, m.member_id.as_str())))
        .collect();
    for (member, list) in out.iter_mut() {
        list.retain(|tp| owner.get(tp).is_none_or(|o| *o == member));
        list.sort();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, topics: &[&str], owned: &[(&str, i32)]) -> MemberSubscription {
        MemberSubscription {
            member_id: id.into(),
            group_instance_id: None,
            topics: topics.iter().map(|t| t.to_string()).collect(),
            owned: owned.iter().map(|(t, p)| (t.to_string(), *p)).collect(),
        }
    }

    fn counts(c: &[(&str, i32)]) -> BTreeMap<String, i32> {
        c.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    #[test]
    fn range_gives_contiguous_ranges_with_the_remainder_first() {
        let m = [member("b", &["t"], &[]), member("a", &["t"], &[])];
        let a = Assignor::Range.assign(&m, &counts(&[("t", 5)]));
        assert_eq!(
            a["a"],
            vec![("t".into(), 0), ("t".into(), 1), ("t".into(), 2)]
        );
        assert_eq!(a["b"], vec![("t".into(), 3), ("t".into(), 4)]);
    }

    #[test]
    fn sticky_balances_a_fresh_group() {
        let m = [
            member("a", &["t"], &[]),
            member("b", &["t"], &[]),
            member("c", &["t"], &[]),
        ];
        let a = Assignor::CooperativeSticky.assign(&m, &counts(&[("t", 7)]));
        let sizes: Vec<usize> = a.values().map(Vec::len).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 7);
        assert!(sizes.iter().all(|s| (2..=3).contains(s)), "{sizes:?}");
    }

    #[test]
    fn sticky_keeps_owned_partitions_and_withholds_moving_ones() {
        // a owned everything; b joins. b may only get partitions after a revokes them.
        let owned: Vec<(&str, i32)> = (0..4).map(|p| ("t", p)).collect();
        let m = [member("a", &["t"], &owned), member("b", &["t"], &[])];
        let first = Assignor::CooperativeSticky.assign(&m, &counts(&[("t", 4)]));
        assert_eq!(first["a"].len(), 2, "a keeps its fair share");
        assert!(first["b"].is_empty(), "nothing moves while a still owns it");
        // Second round: a owns only what it kept.
        let m = [
            member(
                "a",
                &["t"],
                &first["a"]
                    .iter()
                    .map(|(t, p)| (t.as_str(), *p))
                    .collect::<Vec<_>>(),
            ),
            member("b", &["t"], &[]),
        ];
        let second = Assignor::CooperativeSticky.assign(&m, &counts(&[("t", 4)]));
        assert_eq!(second["a"], first["a"]);
        assert_eq!(second["b"].len(), 2);
    }

    #[test]
    fn members_only_get_topics_they_subscribe_to() {
        let m = [member("a", &["x"], &[]), member("b", &["y"], &[])];
        for assignor in [Assignor::Range, Assignor::CooperativeSticky] {
            let a = assignor.assign(&m, &counts(&[("x", 2), ("y", 3)]));
            assert!(a["a"].iter().all(|(t, _)| t == "x"));
            assert_eq!(a["b"].len(), 3);
        }
    }
}
