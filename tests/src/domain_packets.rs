//! Payloads for the domain-blocking tests beyond DNS queries (issue 6 item 3): TLS ClientHellos
//! and DNS responses, built field by field so a test can break exactly one field.

/// A DNS name in wire format: `www.example.com` → `\x03www\x07example\x03com\x00`.
pub fn wire_name(name: &str) -> Vec<u8> {
    let mut w = Vec::new();
    for label in name.split('.').filter(|l| !l.is_empty()) {
        w.push(label.len() as u8);
        w.extend_from_slice(label.as_bytes());
    }
    w.push(0);
    w
}

/// A TLS 1.3-style ClientHello in one handshake record.
#[derive(Clone, Debug)]
pub struct ClientHello {
    /// The host_name of server_name (raw bytes: tests put dots, case and garbage there); `None`
    /// sends no server_name extension.
    pub sni: Option<Vec<u8>>,
    /// Length of a padding extension (type 21) placed before server_name; 0 = none.
    pub pad_before: usize,
    pub session_id_len: u8,
}

impl ClientHello {
    pub fn new(sni: &str) -> ClientHello {
        ClientHello {
            sni: Some(sni.as_bytes().to_vec()),
            pad_before: 0,
            session_id_len: 32,
        }
    }

    pub fn without_sni() -> ClientHello {
        ClientHello {
            sni: None,
            pad_before: 0,
            session_id_len: 32,
        }
    }

    fn ext(out: &mut Vec<u8>, typ: u16, data: &[u8]) {
        out.extend_from_slice(&typ.to_be_bytes());
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(data);
    }

    /// The record bytes (the TCP payload of the first segment when it fits).
    pub fn bytes(&self) -> Vec<u8> {
        let mut exts = Vec::new();
        // GREASE, then supported_versions (TLS 1.3), as browsers lead.
        Self::ext(&mut exts, 0x0a0a, &[]);
        Self::ext(&mut exts, 43, &[2, 3, 4]);
        if self.pad_before > 0 {
            Self::ext(&mut exts, 21, &vec![0; self.pad_before]);
        }
        if let Some(name) = &self.sni {
            let mut sn = Vec::new();
            sn.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
            sn.push(0); // host_name
            sn.extend_from_slice(&(name.len() as u16).to_be_bytes());
            sn.extend_from_slice(name);
            Self::ext(&mut exts, 0, &sn);
        }
        Self::ext(&mut exts, 10, &[0, 2, 0, 29]); // supported_groups: x25519
        let mut body = vec![3, 3];
        body.extend_from_slice(&[0x5a; 32]); // random
        body.push(self.session_id_len);
        body.extend(std::iter::repeat_n(0x11, self.session_id_len as usize));
        body.extend_from_slice(&[0, 4, 0x13, 0x01, 0x13, 0x02]); // two cipher suites
        body.extend_from_slice(&[1, 0]); // null compression
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend_from_slice(&exts);
        let mut hs = vec![1];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        let mut rec = vec![22, 3, 1];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        rec
    }
}

/// Offset of the extensions-length field in [`ClientHello::bytes`] (record 5 + handshake 4 +
/// version 2 + random 32 + session id 1 + len + suites 6 + compression 2).
pub fn extensions_len_offset(session_id_len: u8) -> usize {
    5 + 4 + 2 + 32 + 1 + session_id_len as usize + 6 + 2
}

/// One answer record of a [`DnsResponse`].
#[derive(Clone, Debug)]
pub struct Answer {
    /// Owner name in wire format (may be a pointer, e.g. `[0xc0, 0x0c]` for the question).
    pub owner: Vec<u8>,
    pub rtype: u16,
    pub ttl: u32,
    pub rdata: Vec<u8>,
}

impl Answer {
    pub fn a(owner: Vec<u8>, addr: std::net::Ipv4Addr, ttl: u32) -> Answer {
        Answer {
            owner,
            rtype: 1,
            ttl,
            rdata: addr.octets().to_vec(),
        }
    }

    pub fn aaaa(owner: Vec<u8>, addr: std::net::Ipv6Addr, ttl: u32) -> Answer {
        Answer {
            owner,
            rtype: 28,
            ttl,
            rdata: addr.octets().to_vec(),
        }
    }

    pub fn cname(owner: Vec<u8>, target: &str, ttl: u32) -> Answer {
        Answer {
            owner,
            rtype: 5,
            ttl,
            rdata: wire_name(target),
        }
    }
}

/// A pointer to the question name (offset 12).
pub const TO_QUESTION: [u8; 2] = [0xc0, 0x0c];

/// A DNS response (QR, RD, RA) to one question of type A, class IN.
#[derive(Clone, Debug)]
pub struct DnsResponse {
    pub qname: Vec<u8>,
    pub rcode: u8,
    pub answers: Vec<Answer>,
}

impl DnsResponse {
    pub fn new(qname: &str, answers: Vec<Answer>) -> DnsResponse {
        DnsResponse {
            qname: wire_name(qname),
            rcode: 0,
            answers,
        }
    }

    /// Offset in [`Self::bytes`] where the answer section starts.
    pub fn answers_offset(&self) -> usize {
        12 + self.qname.len() + 4
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut m = vec![0xab, 0xcd, 0x81, 0x80 | self.rcode, 0, 1];
        m.extend_from_slice(&(self.answers.len() as u16).to_be_bytes());
        m.extend_from_slice(&[0, 0, 0, 0]);
        m.extend_from_slice(&self.qname);
        m.extend_from_slice(&[0, 1, 0, 1]);
        for a in &self.answers {
            m.extend_from_slice(&a.owner);
            m.extend_from_slice(&a.rtype.to_be_bytes());
            m.extend_from_slice(&[0, 1]);
            m.extend_from_slice(&a.ttl.to_be_bytes());
            m.extend_from_slice(&(a.rdata.len() as u16).to_be_bytes());
            m.extend_from_slice(&a.rdata);
        }
        m
    }
}
