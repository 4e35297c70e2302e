//! Data-connection addresses: reading EPSV/PASV replies and writing EPRT/PORT
//! arguments (RFC 959, RFC 2428). Pure functions over reply text.
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The port of an EPSV reply: `229 Entering Extended Passive Mode (|||6446|)`.
/// The delimiter may be any printable character, as RFC 2428 allows.
pub fn parse_epsv(text: &[u8]) -> Option<u16> {
    let open = text.iter().position(|&b| b == b'(')?;
    let inner = &text[open + 1..];
    let close = inner.iter().position(|&b| b == b')')?;
    let inner = &inner[..close];
    let delim = *inner.first()?;
    let fields: Vec<&[u8]> = inner.split(|&b| b == delim).collect();
    // |||port| splits into ["", "", "", "port", ""].
    if fields.len() != 5 || !fields[1].is_empty() || !fields[2].is_empty() {
        return None;
    }
    let port: u16 = std::str::from_utf8(fields[3]).ok()?.parse().ok()?;
    (port != 0).then_some(port)
}

/// The address of a PASV reply: `227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)`.
/// Servers differ in the text around the numbers (some omit the parentheses),
/// so the first run of six comma-separated numbers is taken.
pub fn parse_pasv(text: &[u8]) -> Option<SocketAddr> {
    let text = std::str::from_utf8(text).ok()?;
    let start = text.find(|c: char| c.is_ascii_digit())?;
    let numbers: Vec<u8> = text[start..]
        .split(|c: char| !(c.is_ascii_digit() || c == ','))
        .next()?
        .split(',')
        .map(|n| n.parse::<u8>().ok())
        .collect::<Option<Vec<u8>>>()?;
    let [a, b, c, d, p1, p2] = numbers.as_slice() else {
        return None;
    };
    let port = u16::from(*p1) << 8 | u16::from(*p2);
    (port != 0).then(|| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(*a, *b, *c, *d)), port))
}

/// The argument of `EPRT`: `|1|132.235.1.2|6275|` or `|2|::1|6275|`.
pub fn eprt_argument(addr: SocketAddr) -> String {
    let family = if addr.is_ipv4() { 1 } else { 2 };
    format!("|{family}|{}|{}|", addr.ip(), addr.port())
}

/// The argument of `PORT` (IPv4 only): `h1,h2,h3,h4,p1,p2`.
pub fn port_argument(addr: SocketAddr) -> Option<String> {
    let IpAddr::V4(ip) = addr.ip() else {
        return None;
    };
    let [a, b, c, d] = ip.octets();
    let [p1, p2] = addr.port().to_be_bytes();
    Some(format!("{a},{b},{c},{d},{p1},{p2}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn epsv_replies() {
        assert_eq!(
            parse_epsv(b"Entering Extended Passive Mode (|||6446|)"),
            Some(6446)
        );
        assert_eq!(
            parse_epsv(b"Entering Extended Passive Mode (!!!6446!)"),
            Some(6446)
        );
        assert_eq!(parse_epsv(b"(|||0|)"), None);
        assert_eq!(parse_epsv(b"(|||70000|)"), None);
        assert_eq!(parse_epsv(b"(|1|10.0.0.1|6446|)"), None);
        assert_eq!(parse_epsv(b"no parens"), None);
    }

    #[test]
    fn pasv_replies() {
        let addr = "192.168.1.2:1025".parse().ok();
        assert_eq!(
            parse_pasv(b"Entering Passive Mode (192,168,1,2,4,1)."),
            addr
        );
        assert_eq!(parse_pasv(b"Entering Passive Mode 192,168,1,2,4,1"), addr);
        assert_eq!(parse_pasv(b"=192,168,1,2,4,1"), addr);
        assert_eq!(parse_pasv(b"(192,168,1,2,0,0)"), None);
        assert_eq!(parse_pasv(b"(192,168,1,256,4,1)"), None);
        assert_eq!(parse_pasv(b"(192,168,1,2,4)"), None);
    }

    #[test]
    fn active_arguments() {
        let v4: SocketAddr = "127.0.0.1:40001".parse().unwrap();
        let v6: SocketAddr = "[::1]:40001".parse().unwrap();
        assert_eq!(eprt_argument(v4), "|1|127.0.0.1|40001|");
        assert_eq!(eprt_argument(v6), "|2|::1|40001|");
        assert_eq!(port_argument(v4).as_deref(), Some("127,0,0,1,156,65"));
        assert_eq!(port_argument(v6), None);
    }

    proptest! {
        #[test]
        fn never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_epsv(&bytes);
            let _ = parse_pasv(&bytes);
        }

        #[test]
        fn pasv_round_trip(ip in any::<[u8; 4]>(), port in 1u16..) {
            let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port);
            let text = format!("Entering Passive Mode ({}).", port_argument(addr).unwrap());
            prop_assert_eq!(parse_pasv(text.as_bytes()), Some(addr));
        }
    }
}
