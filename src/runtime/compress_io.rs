//! COMPRESS=DEFLATE (RFC 4978) on a session's byte stream, between the socket (or TLS) and the
//! session: what the client sends is inflated before the session scans it, and the session's
//! answers are deflated before they are sent (or encrypted).
//!
//! Memory is what decides the shape. The client's compressor may refer back 32 KiB into what
//! it sent before, so each compressed session must keep its inflater and its window (about
//! 43 KB with miniz_oxide) for as long as it lives. The other direction needs nothing per
//! session: each batch of answers is compressed by the worker's one deflater, reset first and
//! ended with a sync flush, so no answer ever refers back to an earlier one and the deflater
//! holds nothing of a session between sends. The cost is a little ratio on small answers (each
//! batch starts with an empty dictionary); a FETCH of a message body compresses as well as
//! with a long-lived stream.

use std::io;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// Inflated bytes handed to the session at a time: a small compressed read may inflate a
/// thousandfold, and the session's own limits (line, literal, command size) should see it in
/// pieces rather than after it was all buffered.
pub(crate) const CHUNK: usize = 64 * 1024;

/// Deflate level of the answers: zlib's default, as Dovecot's `imap_compress_deflate_level`.
const LEVEL: u32 = 6;

/// One compressed session's inbound state.
pub(crate) struct Inflater {
    stream: Decompress,
    /// Compressed input received but not inflated yet: the session stopped taking input (it
    /// handed out slow work, or yielded its turn) before the read was used up.
    unread: Vec<u8>,
    /// The client ended its stream (a final block): nothing may follow.
    ended: bool,
}

impl Inflater {
    pub(crate) fn new() -> Box<Inflater> {
        Box::new(Inflater {
            // Raw DEFLATE: RFC 4978 has no zlib header or checksum.
            stream: Decompress::new(false),
            unread: Vec::new(),
            ended: false,
        })
    }

    /// Keeps `rest` (the compressed input the session did not take) for the next turn.
    pub(crate) fn keep(&mut self, rest: &[u8]) {
        if rest.is_empty() {
            // An idle compressed session keeps no input buffer.
            self.unread = Vec::new();
        } else {
            self.unread = rest.to_vec();
        }
    }

    /// Takes what was kept by [`Inflater::keep`], leaving nothing.
    pub(crate) fn take_unread(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.unread)
    }

    /// Inflates from `input` into `out`; returns `(consumed, produced)`. `(0, 0)` means more
    /// input is needed. A corrupt stream is an error: the connection cannot go on.
    pub(crate) fn inflate(&mut self, input: &[u8], out: &mut [u8]) -> io::Result<(usize, usize)> {
        if self.ended {
            if input.is_empty() {
                return Ok((0, 0));
            }
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "input after the end of the compressed stream",
            ));
        }
        let (before_in, before_out) = (self.stream.total_in(), self.stream.total_out());
        let status = self
            .stream
            .decompress(input, out, FlushDecompress::Sync)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        self.ended = status == Status::StreamEnd;
        // Both totals grew by at most the lengths of the slices given.
        let consumed = (self.stream.total_in() - before_in) as usize;
        let produced = (self.stream.total_out() - before_out) as usize;
        Ok((consumed, produced))
    }
}

/// The worker's deflater, shared by its compressed sessions (see the module doc).
pub(crate) struct Deflater {
    stream: Compress,
}

impl Deflater {
    pub(crate) fn new() -> Deflater {
        Deflater {
            stream: Compress::new(Compression::new(LEVEL), false),
        }
    }

    /// Replaces the contents of `out` with their compressed form: a run of DEFLATE blocks
    /// ending in a sync flush, which the client can inflate completely at once and which is
    /// independent of every earlier batch. `spare` is scratch space (left holding the
    /// uncompressed input, cleared).
    pub(crate) fn deflate(&mut self, out: &mut Vec<u8>, spare: &mut Vec<u8>) -> io::Result<()> {
        if out.is_empty() {
            return Ok(());
        }
        self.stream.reset();
        std::mem::swap(out, spare);
        out.clear();
        // Text answers shrink; incompressible literals grow by a few bytes per 16 KiB block.
        out.reserve(spare.len() / 2 + 64);
        let mut input: &[u8] = spare;
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.capacity().max(4096));
            }
            let (before, written) = (self.stream.total_in(), out.len());
            self.stream
                .compress_vec(input, out, FlushCompress::Sync)
                .map_err(|e| io::Error::other(e.to_string()))?;
            // At most input.len(), as the input slice bounds what the deflater can take.
            let taken = (self.stream.total_in() - before) as usize;
            input = &input[taken..];
            // Done when every byte went in and the flush fitted: room was left over.
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
            if taken == 0 && out.len() == written && out.len() < out.capacity() {
                return Err(io::Error::other("the deflater made no progress"));
            }
        }
        spare.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inflates a whole stream as a client would (one long-lived inflater).
    fn client_inflate(client: &mut Decompress, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() * 4 + 1024);
        let mut input = data;
        loop {
            let before = client.total_in();
            out.reserve(64 * 1024);
            client
                .decompress_vec(input, &mut out, FlushDecompress::Sync)
                .expect("valid stream");
            let used = (client.total_in() - before) as usize;
            input = &input[used..];
            if input.is_empty() {
                let before_out = out.len();
                out.reserve(64 * 1024);
                client
                    .decompress_vec(&[], &mut out, FlushDecompress::Sync)
                    .expect("valid stream");
                if out.len() == before_out {
                    return out;
                }
            }
        }
    }

    #[test]
    fn batches_from_a_reset_deflater_make_one_stream() {
        let mut deflater = Deflater::new();
        let mut spare = Vec::new();
        let mut client = Decompress::new(false);
        let big: Vec<u8> = (0..300_000u32)
            .flat_map(|i| (i.wrapping_mul(2_654_435_761) >> 13).to_le_bytes())
            .collect();
        let batches: Vec<Vec<u8>> = vec![
            b"* OK hi\r\n".to_vec(),
            b"a OK NOOP completed\r\n".repeat(1000),
            big,
            b"b OK done\r\n".to_vec(),
        ];
        for batch in &batches {
            let mut out = batch.clone();
            deflater.deflate(&mut out, &mut spare).expect("deflate");
            assert!(spare.is_empty());
            // Each batch inflates completely, at once: the client waits for nothing more.
            assert_eq!(&client_inflate(&mut client, &out), batch);
        }
    }

    #[test]
    fn input_is_inflated_in_pieces_and_corruption_is_an_error() {
        let mut packer = Compress::new(Compression::default(), false);
        let plain = b"a NOOP\r\n".repeat(50_000);
        let mut packed = Vec::with_capacity(plain.len());
        packer
            .compress_vec(&plain, &mut packed, FlushCompress::Sync)
            .expect("compress");
        let mut inflater = Inflater::new();
        let mut got = Vec::new();
        let mut chunk = vec![0u8; CHUNK];
        let mut input = &packed[..];
        loop {
            let (used, made) = inflater.inflate(input, &mut chunk).expect("inflate");
            assert!(made <= CHUNK);
            got.extend_from_slice(&chunk[..made]);
            input = &input[used..];
            if used == 0 && made == 0 {
                break;
            }
        }
        assert_eq!(got, plain);

        let mut broken = Inflater::new();
        let garbage = [0xffu8; 64];
        assert!(broken.inflate(&garbage, &mut chunk).is_err());
    }
}
