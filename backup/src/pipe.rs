//! Bridges between the blocking archive code (tar, zstd, files) and the
//! async object store: bounded channels of chunks, so at most a few MiB are
//! in flight whatever the archive's size.

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};
use std::io::{self, Read, Write};
use tokio::sync::mpsc;

/// Size of the chunks handed between the two sides.
pub const CHUNK: usize = 1 << 20;
/// Chunks waiting in a channel at most.
pub const DEPTH: usize = 4;

pub enum Msg {
    Data(Bytes),
    /// The writer finished cleanly: the upload may be completed. A channel
    /// closed without it means the archive is incomplete.
    End,
}

/// Hashes, counts and forwards what is written, in [`CHUNK`]s.
pub struct ChannelWriter {
    tx: mpsc::Sender<Msg>,
    buf: BytesMut,
    hasher: Option<Sha256>,
    size: u64,
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the upload stopped")
}

impl ChannelWriter {
    pub fn new(tx: mpsc::Sender<Msg>) -> Self {
        ChannelWriter {
            tx,
            buf: BytesMut::with_capacity(CHUNK),
            hasher: Some(Sha256::new()),
            size: 0,
        }
    }

    /// A writer that does not hash what it forwards.
    pub fn unhashed(tx: mpsc::Sender<Msg>) -> Self {
        ChannelWriter {
            hasher: None,
            ..Self::new(tx)
        }
    }

    fn send_buf(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let chunk = self.buf.split().freeze();
            self.tx
                .blocking_send(Msg::Data(chunk))
                .map_err(|_| gone())?;
            self.buf.reserve(CHUNK);
        }
        Ok(())
    }

    /// Hashes, counts and sends a chunk the caller made, without copying it.
    pub fn send_owned(&mut self, chunk: Bytes) -> io::Result<()> {
        self.send_buf()?;
        if chunk.is_empty() {
            return Ok(());
        }
        if let Some(h) = &mut self.hasher {
            h.update(&chunk);
        }
        self.size += chunk.len() as u64;
        self.tx.blocking_send(Msg::Data(chunk)).map_err(|_| gone())
    }

    /// Sends the rest and the end mark; (hex SHA-256, size) of all bytes.
    pub fn finish(mut self) -> io::Result<(String, u64)> {
        self.send_buf()?;
        self.tx.blocking_send(Msg::End).map_err(|_| gone())?;
        let sha = self.hasher.take().map(|h| hex::encode(h.finalize()));
        Ok((sha.unwrap_or_default(), self.size))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if let Some(h) = &mut self.hasher {
            h.update(&data[..n]);
        }
        self.size += n as u64;
        if self.buf.len() == CHUNK {
            self.send_buf()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads what the download task sends, hashing and counting it.
pub struct ChannelReader {
    rx: mpsc::Receiver<Result<Bytes, String>>,
    cur: Bytes,
    hasher: Option<Sha256>,
    size: u64,
}

impl ChannelReader {
    pub fn new(rx: mpsc::Receiver<Result<Bytes, String>>) -> Self {
        ChannelReader {
            rx,
            cur: Bytes::new(),
            hasher: Some(Sha256::new()),
            size: 0,
        }
    }

    /// A reader that does not hash what it reads.
    pub fn unhashed(rx: mpsc::Receiver<Result<Bytes, String>>) -> Self {
        ChannelReader {
            hasher: None,
            ..Self::new(rx)
        }
    }

    /// Reads to the end; (hex SHA-256, size) of everything read.
    pub fn finish(mut self) -> io::Result<(String, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        let sha = self.hasher.take().map(|h| hex::encode(h.finalize()));
        Ok((sha.unwrap_or_default(), self.size))
    }
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len());
        let part = self.cur.split_to(n);
        out[..n].copy_from_slice(&part);
        if let Some(h) = &mut self.hasher {
            h.update(&part);
        }
        self.size += n as u64;
        Ok(n)
    }
}
