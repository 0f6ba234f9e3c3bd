//! Portable parts of the xenstore client: decoding reply payloads
//! (`xen/include/public/io/xs_wire.h`).

use alloc::string::String;
use alloc::vec::Vec;

use xenbus::platform::{Access, Permission, XsError};

/// Maps the error name in an `XS_ERROR` reply (`xsd_errors` in
/// `xs_wire.h`, NUL-terminated) to its variant.
pub fn error_from_name(body: &[u8]) -> XsError {
    let name = body.split(|&byte| byte == 0).next().unwrap_or_default();
    match name {
        b"EINVAL" => XsError::Einval,
        b"EACCES" => XsError::Eacces,
        b"EEXIST" => XsError::Eexist,
        b"EISDIR" => XsError::Eisdir,
        b"ENOENT" => XsError::Enoent,
        b"ENOMEM" => XsError::Enomem,
        b"ENOSPC" => XsError::Enospc,
        b"EIO" => XsError::Eio,
        b"ENOTEMPTY" => XsError::Enotempty,
        b"ENOSYS" => XsError::Enosys,
        b"EROFS" => XsError::Erofs,
        b"EBUSY" => XsError::Ebusy,
        b"EAGAIN" => XsError::Eagain,
        b"EISCONN" => XsError::Eisconn,
        b"E2BIG" => XsError::E2big,
        b"EPERM" => XsError::Eperm,
        b"EQUOTA" => XsError::Equota,
        _ => XsError::Protocol,
    }
}

/// Splits a list of NUL-terminated strings (`XS_DIRECTORY`, `XS_GET_PERMS`).
pub fn split_nul_list(body: &[u8]) -> Result<Vec<String>, XsError> {
    if body.is_empty() {
        return Ok(Vec::new());
    }
    let body = body.strip_suffix(&[0]).ok_or(XsError::Protocol)?;
    body.split(|&byte| byte == 0)
        .map(|entry| String::from_utf8(entry.to_vec()).map_err(|_| XsError::Protocol))
        .collect()
}

/// Parses one permission entry such as `b0` or `r5`.
pub fn parse_permission(entry: &str) -> Result<Permission, XsError> {
    let mut characters = entry.chars();
    let access = match characters.next() {
        Some('n') => Access::None,
        Some('r') => Access::Read,
        Some('w') => Access::Write,
        Some('b') => Access::Both,
        _ => return Err(XsError::Protocol),
    };
    let domid = characters.as_str().parse().map_err(|_| XsError::Protocol)?;
    Ok(Permission { domid, access })
}

/// Formats one permission entry.
pub fn format_permission(permission: Permission) -> String {
    let letter = match permission.access {
        Access::None => 'n',
        Access::Read => 'r',
        Access::Write => 'w',
        Access::Both => 'b',
    };
    alloc::format!("{letter}{}", permission.domid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_map_to_variants() {
        assert_eq!(error_from_name(b"ENOENT\0"), XsError::Enoent);
        assert_eq!(error_from_name(b"EAGAIN\0"), XsError::Eagain);
        assert_eq!(error_from_name(b"ENOSUCH\0"), XsError::Protocol);
        assert_eq!(error_from_name(b""), XsError::Protocol);
    }

    #[test]
    fn directory_lists_split_on_nul() {
        assert_eq!(split_nul_list(b"0\0frontend\0").unwrap(), ["0", "frontend"]);
        assert!(split_nul_list(b"").unwrap().is_empty());
        assert_eq!(split_nul_list(b"unterminated"), Err(XsError::Protocol));
        assert_eq!(split_nul_list(b"\xff\0"), Err(XsError::Protocol));
    }

    #[test]
    fn permissions_round_trip() {
        for text in ["b0", "r5", "n32752", "w1"] {
            assert_eq!(format_permission(parse_permission(text).unwrap()), text);
        }
        assert_eq!(parse_permission("x1"), Err(XsError::Protocol));
        assert_eq!(parse_permission("r"), Err(XsError::Protocol));
        assert_eq!(parse_permission("r70000"), Err(XsError::Protocol));
    }
}
