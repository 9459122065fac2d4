//! The one table of errno names and words, for messages that name a kernel refusal
//! (`send`'s flow-label manager errors, `probe interop`'s connection errors).

/// `(errno, symbolic name, words)` for the errnos flowpol's messages name.
const TABLE: &[(i32, &str, &str)] = &[
    (libc::EPERM, "EPERM", "operation not permitted"),
    (libc::ENOENT, "ENOENT", "no such file or directory"),
    (libc::ESRCH, "ESRCH", "no such process"),
    (libc::ENOMEM, "ENOMEM", "out of memory"),
    (libc::EACCES, "EACCES", "permission denied"),
    (libc::EEXIST, "EEXIST", "file exists"),
    (libc::ENODEV, "ENODEV", "no such device"),
    (libc::EINVAL, "EINVAL", "invalid argument"),
    (libc::ERANGE, "ERANGE", "result out of range"),
    (libc::ENOPROTOOPT, "ENOPROTOOPT", "protocol not available"),
    (
        libc::EPROTONOSUPPORT,
        "EPROTONOSUPPORT",
        "protocol not supported",
    ),
    (
        libc::EAFNOSUPPORT,
        "EAFNOSUPPORT",
        "address family not supported",
    ),
    (libc::EADDRINUSE, "EADDRINUSE", "address in use"),
    (
        libc::EADDRNOTAVAIL,
        "EADDRNOTAVAIL",
        "address not available",
    ),
    (libc::ENETDOWN, "ENETDOWN", "network down"),
    (libc::ENETUNREACH, "ENETUNREACH", "network unreachable"),
    (libc::ECONNRESET, "ECONNRESET", "connection reset"),
    (libc::ENOBUFS, "ENOBUFS", "no buffer space"),
    (libc::ETIMEDOUT, "ETIMEDOUT", "timed out"),
    (libc::ECONNREFUSED, "ECONNREFUSED", "connection refused"),
    (libc::EHOSTUNREACH, "EHOSTUNREACH", "host unreachable"),
];

fn entry(errno: i32) -> Option<&'static (i32, &'static str, &'static str)> {
    TABLE.iter().find(|(code, _, _)| *code == errno)
}

/// The symbolic name of `errno` (`"EPERM"`), if the table has it.
pub fn name(errno: i32) -> Option<&'static str> {
    entry(errno).map(|e| e.1)
}

/// The words for `errno` (`"operation not permitted"`), if the table has it.
pub fn words(errno: i32) -> Option<&'static str> {
    entry(errno).map(|e| e.2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_errno_appears_once_with_its_libc_name() {
        for (i, (code, n, w)) in TABLE.iter().enumerate() {
            assert!(TABLE[i + 1..].iter().all(|e| e.0 != *code), "{n} twice");
            assert!(n.starts_with('E') && !w.is_empty());
            assert_eq!(name(*code), Some(*n));
        }
        assert_eq!(name(libc::ENOTSOCK), None);
        assert_eq!(words(libc::ECONNREFUSED), Some("connection refused"));
    }
}
