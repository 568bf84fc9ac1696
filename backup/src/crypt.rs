//! Optional encryption of a backup's objects: ChaCha20-Poly1305 in the
//! STREAM construction (64 KiB segments, each authenticated, the last one
//! marked), so a stream is encrypted and checked with constant memory and
//! truncation, reordering or any changed byte is detected.
//!
//! Layout: `FMBKENC1` (8 bytes), a random 7-byte nonce prefix, then the
//! segments (64 KiB of plaintext + a 16-byte tag each; the last may be
//! shorter).

use bytes::{Bytes, BytesMut};
use rand::RngCore;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, Tag, UnboundKey};
use std::io::{self, Read};

const MAGIC: &[u8; 8] = b"FMBKENC1";
const PREFIX: usize = 7;
const SEGMENT: usize = 64 * 1024;
const TAG: usize = 16;

/// A 256-bit key, hex-encoded where it travels.
#[derive(Clone, PartialEq, Eq)]
pub struct BackupKey([u8; 32]);

impl std::fmt::Debug for BackupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BackupKey(***)")
    }
}

impl BackupKey {
    /// From 64 hex digits.
    pub fn from_hex(s: &str) -> crate::Result<Self> {
        let v = hex::decode(s.trim()).map_err(|_| crate::err("the backup key is not hex"))?;
        let k: [u8; 32] = v
            .try_into()
            .map_err(|_| crate::err("the backup key must be 32 bytes"))?;
        Ok(BackupKey(k))
    }

    fn cipher(&self) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &self.0).expect("a 32-byte key"))
    }
}

/// The STREAM construction's segment sequence (big-endian 32-bit counter):
/// nonce = prefix (7 bytes) || counter (4 bytes, BE) || last flag (1 byte).
struct Stream {
    key: LessSafeKey,
    prefix: [u8; PREFIX],
    counter: u32,
    done: bool,
}

impl Stream {
    fn new(key: &BackupKey, prefix: [u8; PREFIX]) -> Self {
        Stream {
            key: key.cipher(),
            prefix,
            counter: 0,
            done: false,
        }
    }

    fn nonce(&mut self, last: bool) -> io::Result<Nonce> {
        if self.done {
            return Err(aead_err("a segment after the last one"));
        }
        let mut n = [0u8; 12];
        n[..PREFIX].copy_from_slice(&self.prefix);
        n[PREFIX..PREFIX + 4].copy_from_slice(&self.counter.to_be_bytes());
        n[11] = u8::from(last);
        self.counter = self
            .counter
            .checked_add(1)
            .ok_or_else(|| aead_err("too many segments"))?;
        self.done = last;
        Ok(Nonce::assume_unique_for_key(n))
    }

    /// Encrypts `buf` in place; its tag.
    fn seal_in_place(&mut self, buf: &mut [u8], last: bool) -> io::Result<Tag> {
        let nonce = self.nonce(last)?;
        self.key
            .seal_in_place_separate_tag(nonce, Aad::empty(), buf)
            .map_err(|_| aead_err("encryption failed"))
    }

    /// Decrypts a segment (ciphertext and tag) in place; the plaintext's
    /// length.
    fn open(&mut self, buf: &mut [u8], last: bool) -> io::Result<usize> {
        let nonce = self.nonce(last)?;
        self.key
            .open_in_place(nonce, Aad::empty(), buf)
            .map(|p| p.len())
            .map_err(|_| aead_err("the encrypted data is corrupt, truncated or the key is wrong"))
    }
}

fn aead_err(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// Encrypts a stream handed over in pieces of any size into owned output
/// chunks, copying each byte once: a segment is sealed where it lands in
/// the output. A full segment is held back until more data (or the end)
/// shows whether it is the last.
pub struct Encryptor {
    stream: Stream,
    /// Plaintext of the segment not sealed yet (at most [`SEGMENT`] bytes).
    pending: Vec<u8>,
    out: BytesMut,
}

impl Encryptor {
    pub fn new(key: &BackupKey) -> Self {
        let mut prefix = [0u8; PREFIX];
        rand::thread_rng().fill_bytes(&mut prefix);
        let mut out = BytesMut::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&prefix);
        Encryptor {
            stream: Stream::new(key, prefix),
            pending: Vec::with_capacity(SEGMENT),
            out,
        }
    }

    /// Adds plaintext.
    pub fn push(&mut self, mut data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        if !self.pending.is_empty() {
            let n = data.len().min(SEGMENT - self.pending.len());
            self.pending.extend_from_slice(&data[..n]);
            data = &data[n..];
            if data.is_empty() {
                return Ok(());
            }
            // More follows: the pending segment (full now) is not the last.
            let seg = std::mem::take(&mut self.pending);
            self.seal_into_out(&seg, false)?;
            self.pending = seg;
            self.pending.clear();
        }
        // Every full segment with data after it is sealed straight into the
        // output; what may be the last segment waits.
        while data.len() > SEGMENT {
            self.seal_into_out(&data[..SEGMENT], false)?;
            data = &data[SEGMENT..];
        }
        self.pending.extend_from_slice(data);
        Ok(())
    }

    fn seal_into_out(&mut self, plain: &[u8], last: bool) -> io::Result<()> {
        let at = self.out.len();
        self.out.reserve(plain.len() + TAG);
        self.out.extend_from_slice(plain);
        let tag = self.stream.seal_in_place(&mut self.out[at..], last)?;
        self.out.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// The sealed output so far, once it holds at least `min` bytes.
    pub fn ready(&mut self, min: usize) -> Option<Bytes> {
        (self.out.len() >= min.max(1)).then(|| self.out.split().freeze())
    }

    /// Seals the last segment; the rest of the output.
    pub fn finish(mut self) -> io::Result<Bytes> {
        let seg = std::mem::take(&mut self.pending);
        self.seal_into_out(&seg, true)?;
        Ok(self.out.freeze())
    }
}

/// Decrypts what is read from `inner`; any tampering is an
/// `InvalidData` error naming it.
pub struct Decryptor<R: Read> {
    inner: R,
    stream: Stream,
    /// Raw bytes read; after a segment is opened, its plaintext is
    /// `raw[..plain]`, and what was read beyond it is `raw[seg..]`.
    raw: Vec<u8>,
    plain: usize,
    seg: usize,
    pos: usize,
    eof: bool,
}

impl<R: Read> Decryptor<R> {
    pub fn new(mut inner: R, key: &BackupKey) -> io::Result<Self> {
        let mut head = [0u8; 8 + PREFIX];
        inner
            .read_exact(&mut head)
            .map_err(|_| aead_err("the encrypted stream is too short to hold its header"))?;
        if &head[..8] != MAGIC {
            return Err(aead_err(
                "not an encrypted backup object (wrong header); was it taken without encryption?",
            ));
        }
        let prefix: [u8; PREFIX] = head[8..].try_into().expect("7 bytes");
        Ok(Decryptor {
            inner,
            stream: Stream::new(key, prefix),
            raw: Vec::with_capacity(SEGMENT + TAG + 1),
            plain: 0,
            seg: 0,
            pos: 0,
            eof: false,
        })
    }

    /// The reader underneath.
    pub fn into_inner(self) -> R {
        self.inner
    }

    fn fill(&mut self) -> io::Result<()> {
        // Keep what was read beyond the last segment, then read one segment
        // and a byte beyond it: only then do we know whether this segment
        // is the last.
        self.raw.drain(..self.seg);
        let mut have = self.raw.len();
        self.raw.resize(SEGMENT + TAG + 1, 0);
        while have < self.raw.len() {
            let n = self.inner.read(&mut self.raw[have..])?;
            if n == 0 {
                break;
            }
            have += n;
        }
        self.raw.truncate(have);
        let last = have <= SEGMENT + TAG;
        self.seg = if last { have } else { SEGMENT + TAG };
        self.plain = self.stream.open(&mut self.raw[..self.seg], last)?;
        self.eof = last;
        self.pos = 0;
        Ok(())
    }
}

impl<R: Read> Read for Decryptor<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.plain {
            if self.eof {
                return Ok(0);
            }
            self.fill()?;
        }
        let n = out.len().min(self.plain - self.pos);
        out[..n].copy_from_slice(&self.raw[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Encrypts a small buffer whole.
pub fn seal(data: &[u8], key: &BackupKey) -> Vec<u8> {
    let mut e = Encryptor::new(key);
    e.push(data).expect("fewer than 2^32 segments");
    e.finish().expect("fewer than 2^32 segments").into()
}

/// Decrypts a buffer [`seal`] made.
pub fn open(data: &[u8], key: &BackupKey) -> io::Result<Vec<u8>> {
    let mut d = Decryptor::new(data, key)?;
    let mut out = Vec::new();
    d.read_to_end(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> BackupKey {
        BackupKey([b; 32])
    }

    #[test]
    fn round_trips_at_every_segment_boundary() {
        for len in [
            0,
            1,
            SEGMENT - 1,
            SEGMENT,
            SEGMENT + 1,
            3 * SEGMENT,
            3 * SEGMENT + 7,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let sealed = seal(&data, &key(1));
            assert_eq!(open(&sealed, &key(1)).unwrap(), data, "len {len}");
        }
    }

    #[test]
    fn the_output_is_the_same_whatever_the_pieces_it_is_handed_in() {
        let data: Vec<u8> = (0..5 * SEGMENT + 123).map(|i| (i % 253) as u8).collect();
        for piece in [
            1,
            7,
            SEGMENT - 1,
            SEGMENT,
            SEGMENT + 1,
            3 * SEGMENT,
            1 << 20,
        ] {
            let mut e = Encryptor::new(&key(1));
            let mut sealed = Vec::new();
            for (i, p) in data.chunks(piece).enumerate() {
                e.push(p).unwrap();
                if i % 3 == 0
                    && let Some(b) = e.ready(1)
                {
                    sealed.extend_from_slice(&b);
                }
            }
            sealed.extend_from_slice(&e.finish().unwrap());
            // One header, then a tag per segment.
            assert_eq!(
                sealed.len(),
                8 + PREFIX + data.len() + 6 * TAG,
                "piece {piece}"
            );
            assert_eq!(open(&sealed, &key(1)).unwrap(), data, "piece {piece}");
        }
    }

    #[test]
    fn a_flipped_byte_a_truncation_or_a_wrong_key_is_detected() {
        let data = vec![7u8; 2 * SEGMENT + 10];
        let sealed = seal(&data, &key(1));
        let mut flipped = sealed.clone();
        flipped[100] ^= 1;
        assert!(open(&flipped, &key(1)).is_err());
        // Cut at a segment boundary: the last remaining segment is not
        // marked last.
        let cut = &sealed[..8 + PREFIX + SEGMENT + TAG];
        assert!(open(cut, &key(1)).is_err());
        assert!(open(&sealed, &key(2)).is_err());
        let e = open(&data, &key(1)).unwrap_err();
        assert!(e.to_string().contains("wrong header"), "{e}");
    }

    #[test]
    fn keys_come_from_64_hex_digits_and_never_print() {
        let k = BackupKey::from_hex(&"ab".repeat(32)).unwrap();
        assert_eq!(format!("{k:?}"), "BackupKey(***)");
        assert!(BackupKey::from_hex("abcd").is_err());
        assert!(BackupKey::from_hex("zz").is_err());
    }
}
