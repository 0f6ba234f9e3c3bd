//! The guest command line (`extra=` in the xl config, `start_info.cmd_line`).

/// The command line as text: the bytes up to the first NUL, or up to the
/// first byte that is not valid UTF-8 (the rest is dropped).
pub fn from_start_info(raw: &[u8]) -> &str {
    let length = raw.iter().position(|&byte| byte == 0).unwrap_or(raw.len());
    let raw = &raw[..length];
    match core::str::from_utf8(raw) {
        Ok(text) => text,
        Err(error) => {
            let valid = &raw[..error.valid_up_to()];
            core::str::from_utf8(valid).unwrap_or_default()
        }
    }
}

/// Values of every `key=value` word whose key is `key`, in order.
pub fn values<'a>(command_line: &'a str, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    command_line
        .split_ascii_whitespace()
        .filter_map(move |word| {
            let (name, value) = word.split_once('=')?;
            (name == key).then_some(value)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_at_nul_and_invalid_utf8() {
        assert_eq!(from_start_info(b"disk=ram0:1M\0garbage"), "disk=ram0:1M");
        assert_eq!(from_start_info(b"abc\xffdef\0"), "abc");
        assert_eq!(from_start_info(b""), "");
        assert_eq!(from_start_info(b"no-terminator"), "no-terminator");
    }

    #[test]
    fn finds_every_value_of_a_key() {
        let line = "disk=ram0:64M  loglevel=debug disk=ram1:16M disk diskx=1";
        let found: std::vec::Vec<&str> = values(line, "disk").collect();
        assert_eq!(found, ["ram0:64M", "ram1:16M"]);
        assert_eq!(values(line, "loglevel").next(), Some("debug"));
        assert_eq!(values(line, "absent").next(), None);
    }
}
