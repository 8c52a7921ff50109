//! Wire primitives (spec 1.5): a bounds-checked reader over a frozen packet, and a [`Sink`] that
//! either writes bytes or only adds up their length, so every encoder also serves as its own
//! `encoded_len` and the two can never disagree.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::DecodeError;

/// Largest value a variable byte integer can hold (four bytes of seven bits).
pub(crate) const VARINT_MAX: usize = 268_435_455;

const TRUNCATED: DecodeError = DecodeError::Malformed("field runs past the end of the packet");

/// Cursor over one packet's bytes. Every read checks what is left first, so a lying length
/// becomes [`DecodeError::Malformed`] instead of a panic, and binary fields are zero-copy slices.
#[derive(Debug)]
pub(crate) struct Reader {
    buf: Bytes,
}

impl Reader {
    pub(crate) fn new(buf: Bytes) -> Self {
        Reader { buf }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.remaining()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        self.need(1)?;
        Ok(self.buf.get_u8())
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        self.need(2)?;
        Ok(self.buf.get_u16())
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        self.need(4)?;
        Ok(self.buf.get_u32())
    }

    /// Variable byte integer (spec 1.5.5): at most four bytes.
    pub(crate) fn varint(&mut self) -> Result<u32, DecodeError> {
        let mut value = 0u32;
        for shift in [0, 7, 14, 21] {
            let byte = self.u8()?;
            value |= u32::from(byte & 0x7F) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::Malformed(
            "variable byte integer longer than 4 bytes",
        ))
    }

    /// The next `len` bytes, sharing the packet's buffer.
    pub(crate) fn bytes(&mut self, len: usize) -> Result<Bytes, DecodeError> {
        self.need(len)?;
        Ok(self.buf.split_to(len))
    }

    /// A sub-reader over the next `len` bytes, for length-prefixed sections such as properties.
    pub(crate) fn section(&mut self, len: usize) -> Result<Reader, DecodeError> {
        if len > self.remaining() {
            return Err(DecodeError::Malformed("length prefix overruns the packet"));
        }
        Ok(Reader::new(self.buf.split_to(len)))
    }

    /// Binary data (spec 1.5.6): two-byte length, then the bytes.
    pub(crate) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.u16()?;
        self.bytes(usize::from(len))
    }

    /// UTF-8 string (spec 1.5.4): well-formed UTF-8 without U+0000, or the packet is malformed.
    pub(crate) fn string(&mut self) -> Result<String, DecodeError> {
        let raw = self.binary()?;
        let text = std::str::from_utf8(&raw)
            .map_err(|_| DecodeError::Malformed("string is not valid UTF-8"))?;
        if text.contains('\0') {
            return Err(DecodeError::Malformed("string contains U+0000"));
        }
        Ok(text.to_owned())
    }

    /// Everything left, e.g. a PUBLISH payload, without copying.
    pub(crate) fn rest(&mut self) -> Bytes {
        self.buf.split_to(self.buf.len())
    }

    /// Ends a parse: bytes left over mean the remaining length and the content disagree.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Malformed(
                "trailing bytes after the packet's last field",
            ))
        }
    }

    fn need(&self, len: usize) -> Result<(), DecodeError> {
        if self.remaining() < len {
            Err(TRUNCATED)
        } else {
            Ok(())
        }
    }
}

/// Bytes a variable byte integer takes. Values above [`VARINT_MAX`] take five bytes, which no
/// peer accepts; callers that may build such packets check `encoded_len` first.
pub(crate) fn varint_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        2_097_152..=VARINT_MAX => 4,
        _ => 5,
    }
}

/// Longest prefix of `s` that fits a two-byte length and ends on a character boundary.
fn clamp_str(s: &str) -> &str {
    let mut end = s.len().min(usize::from(u16::MAX));
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Bytes [`Sink::put_string`] writes for `s`, length prefix included.
pub(crate) fn string_len(s: &str) -> usize {
    2 + clamp_str(s).len()
}

/// Where encoders put bytes: a real buffer, or a [`Counter`] that only measures.
///
/// Strings and binary fields longer than 65,535 bytes cannot be represented; they are cut to the
/// limit (strings on a character boundary). Nothing decoded from the wire is ever that long.
pub(crate) trait Sink {
    fn put_u8(&mut self, v: u8);
    fn put_u16(&mut self, v: u16);
    fn put_u32(&mut self, v: u32);
    fn put_slice(&mut self, v: &[u8]);

    /// Hint that `additional` bytes follow; only a real buffer acts on it.
    fn reserve(&mut self, additional: usize) {
        let _ = additional;
    }

    /// Variable byte integer, shortest form.
    fn put_varint(&mut self, value: usize) {
        let mut value = value;
        loop {
            // Truncation is intended: the low seven bits are the digit being written.
            let digit = (value & 0x7F) as u8;
            value >>= 7;
            if value == 0 {
                self.put_u8(digit);
                return;
            }
            self.put_u8(digit | 0x80);
        }
    }

    /// Binary data with its two-byte length.
    fn put_binary(&mut self, v: &[u8]) {
        let v = &v[..v.len().min(usize::from(u16::MAX))];
        // The slice was just cut to u16::MAX, so the length fits.
        self.put_u16(v.len() as u16);
        self.put_slice(v);
    }

    /// UTF-8 string with its two-byte length.
    fn put_string(&mut self, s: &str) {
        self.put_binary(clamp_str(s).as_bytes());
    }
}

impl Sink for BytesMut {
    fn put_u8(&mut self, v: u8) {
        BufMut::put_u8(self, v);
    }

    fn put_u16(&mut self, v: u16) {
        BufMut::put_u16(self, v);
    }

    fn put_u32(&mut self, v: u32) {
        BufMut::put_u32(self, v);
    }

    fn put_slice(&mut self, v: &[u8]) {
        BufMut::put_slice(self, v);
    }

    fn reserve(&mut self, additional: usize) {
        BytesMut::reserve(self, additional);
    }
}

/// A [`Sink`] that adds up lengths without writing or allocating anything.
#[derive(Debug, Default)]
pub(crate) struct Counter(pub(crate) usize);

impl Sink for Counter {
    fn put_u8(&mut self, _: u8) {
        self.0 += 1;
    }

    fn put_u16(&mut self, _: u16) {
        self.0 += 2;
    }

    fn put_u32(&mut self, _: u32) {
        self.0 += 4;
    }

    fn put_slice(&mut self, v: &[u8]) {
        self.0 += v.len();
    }

    fn put_varint(&mut self, value: usize) {
        self.0 += varint_len(value);
    }
}

/// PUBLISH and will topics name one topic: wildcards are not allowed (spec 4.7.1).
pub(crate) fn check_topic_name(topic: &str) -> Result<(), DecodeError> {
    if topic.contains(['+', '#']) {
        Err(DecodeError::TopicNameInvalid)
    } else {
        Ok(())
    }
}

/// A packet identifier where one is required; zero is not a valid identifier (spec 2.2.1).
pub(crate) fn packet_id(r: &mut Reader) -> Result<u16, DecodeError> {
    match r.u16()? {
        0 => Err(DecodeError::Protocol("packet identifier 0")),
        id => Ok(id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint_bytes(v: usize) -> BytesMut {
        let mut out = BytesMut::new();
        Sink::put_varint(&mut out, v);
        out
    }

    #[test]
    fn varint_round_trips_at_every_width_boundary() {
        for v in [
            0, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, VARINT_MAX,
        ] {
            let bytes = varint_bytes(v);
            assert_eq!(bytes.len(), varint_len(v), "{v}");
            let mut counter = Counter::default();
            counter.put_varint(v);
            assert_eq!(counter.0, bytes.len());
            let mut r = Reader::new(bytes.freeze());
            assert_eq!(r.varint(), Ok(v as u32));
            assert!(r.is_empty());
        }
        assert_eq!(&varint_bytes(321)[..], &[0xC1, 0x02]);
    }

    #[test]
    fn varint_with_five_bytes_is_malformed() {
        let mut r = Reader::new(Bytes::from_static(&[0xFF, 0xFF, 0xFF, 0xFF, 0x7F]));
        assert!(matches!(r.varint(), Err(DecodeError::Malformed(_))));
        let mut r = Reader::new(Bytes::from_static(&[0xFF, 0xFF]));
        assert!(matches!(r.varint(), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn reads_past_the_end_are_malformed() {
        let mut r = Reader::new(Bytes::from_static(&[0x00, 0x05, b'a']));
        assert!(matches!(r.string(), Err(DecodeError::Malformed(_))));
        let mut r = Reader::new(Bytes::from_static(&[0x01]));
        assert!(matches!(r.u16(), Err(DecodeError::Malformed(_))));
        let mut r = Reader::new(Bytes::from_static(&[0x01, 0x02, 0x03]));
        assert!(matches!(r.u32(), Err(DecodeError::Malformed(_))));
        assert!(matches!(r.section(4), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn strings_must_be_utf8_without_nul() {
        let mut r = Reader::new(Bytes::from_static(&[0x00, 0x02, 0xC3, 0x28]));
        assert_eq!(
            r.string(),
            Err(DecodeError::Malformed("string is not valid UTF-8"))
        );
        let mut r = Reader::new(Bytes::from_static(&[0x00, 0x03, b'a', 0x00, b'b']));
        assert_eq!(
            r.string(),
            Err(DecodeError::Malformed("string contains U+0000"))
        );
        let mut r = Reader::new(Bytes::from_static(&[0x00, 0x03, 0xE2, 0x82, 0xAC]));
        assert_eq!(r.string().as_deref(), Ok("€"));
    }

    #[test]
    fn overlong_strings_are_cut_on_a_char_boundary() {
        let long = "é".repeat(40_000);
        let mut out = BytesMut::new();
        out.put_string(&long);
        let mut r = Reader::new(out.freeze());
        let s = r.string().expect("valid");
        assert_eq!(s.len(), 65_534);
        assert!(r.is_empty());
    }
}
