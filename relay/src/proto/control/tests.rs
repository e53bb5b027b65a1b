//! Round trips and bounds of the control codec.

use super::*;
use crate::proto::addr::PeerAddr;
use crate::proto::media::{Codec, TrackInfo};
use crate::proto::tree_msg::{MAX_CANDIDATES, MAX_PATH};
use proptest::prelude::*;

fn arb_candidate() -> impl Strategy<Value = Candidate> {
    (
        any::<[u8; 32]>(),
        "[a-z0-9.]{1,30}",
        any::<u16>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(|(id, host, port, depth, free)| Candidate {
            addr: PeerAddr {
                id: NodeId::from_bytes(id),
                host: format!("{host}:{port}").into(),
            },
            depth,
            free,
        })
}

fn arb_candidates() -> impl Strategy<Value = Vec<Candidate>> {
    proptest::collection::vec(arb_candidate(), 0..MAX_CANDIDATES)
}

fn arb_message() -> impl Strategy<Value = ControlMessage> {
    prop_oneof![
        (
            proptest::collection::vec((any::<u32>(), 0..=varint::MAX), 0..MAX_RESUME_TRACKS),
            any::<u32>(),
            proptest::option::of(any::<[u8; 32]>()),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 1..MAX_TOKEN)),
        )
            .prop_map(|(v, capacity, replaces, token)| ControlMessage::Subscribe {
                resume: v
                    .into_iter()
                    .map(|(track, next_seq)| ResumePoint { track, next_seq })
                    .collect(),
                capacity,
                replaces: replaces.map(NodeId::from_bytes),
                token: token.map(Bytes::from),
            }),
        (
            "[a-z ]{0,20}",
            0u32..8,
            1u32..4000,
            proptest::option::of(any::<[u8; 32]>())
        )
            .prop_map(|(name, id, w, sig)| {
                let c = Catalog {
                    name,
                    tracks: vec![
                        TrackInfo {
                            id,
                            name: "video".into(),
                            codec: Codec::H264 {
                                width: w,
                                height: w / 2,
                                fps_num: 30,
                                fps_den: 1,
                            },
                            bitrate: 1_500_000,
                        },
                        TrackInfo {
                            id: id + 1,
                            name: "audio".into(),
                            codec: Codec::Opus {
                                sample_rate: 48_000,
                                channels: 2,
                            },
                            bitrate: 64_000,
                        },
                    ],
                    stream: None,
                    private: sig.is_some(),
                    sealed_epoch: sig.map(|h| u64::from(h[0])),
                };
                let mut m = SignedCatalog::unsigned(c);
                m.signature = sig.map(|h| {
                    let mut s = [0u8; 64];
                    s[..32].copy_from_slice(&h);
                    s
                });
                ControlMessage::Catalog(m)
            }),
        (any::<u32>(), "\\PC{0,100}", arb_candidates()).prop_map(|(code, reason, redirect)| {
            ControlMessage::Refuse {
                code,
                reason,
                redirect,
            }
        }),
        arb_candidates().prop_map(|handover| ControlMessage::Goodbye { handover }),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 1..MAX_TOKEN)).prop_map(|t| {
            ControlMessage::Probe {
                token: t.map(Bytes::from),
            }
        }),
        Just(ControlMessage::Leaving),
        (
            any::<bool>(),
            any::<u32>(),
            any::<u32>(),
            (any::<u32>(), any::<u32>()),
            arb_candidates()
        )
            .prop_map(|(rooted, depth, free, (capacity, movable), candidates)| {
                ControlMessage::ProbeReply(ProbeInfo {
                    rooted,
                    depth,
                    free,
                    capacity,
                    movable,
                    candidates,
                })
            }),
        (
            any::<bool>(),
            proptest::collection::vec(any::<[u8; 32]>(), 0..MAX_PATH),
            arb_candidates()
        )
            .prop_map(|(rooted, path, backups)| ControlMessage::Tree(TreeInfo {
                rooted,
                path: path.into_iter().map(NodeId::from_bytes).collect(),
                backups,
            })),
        (
            any::<u32>(),
            any::<u32>(),
            proptest::collection::vec(arb_candidate(), 0..=MAX_ROOMS)
        )
            .prop_map(|(free, subtree, rooms)| ControlMessage::Status {
                free,
                subtree,
                rooms
            }),
    ]
}

proptest! {
    #[test]
    fn roundtrip_any_split(msgs in proptest::collection::vec(arb_message(), 1..5), split in any::<prop::sample::Index>()) {
        let mut wire = BytesMut::new();
        for m in &msgs { m.encode(&mut wire); }
        let cut = split.index(wire.len() + 1);
        let mut d = ControlDecoder::new(&Limits::default());
        let mut out = Vec::new();
        d.push(&wire[..cut]);
        while let Some(m) = d.next_message().unwrap() { out.push(m); }
        d.push(&wire[cut..]);
        while let Some(m) = d.next_message().unwrap() { out.push(m); }
        d.finish().unwrap();
        prop_assert_eq!(out, msgs);
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut d = ControlDecoder::new(&Limits::default());
        d.push(&bytes);
        for _ in 0..64 {
            match d.next_message() {
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => break,
            }
        }
    }
}

#[test]
fn oversize_length_is_refused_before_buffering() {
    let mut d = ControlDecoder::new(&Limits::default());
    let mut b = BytesMut::new();
    varint::put(&mut b, 1 << 40);
    d.push(&b);
    assert!(matches!(
        d.next_message(),
        Err(DecodeError::TooLarge {
            what: "control message",
            ..
        })
    ));
}

#[test]
fn unknown_type_and_truncation_are_named() {
    let mut d = ControlDecoder::new(&Limits::default());
    d.push(&[1, 0x7f]);
    assert_eq!(
        d.next_message(),
        Err(DecodeError::UnknownType {
            what: "control message",
            ty: 0x7f
        })
    );
    let mut d = ControlDecoder::new(&Limits::default());
    d.push(&[5, T_SUBSCRIBE, 1]);
    assert_eq!(d.next_message(), Ok(None));
    assert_eq!(d.finish(), Err(DecodeError::Truncated("control message")));
}

#[test]
fn refuse_reason_is_cut_on_a_char_boundary() {
    let long = "é".repeat(MAX_REASON);
    let m = ControlMessage::Refuse {
        code: 5,
        reason: long,
        redirect: vec![],
    };
    let mut d = ControlDecoder::new(&Limits::default());
    d.push(&m.to_bytes());
    match d.next_message().unwrap().unwrap() {
        ControlMessage::Refuse { reason, .. } => assert!(reason.len() <= MAX_REASON),
        other => panic!("unexpected {other:?}"),
    }
}
