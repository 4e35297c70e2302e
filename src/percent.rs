//! Percent-encoding (`%41` for `A`), the one implementation used by the
//! URL on the command line, the proxy's user name and the control socket's
//! paths. Strict: `%` must be followed by exactly two hex digits.

/// Decodes `%XX` escapes; every other byte stands for itself.
pub fn decode(text: &str) -> Result<Vec<u8>, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let escape = bytes.get(i + 1..i + 3).and_then(hex_pair);
        out.push(escape.ok_or("invalid percent-escape: expected % and two hex digits")?);
        i += 3;
    }
    Ok(out)
}

/// Encodes every byte that is not printable ASCII, and `%` itself, so the
/// result holds no spaces or control characters.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_graphic() && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn hex_pair(pair: &[u8]) -> Option<u8> {
    // from_str_radix alone would take "+1": only two hex digits are an escape.
    if !pair.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes_and_refuses_broken_ones() {
        assert_eq!(decode("a%20b%2fc").unwrap(), b"a b/c");
        assert_eq!(decode("%C3%A4").unwrap(), "ä".as_bytes());
        for bad in ["%", "%2", "%zz", "%+1", "a%-1"] {
            assert!(decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn encoding_round_trips_every_byte() {
        let all: Vec<u8> = (0..=255).collect();
        let text = encode(&all);
        assert!(text.bytes().all(|b| b.is_ascii_graphic()));
        assert_eq!(decode(&text).unwrap(), all);
    }
}
