//! Optional encryption of a backup's objects: ChaCha20-Poly1305 in the
//! STREAM construction (64 KiB segments, each authenticated, the last one
//! marked), so a stream is encrypted and checked with constant memory and
//! truncation, reordering or any changed byte is detected.
//!
//! Layout: `FMBKENC1` (8 bytes), a random 7-byte nonce prefix, then the
//! segments (64 KiB of plaintext + a 16-byte tag each; the last may be
//! shorter).

use chacha20poly1305::aead::stream::{DecryptorBE32, EncryptorBE32};
use chacha20poly1305::{ChaCha20Poly1305, Key, KeyInit};
use rand::RngCore;
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

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(Key::from_slice(&self.0))
    }
}

fn aead_err(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// Encrypts what is written into `inner`. [`Encryptor::finish`] must be
/// called to write the last segment.
pub struct Encryptor<W: Write> {
    inner: W,
    enc: Option<EncryptorBE32<ChaCha20Poly1305>>,
    buf: Vec<u8>,
}

impl<W: Write> Encryptor<W> {
    pub fn new(mut inner: W, key: &BackupKey) -> io::Result<Self> {
        let mut prefix = [0u8; PREFIX];
        rand::thread_rng().fill_bytes(&mut prefix);
        inner.write_all(MAGIC)?;
        inner.write_all(&prefix)?;
        let enc = EncryptorBE32::from_aead(key.cipher(), (&prefix).into());
        Ok(Encryptor {
            inner,
            enc: Some(enc),
            buf: Vec::with_capacity(SEGMENT),
        })
    }

    /// Writes the last segment; returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        let enc = self.enc.take().ok_or_else(|| aead_err("finished twice"))?;
        let ct = enc
            .encrypt_last(self.buf.as_slice())
            .map_err(|_| aead_err("encryption failed"))?;
        self.inner.write_all(&ct)?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for Encryptor<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() == SEGMENT {
            // More data follows, so the full segment is not the last.
            let enc = self.enc.as_mut().ok_or_else(|| aead_err("finished"))?;
            let ct = enc
                .encrypt_next(self.buf.as_slice())
                .map_err(|_| aead_err("encryption failed"))?;
            self.inner.write_all(&ct)?;
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
    dec: Option<DecryptorBE32<ChaCha20Poly1305>>,
    raw: Vec<u8>,
    plain: Vec<u8>,
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
            dec: Some(DecryptorBE32::from_aead(key.cipher(), (&prefix).into())),
            raw: Vec::with_capacity(SEGMENT + TAG + 1),
            plain: Vec::new(),
            pos: 0,
            eof: false,
        })
    }

    /// The reader underneath.
    pub fn into_inner(self) -> R {
        self.inner
    }

    fn fill(&mut self) -> io::Result<()> {
        // Read one segment and a byte beyond it: only then do we know
        // whether this segment is the last.
        while self.raw.len() < SEGMENT + TAG + 1 {
            let mut chunk = [0u8; 16 * 1024];
            let want = (SEGMENT + TAG + 1 - self.raw.len()).min(chunk.len());
            let n = self.inner.read(&mut chunk[..want])?;
            if n == 0 {
                break;
            }
            self.raw.extend_from_slice(&chunk[..n]);
        }
        if self.raw.len() > SEGMENT + TAG {
            let dec = self
                .dec
                .as_mut()
                .ok_or_else(|| aead_err("read past the end"))?;
            self.plain = dec
                .decrypt_next(&self.raw[..SEGMENT + TAG])
                .map_err(|_| aead_err("the encrypted data is corrupt or the key is wrong"))?;
            self.raw.drain(..SEGMENT + TAG);
        } else {
            let dec = self
                .dec
                .take()
                .ok_or_else(|| aead_err("read past the end"))?;
            self.plain = dec.decrypt_last(self.raw.as_slice()).map_err(|_| {
                aead_err("the encrypted data is corrupt, truncated or the key is wrong")
            })?;
            self.raw.clear();
            self.eof = true;
        }
        self.pos = 0;
        Ok(())
    }
}

impl<R: Read> Read for Decryptor<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.plain.len() {
            if self.eof {
                return Ok(0);
            }
            self.fill()?;
        }
        let n = out.len().min(self.plain.len() - self.pos);
        out[..n].copy_from_slice(&self.plain[self.pos..self.pos + n]);
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
