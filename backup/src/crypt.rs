//! Optional encryption of a backup's objects: ChaCha20-Poly1305 in the
//! STREAM construction (64 KiB segments, each authenticated, the last one
//! marked), so a stream is encrypted and checked with constant memory and
//! truncation, reordering or any changed byte is detected.
//!
//! Layout: `FMBKENC1` (8 bytes), a random 7-byte nonce prefix, then the
//! segments (64 KiB of plaintext + a 16-byte tag each; the last may be
//! shorter).

use rand::RngCore;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use std::io::{self, Read, Write};

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

    /// Encrypts `buf` in place and appends its tag.
    fn seal(&mut self, buf: &mut Vec<u8>, last: bool) -> io::Result<()> {
        let nonce = self.nonce(last)?;
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce, Aad::empty(), buf)
            .map_err(|_| aead_err("encryption failed"))?;
        buf.extend_from_slice(tag.as_ref());
        Ok(())
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

/// Encrypts what is written into `inner`. [`Encryptor::finish`] must be
/// called to write the last segment.
pub struct Encryptor<W: Write> {
    inner: W,
    stream: Stream,
    buf: Vec<u8>,
}

impl<W: Write> Encryptor<W> {
    pub fn new(mut inner: W, key: &BackupKey) -> io::Result<Self> {
        let mut prefix = [0u8; PREFIX];
        rand::thread_rng().fill_bytes(&mut prefix);
        inner.write_all(MAGIC)?;
        inner.write_all(&prefix)?;
        Ok(Encryptor {
            inner,
            stream: Stream::new(key, prefix),
            buf: Vec::with_capacity(SEGMENT + TAG),
        })
    }

    /// Writes the last segment; returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.stream.seal(&mut self.buf, true)?;
        self.inner.write_all(&self.buf)?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for Encryptor<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() == SEGMENT {
            // More data follows, so the full segment is not the last.
            self.stream.seal(&mut self.buf, false)?;
            self.inner.write_all(&self.buf)?;
            self.buf.clear();
        }
        let n = data.len().min(SEGMENT - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
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
    let mut e = Encryptor::new(Vec::new(), key).expect("writing to a Vec");
    e.write_all(data).expect("writing to a Vec");
    e.finish().expect("writing to a Vec")
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
