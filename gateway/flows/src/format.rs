//! The two export formats behind one encoder, and the buffer of encoded messages they fill.
use std::time::{SystemTime, UNIX_EPOCH};

use crate::{FlowRecord, ipfix::IpfixEncoder, netflow9::NetflowV9Encoder};

/// The wire format a collector expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// IPFIX, RFC 7011 (with the gateway's enterprise elements).
    Ipfix,
    /// NetFlow version 9, RFC 3954 (standard fields only).
    NetflowV9,
}

/// One encoded message: the bytes of one datagram (or one frame of a stream) and how many data
/// records it carries.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    pub bytes: &'a [u8],
    pub records: u32,
}

/// Encoded messages, back to back in one buffer: a stream writes [`Encoded::bytes`] at once, a
/// datagram socket sends each of [`Encoded::messages`]. Reuse it (`clear`) to avoid allocations.
#[derive(Clone, Debug, Default)]
pub struct Encoded {
    buf: Vec<u8>,
    spans: Vec<Span>,
}

#[derive(Clone, Copy, Debug)]
struct Span {
    start: usize,
    end: usize,
    records: u32,
}

impl Encoded {
    pub fn new() -> Encoded {
        Encoded::default()
    }

    pub fn clear(&mut self) {
        self.buf.clear();
        self.spans.clear();
    }

    /// Every message, back to back.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn messages(&self) -> impl ExactSizeIterator<Item = Message<'_>> + '_ {
        self.spans.iter().map(|s| Message {
            bytes: &self.buf[s.start..s.end],
            records: s.records,
        })
    }

    pub fn message_count(&self) -> usize {
        self.spans.len()
    }

    /// Data records in all messages.
    pub fn record_count(&self) -> u64 {
        self.spans.iter().map(|s| u64::from(s.records)).sum()
    }
}

/// How a format lays out messages, sets and records: what [`assemble`] needs to pack records into
/// size-bounded messages.
pub(crate) trait Layout {
    /// Message header length (patched by the caller once the message is complete).
    const HEADER_LEN: usize;
    /// NetFlow v9 pads each FlowSet to a 4-octet boundary; IPFIX needs no padding.
    const PAD_SETS: bool;
    /// The template (= data set id) a record is written with.
    fn set_id(&self, r: &FlowRecord) -> u16;
    /// Encoded length of `r`, exactly what [`Layout::write_record`] appends.
    fn record_len(&self, r: &FlowRecord) -> usize;
    fn write_record(&self, buf: &mut Vec<u8>, r: &FlowRecord);
}

pub(crate) const SET_HEADER_LEN: usize = 4;

/// Packs `records`, in order, into messages of at most `max_message` octets (a message always takes at
/// least one record), opening a new data set whenever the template changes. `header` gets each
/// finished message (header octets still zero) and its record count, and fills the header in.
pub(crate) fn assemble<L: Layout>(
    layout: &L,
    records: &[FlowRecord],
    max_message: usize,
    out: &mut Encoded,
    mut header: impl FnMut(&mut [u8], u32),
) {
    let mut i = 0;
    while i < records.len() {
        let start = out.buf.len();
        out.buf.resize(start + L::HEADER_LEN, 0);
        let mut set: Option<(usize, u16)> = None;
        let mut n: u32 = 0;
        while let Some(r) = records.get(i) {
            let id = layout.set_id(r);
            let same_set = matches!(set, Some((_, open)) if open == id);
            // Room for this record; when it opens a set, for the padding of the set it closes and the
            // new set's header; and for the padding of the set it ends up in.
            let switch = match set {
                _ if same_set => 0,
                Some((at, _)) => pad_len::<L>(out.buf.len() - at) + SET_HEADER_LEN,
                None => SET_HEADER_LEN,
            };
            let need = layout.record_len(r) + switch + if L::PAD_SETS { 3 } else { 0 };
            if n > 0 && out.buf.len() - start + need > max_message {
                break;
            }
            if !same_set {
                if let Some((at, _)) = set {
                    close_set::<L>(&mut out.buf, at);
                }
                set = Some((out.buf.len(), id));
                out.buf.extend_from_slice(&id.to_be_bytes());
                out.buf.extend_from_slice(&[0, 0]);
            }
            layout.write_record(&mut out.buf, r);
            n += 1;
            i += 1;
        }
        if let Some((at, _)) = set {
            close_set::<L>(&mut out.buf, at);
        }
        header(&mut out.buf[start..], n);
        out.spans.push(Span {
            start,
            end: out.buf.len(),
            records: n,
        });
    }
}

/// Appends one message made by `write` (header included), which carries no data records.
pub(crate) fn push_message(out: &mut Encoded, write: impl FnOnce(&mut Vec<u8>)) {
    let start = out.buf.len();
    write(&mut out.buf);
    out.spans.push(Span {
        start,
        end: out.buf.len(),
        records: 0,
    });
}

fn pad_len<L: Layout>(set_len: usize) -> usize {
    if L::PAD_SETS {
        (4 - set_len % 4) % 4
    } else {
        0
    }
}

fn close_set<L: Layout>(buf: &mut Vec<u8>, at: usize) {
    let pad = pad_len::<L>(buf.len() - at);
    buf.resize(buf.len() + pad, 0);
    // Set lengths fit: messages are bounded by the 16-bit message length.
    let len = u16::try_from(buf.len() - at).unwrap_or(u16::MAX);
    buf[at + 2..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// Milliseconds since the Unix epoch (0 before it).
pub(crate) fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// An encoder of either format, with its per-stream state (sequence numbers).
#[derive(Clone, Debug)]
pub enum FlowEncoder {
    Ipfix(IpfixEncoder),
    NetflowV9(NetflowV9Encoder),
}

impl FlowEncoder {
    /// `domain` is the IPFIX observation domain / NetFlow v9 source id. NetFlow v9 times are relative
    /// to the system's boot (see [`NetflowV9Encoder::new`]).
    pub fn new(format: Format, domain: u32, max_message: usize) -> FlowEncoder {
        match format {
            Format::Ipfix => FlowEncoder::Ipfix(IpfixEncoder::new(domain, max_message)),
            Format::NetflowV9 => FlowEncoder::NetflowV9(NetflowV9Encoder::new(
                domain,
                max_message,
                crate::netflow9::system_boot_ms(SystemTime::now()),
            )),
        }
    }

    /// Appends one message holding the templates.
    pub fn encode_templates(&mut self, now: SystemTime, out: &mut Encoded) {
        match self {
            FlowEncoder::Ipfix(e) => e.encode_templates(now, out),
            FlowEncoder::NetflowV9(e) => e.encode_templates(now, out),
        }
    }

    /// Appends the messages carrying `records`, in order.
    pub fn encode(&mut self, records: &[FlowRecord], now: SystemTime, out: &mut Encoded) {
        match self {
            FlowEncoder::Ipfix(e) => e.encode(records, now, out),
            FlowEncoder::NetflowV9(e) => e.encode(records, now, out),
        }
    }

    /// A new transport session starts (TCP/TLS reconnect): sequence numbers start again at 0.
    pub fn restart_session(&mut self) {
        match self {
            FlowEncoder::Ipfix(e) => e.restart_session(),
            FlowEncoder::NetflowV9(e) => e.restart_session(),
        }
    }
}
