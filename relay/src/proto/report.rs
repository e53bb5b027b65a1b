//! Subtree reports: what a node tells its parent about the tree below it.
//!
//! Every node periodically sends its parent a [`SubtreeReport`]: itself, then the nodes of
//! its subtree in breadth-first order up to a detail limit, each with the totals of its own
//! subtree (node count, deepest depth, worst glass-to-glass latency, spare child slots).
//! A parent merges its children's reports under its own entry and cuts the result to the
//! same limit, so a report has a bounded size whatever the audience: the first levels in
//! detail, and below them only totals. The origin's report is therefore the live tree (all
//! of it when small, its top levels with subtree totals when large); `treecast tree` and
//! the status page show it.
//!
//! ```text
//! report = varint n (1..=MAX_REPORT_NODES) | node * n      (the reporter first)
//! node   = node_id | varint parent_index | varint len | host (UTF-8, at most MAX_REPORT_HOST)
//!          | varint depth | varint rtt_us | varint latency_us | varint children
//!          | varint capacity | totals
//! totals = varint count | varint max_depth | varint worst_latency_us | varint spare
//! ```
//!
//! The first node's parent index is 0; every other node's is smaller than its own index,
//! so a report is always a tree.

use super::control::truncate_utf8;
use std::collections::VecDeque;

use bytes::{Buf, BufMut, Bytes};

use super::error::DecodeError;
use super::id::NodeId;
use super::tree_msg::{get_id, get_u32_field, put_id};
use super::varint;

/// Most nodes a report may describe in detail (the decoder's bound).
pub const MAX_REPORT_NODES: usize = 256;
/// Nodes detailed in the report a node sends its parent (the rest is in the totals).
pub const REPORT_DETAIL: usize = 64;
/// Longest host text kept per node, in bytes.
pub const MAX_REPORT_HOST: usize = 64;

/// Aggregates over a whole subtree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Nodes in the subtree, its root included.
    pub count: u32,
    /// Depth of its deepest node (origin 0).
    pub max_depth: u32,
    /// Worst glass-to-glass latency reported in the subtree, microseconds (0: unknown).
    pub worst_latency_us: u32,
    /// Free child slots in the whole subtree.
    pub spare: u32,
}

/// One node of a report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportNode {
    /// The node.
    pub id: NodeId,
    /// Index of its parent in [`SubtreeReport::nodes`] (0 for the first node).
    pub parent: usize,
    /// Its address as its parent sees it (empty if unknown).
    pub host: String,
    /// Its depth (origin 0).
    pub depth: u32,
    /// Round-trip time to its parent, microseconds (0 for the origin or unknown).
    pub rtt_us: u32,
    /// Its recent glass-to-glass latency, microseconds (0: unknown).
    pub latency_us: u32,
    /// Its direct children.
    pub children: u32,
    /// Child slots in all.
    pub capacity: u32,
    /// Totals of its subtree.
    pub totals: Totals,
}

impl ReportNode {
    /// Free child slots of this node alone.
    pub fn free(&self) -> u32 {
        self.capacity.saturating_sub(self.children)
    }
}

/// A node's view of its subtree: itself first, then descendants breadth-first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubtreeReport {
    /// The nodes; never empty.
    pub nodes: Vec<ReportNode>,
}

impl SubtreeReport {
    /// The reporting node.
    pub fn root(&self) -> &ReportNode {
        &self.nodes[0]
    }

    /// Totals of the whole subtree.
    pub fn totals(&self) -> Totals {
        self.root().totals
    }

    /// Indices of the detailed children of node `i`.
    pub fn children_of(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        self.nodes
            .iter()
            .enumerate()
            .skip(1)
            .filter(move |(_, n)| n.parent == i)
            .map(|(j, _)| j)
    }

    /// Descendants of node `i` reached through children that are not detailed in this
    /// report (those below detailed children are counted at those children).
    pub fn hidden_below(&self, i: usize) -> u32 {
        self.children_of(i)
            .fold(self.nodes[i].totals.count.saturating_sub(1), |left, c| {
                left.saturating_sub(self.nodes[c].totals.count)
            })
    }

    /// Builds a node's report from its own entry (`me`: parent index and totals are
    /// filled in here) and its children's reports, each with the child's host as this
    /// node sees it. Keeps at most `limit` nodes (at least one), breadth-first.
    pub fn build<H: AsRef<str>>(
        mut me: ReportNode,
        children: &[(H, SubtreeReport)],
        limit: usize,
    ) -> Self {
        let limit = limit.clamp(1, MAX_REPORT_NODES);
        let mut totals = Totals {
            count: 1,
            max_depth: me.depth,
            worst_latency_us: me.latency_us,
            spare: me.free(),
        };
        for (_, r) in children {
            let t = r.totals();
            totals.count = totals.count.saturating_add(t.count);
            totals.max_depth = totals.max_depth.max(t.max_depth);
            totals.worst_latency_us = totals.worst_latency_us.max(t.worst_latency_us);
            totals.spare = totals.spare.saturating_add(t.spare);
        }
        me.parent = 0;
        me.totals = totals;
        let mut nodes = vec![me];
        // Breadth-first over all the children's reports at once: (report, index, parent).
        let kids: Vec<Vec<Vec<usize>>> = children
            .iter()
            .map(|(_, r)| {
                let mut k = vec![Vec::new(); r.nodes.len()];
                for (j, n) in r.nodes.iter().enumerate().skip(1) {
                    k[n.parent].push(j);
                }
                k
            })
            .collect();
        let mut queue: VecDeque<(usize, usize, usize)> =
            (0..children.len()).map(|r| (r, 0, 0)).collect();
        while let Some((r, i, parent)) = queue.pop_front() {
            if nodes.len() >= limit {
                break;
            }
            let (host, report) = &children[r];
            let mut n = report.nodes[i].clone();
            n.parent = parent;
            if i == 0 {
                n.host = truncate_utf8(host.as_ref(), MAX_REPORT_HOST).to_string();
            }
            let at = nodes.len();
            nodes.push(n);
            queue.extend(kids[r][i].iter().map(|&j| (r, j, at)));
        }
        SubtreeReport { nodes }
    }

    /// Appends the encoded report (without a message header).
    pub fn encode(&self, b: &mut impl BufMut) {
        let nodes = &self.nodes[..self.nodes.len().min(MAX_REPORT_NODES)];
        varint::put(b, nodes.len() as u64);
        for (i, n) in nodes.iter().enumerate() {
            put_id(b, &n.id);
            varint::put(b, if i == 0 { 0 } else { n.parent.min(i - 1) } as u64);
            let host = truncate_utf8(&n.host, MAX_REPORT_HOST);
            varint::put(b, host.len() as u64);
            b.put_slice(host.as_bytes());
            for v in [
                n.depth,
                n.rtt_us,
                n.latency_us,
                n.children,
                n.capacity,
                n.totals.count,
                n.totals.max_depth,
                n.totals.worst_latency_us,
                n.totals.spare,
            ] {
                varint::put(b, u64::from(v));
            }
        }
    }

    /// Decodes a report written by [`SubtreeReport::encode`].
    pub fn decode(b: &mut Bytes) -> Result<Self, DecodeError> {
        let n = varint::get_complete(b, "report")?;
        if n == 0 {
            return Err(DecodeError::Malformed("empty report"));
        }
        if n > MAX_REPORT_NODES as u64 {
            return Err(DecodeError::TooMany {
                what: "report nodes",
                count: n,
                max: MAX_REPORT_NODES as u64,
            });
        }
        let mut nodes = Vec::with_capacity(n as usize);
        for i in 0..n as usize {
            let id = get_id(b, "report node")?;
            let parent = varint::get_complete(b, "report parent")?;
            let valid = if i == 0 {
                parent == 0
            } else {
                parent < i as u64
            };
            if !valid {
                return Err(DecodeError::Malformed("report parent index"));
            }
            let len = varint::get_complete(b, "report host")?;
            if len > MAX_REPORT_HOST as u64 {
                return Err(DecodeError::TooLarge {
                    what: "report host",
                    len,
                    max: MAX_REPORT_HOST as u64,
                });
            }
            if (b.remaining() as u64) < len {
                return Err(DecodeError::Truncated("report host"));
            }
            let raw = b.split_to(len as usize);
            let host = std::str::from_utf8(&raw)
                .map_err(|_| DecodeError::Malformed("report host is not UTF-8"))?
                .to_string();
            let mut v = [0u32; 9];
            for x in &mut v {
                *x = get_u32_field(b, "report field")?;
            }
            nodes.push(ReportNode {
                id,
                parent: parent as usize,
                host,
                depth: v[0],
                rtt_us: v[1],
                latency_us: v[2],
                children: v[3],
                capacity: v[4],
                totals: Totals {
                    count: v[5],
                    max_depth: v[6],
                    worst_latency_us: v[7],
                    spare: v[8],
                },
            });
        }
        Ok(SubtreeReport { nodes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use proptest::prelude::*;

    fn id(n: u8) -> NodeId {
        NodeId::from_bytes([n; 32])
    }

    fn leaf(n: u8, depth: u32, cap: u32, latency_us: u32) -> ReportNode {
        ReportNode {
            id: id(n),
            parent: 0,
            host: String::new(),
            depth,
            rtt_us: 1000,
            latency_us,
            children: 0,
            capacity: cap,
            totals: Totals::default(),
        }
    }

    /// A chain a -> b -> c ... reported from its top.
    fn chain(ids: &[u8], depth: u32, limit: usize) -> SubtreeReport {
        let (first, rest) = ids.split_first().expect("ids");
        let below: Vec<(String, SubtreeReport)> = if rest.is_empty() {
            vec![]
        } else {
            vec![(format!("h{}:1", rest[0]), chain(rest, depth + 1, limit))]
        };
        let mut me = leaf(*first, depth, 2, 10_000 * (depth + 1));
        me.children = below.len() as u32;
        SubtreeReport::build(me, &below, limit)
    }

    fn arb_report() -> impl Strategy<Value = SubtreeReport> {
        proptest::collection::vec(
            (
                any::<[u8; 32]>(),
                any::<prop::sample::Index>(),
                "[a-z0-9.:]{0,64}",
                proptest::array::uniform9(any::<u32>()),
            ),
            1..40,
        )
        .prop_map(|v| SubtreeReport {
            nodes: v
                .into_iter()
                .enumerate()
                .map(|(i, (raw, p, host, f))| ReportNode {
                    id: NodeId::from_bytes(raw),
                    parent: if i == 0 { 0 } else { p.index(i) },
                    host,
                    depth: f[0],
                    rtt_us: f[1],
                    latency_us: f[2],
                    children: f[3],
                    capacity: f[4],
                    totals: Totals {
                        count: f[5],
                        max_depth: f[6],
                        worst_latency_us: f[7],
                        spare: f[8],
                    },
                })
                .collect(),
        })
    }

    proptest! {
        #[test]
        fn roundtrip(r in arb_report()) {
            let mut b = BytesMut::new();
            r.encode(&mut b);
            let mut bytes = b.freeze();
            prop_assert_eq!(SubtreeReport::decode(&mut bytes).unwrap(), r);
            prop_assert!(bytes.is_empty());
        }

        #[test]
        fn roundtrip_as_a_control_message(r in arb_report(), query in any::<bool>()) {
            use crate::proto::control::{ControlDecoder, ControlMessage};
            use crate::proto::Limits;
            let msgs = [ControlMessage::Report(r), ControlMessage::TreeQuery];
            let m = &msgs[usize::from(query)];
            let mut d = ControlDecoder::new(&Limits::default());
            d.push(&m.to_bytes());
            let back = d.next_message().unwrap();
            prop_assert_eq!(back.as_ref(), Some(m));
        }

        #[test]
        fn garbage_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = SubtreeReport::decode(&mut Bytes::from(raw));
        }
    }

    #[test]
    fn totals_add_up_and_detail_is_cut_breadth_first() {
        // Origin 0 with two chains of 10 below it.
        let a: Vec<u8> = (1..=10).collect();
        let b: Vec<u8> = (11..=20).collect();
        let kids = vec![
            ("a:1".to_string(), chain(&a, 1, REPORT_DETAIL)),
            ("b:1".to_string(), chain(&b, 1, REPORT_DETAIL)),
        ];
        let mut me = leaf(0, 0, 4, 0);
        me.children = 2;
        let r = SubtreeReport::build(me, &kids, 7);
        assert_eq!(r.nodes.len(), 7);
        let t = r.totals();
        assert_eq!(t.count, 21);
        assert_eq!(t.max_depth, 10);
        assert_eq!(t.worst_latency_us, 110_000);
        // 4 - 2 at the origin, 2 - 1 on 18 chain nodes, 2 on the two leaves.
        assert_eq!(t.spare, 2 + 18 + 4);
        // Breadth-first: both chains' first three levels.
        let depths: Vec<u32> = r.nodes.iter().map(|n| n.depth).collect();
        assert_eq!(depths, vec![0, 1, 1, 2, 2, 3, 3]);
        assert_eq!(r.nodes[1].host, "a:1");
        assert_eq!(r.children_of(0).count(), 2);
        assert_eq!(r.hidden_below(0), 0);
        assert_eq!(r.hidden_below(5), 7);
        for (i, n) in r.nodes.iter().enumerate().skip(1) {
            assert!(n.parent < i);
            assert_eq!(r.nodes[n.parent].depth + 1, n.depth);
        }
    }

    #[test]
    fn a_report_of_a_huge_subtree_stays_small() {
        // A relay with 8 children, each claiming a subtree of 12,500 (100,000 in all) and
        // detailing REPORT_DETAIL nodes.
        let kid = |n: u8| {
            let mut nodes = vec![leaf(n, 1, 8, 50_000)];
            for j in 1..REPORT_DETAIL {
                let mut x = leaf(n.wrapping_add(j as u8), 2, 8, 60_000);
                x.parent = 0;
                nodes.push(x);
            }
            nodes[0].totals = Totals {
                count: 12_500,
                max_depth: 9,
                worst_latency_us: 900_000,
                spare: 100,
            };
            (format!("10.0.0.{n}:4434"), SubtreeReport { nodes })
        };
        let kids: Vec<_> = (1..=8).map(kid).collect();
        let mut me = leaf(0, 0, 8, 0);
        me.children = 8;
        let r = SubtreeReport::build(me, &kids, REPORT_DETAIL);
        assert_eq!(r.totals().count, 100_001);
        assert_eq!(r.totals().max_depth, 9);
        let mut b = BytesMut::new();
        r.encode(&mut b);
        eprintln!("report of a 100,001-node subtree: {} bytes", b.len());
        assert!(b.len() < 8 * 1024, "report is {} bytes", b.len());
    }

    #[test]
    fn bad_parent_index_and_oversize_host_are_refused() {
        let mut r = chain(&[1, 2, 3], 0, 8);
        r.nodes[2].parent = 2;
        let mut b = BytesMut::new();
        // The encoder never writes a forward index...
        r.encode(&mut b);
        assert!(SubtreeReport::decode(&mut b.freeze()).is_ok());
        // ...and the decoder refuses one.
        let mut raw = BytesMut::new();
        varint::put(&mut raw, 2);
        for parent in [0u64, 1] {
            put_id(&mut raw, &id(1));
            varint::put(&mut raw, parent);
            varint::put(&mut raw, 0);
            for _ in 0..9 {
                varint::put(&mut raw, 0);
            }
        }
        assert_eq!(
            SubtreeReport::decode(&mut raw.freeze()),
            Err(DecodeError::Malformed("report parent index"))
        );
        let mut raw = BytesMut::new();
        varint::put(&mut raw, 1);
        put_id(&mut raw, &id(1));
        varint::put(&mut raw, 0);
        varint::put(&mut raw, 65);
        assert!(matches!(
            SubtreeReport::decode(&mut raw.freeze()),
            Err(DecodeError::TooLarge { .. })
        ));
    }
}
