//! Feeds arbitrary bytes to the decoder in every protocol version. Besides "never panics", every
//! packet that decodes must re-encode to exactly `encoded_len` bytes and decode back to itself,
//! and any shorter prefix of that encoding must read as incomplete.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use nanomq::mqtt::{decode, encode, ProtocolVersion};

const VERSIONS: [ProtocolVersion; 3] = [
    ProtocolVersion::V31,
    ProtocolVersion::V311,
    ProtocolVersion::V5,
];

fuzz_target!(|data: &[u8]| {
    for version in VERSIONS {
        let mut buf = BytesMut::from(data);
        while let Ok(Some(packet)) = decode(&mut buf, version, u32::MAX) {
            let mut out = BytesMut::new();
            encode(&packet, version, &mut out);
            assert_eq!(out.len(), packet.encoded_len(version), "{packet:?}");

            let mut prefix = BytesMut::from(&out[..out.len() - 1]);
            assert_eq!(
                decode(&mut prefix, version, u32::MAX),
                Ok(None),
                "{packet:?}"
            );

            let mut again = out.clone();
            let decoded = decode(&mut again, version, u32::MAX);
            assert_eq!(decoded, Ok(Some(packet)), "{version:?} {:02x?}", &out[..]);
            assert!(again.is_empty());
        }
    }
});
