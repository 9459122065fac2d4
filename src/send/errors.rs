//! Typed errors of `send`, `sink` and `replay`, and the words for every kernel refusal: what the
//! errno means for the flow-label manager (`net/ipv6/ip6_flowlabel.c`) and what to do about it.
//! The explanation is built from the request, the caller's capabilities, the sysctls and the
//! kernel's own label table (`/proc/net/ip6_flowlabel`), so the user reads a cause, not an errno.

use std::io;

use crate::FlowLabel;

use super::Share;
pub use crate::sys::Capability;
use crate::sys::{caps, errno};

/// The kernel's limit for linger and expiry without CAP_NET_ADMIN (`FL_MAX_LINGER`).
pub const MAX_UNPRIVILEGED_LINGER: u16 = 150;

/// Any failure of the sender, receiver or replayer.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The kernel refused a flow-label operation; the message explains why and what to do.
    #[error("{0}")]
    Refused(Box<Refusal>),
    /// A privilege the operation needs is missing.
    #[error("{}", caps::missing(what, *cap))]
    MissingCapability {
        /// The capability, e.g. `CAP_NET_RAW`.
        cap: Capability,
        /// What needed it.
        what: String,
    },
    /// Arguments that cannot work together.
    #[error("{0}")]
    Usage(String),
    /// A capture file that cannot be read. The cause is the error's source (printed after it by
    /// `{:#}`), not repeated in its own text.
    #[error("{path}")]
    Capture {
        /// The file.
        path: String,
        /// What is wrong with it, and where.
        #[source]
        source: crate::source::pcap::CaptureError,
    },
    /// Any other I/O failure, with what was being done. The OS error is the source (printed
    /// after it by `{:#}`), not repeated in its own text.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl SendError {
    /// Wraps an I/O error with context.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        SendError::Io {
            context: context.into(),
            source,
        }
    }
}

/// A kernel refusal in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the kernel refused {operation} ({errno_name}): {explanation}")]
pub struct Refusal {
    /// What was asked, e.g. "to lease flow label 0x12345".
    pub operation: String,
    /// The errno value.
    pub errno: i32,
    /// Its symbolic name, e.g. "EPERM".
    pub errno_name: &'static str,
    /// The cause and what to do.
    pub explanation: String,
}

/// Symbolic name of the errnos the flow-label manager returns ("errno" for one the table lacks).
pub fn errno_name(errno: i32) -> &'static str {
    errno::name(errno).unwrap_or("errno")
}

/// Reads a sysctl under /proc/sys, e.g. `net/ipv6/flowlabel_state_ranges`.
pub fn read_sysctl(path: &str) -> Option<i64> {
    std::fs::read_to_string(format!("/proc/sys/{path}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// One line of `/proc/net/ip6_flowlabel`: a label the kernel holds in this network namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelEntry {
    /// The label.
    pub label: u32,
    /// Its share mode (`IPV6_FL_S_*`).
    pub share: u8,
    /// The owning pid (share process) or uid (share user), else 0.
    pub owner: i64,
    /// Sockets holding it; 0 means it is lingering.
    pub users: i64,
    /// Linger in seconds.
    pub linger: i64,
    /// Seconds until it may be freed (negative: already due).
    pub expires: i64,
}

/// Parses the text of `/proc/net/ip6_flowlabel`
/// (`Label S Owner  Users  Linger Expires  Dst  Opt`, label in hex).
pub fn parse_label_table(text: &str) -> Vec<LabelEntry> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let label = u32::from_str_radix(f.next()?, 16).ok()?;
            let share: i64 = f.next()?.parse().ok()?;
            Some(LabelEntry {
                label,
                share: u8::try_from(share).ok()?,
                owner: f.next()?.parse().ok()?,
                users: f.next()?.parse().ok()?,
                linger: f.next()?.parse().ok()?,
                expires: f.next()?.parse().ok()?,
            })
        })
        .collect()
}

/// The kernel's entry for `label` in this network namespace, if it has one.
pub fn lookup_label(label: FlowLabel) -> Option<LabelEntry> {
    let text = std::fs::read_to_string("/proc/net/ip6_flowlabel").ok()?;
    parse_label_table(&text)
        .into_iter()
        .find(|e| e.label == label.value())
}

/// What was asked when leasing a label, for explaining a refusal.
#[derive(Debug, Clone, Copy)]
pub struct LeaseRequest {
    /// The label.
    pub label: FlowLabel,
    /// The share mode asked for.
    pub share: Share,
    /// Linger in seconds.
    pub linger: u16,
    /// Expiry in seconds.
    pub expires: u16,
    /// IPV6_FL_F_CREATE was set.
    pub create: bool,
    /// IPV6_FL_F_EXCL was set.
    pub exclusive_create: bool,
}

/// The facts besides the request that decide why a lease was refused.
#[derive(Debug, Clone, Copy)]
pub struct LeaseFacts {
    /// This process has CAP_NET_ADMIN.
    pub net_admin: bool,
    /// `net.ipv6.flowlabel_state_ranges`, if readable.
    pub state_ranges: Option<i64>,
    /// The kernel's table entry for the label, if any.
    pub entry: Option<LabelEntry>,
    /// This process's pid (to tell a share-process owner apart).
    pub pid: u32,
}

impl LeaseFacts {
    /// Reads the facts from the running system.
    pub fn current(label: FlowLabel) -> Self {
        LeaseFacts {
            net_admin: Capability::NetAdmin.held(),
            state_ranges: read_sysctl("net/ipv6/flowlabel_state_ranges"),
            entry: lookup_label(label),
            pid: std::process::id(),
        }
    }
}

fn share_words(share: u8) -> String {
    match Share::from_raw(share) {
        Some(s) => format!("share mode {}", s.name()),
        None => format!("share mode {share}"),
    }
}

fn entry_words(e: &LabelEntry) -> String {
    let owner = match Share::from_raw(e.share) {
        Some(Share::Process) => format!(", owned by pid {}", e.owner),
        Some(Share::User) => format!(", owned by uid {}", e.owner),
        _ => String::new(),
    };
    if e.users == 0 {
        format!(
            "it is lingering from an earlier use ({}{owner}, no socket holds it, freed in about {} s)",
            share_words(e.share),
            e.expires.max(0)
        )
    } else {
        format!(
            "it is in use by {} socket(s) ({}{owner})",
            e.users,
            share_words(e.share)
        )
    }
}

/// Explains a refusal of IPV6_FLOWLABEL_MGR GET for `req`.
pub fn explain_lease(errno: i32, req: &LeaseRequest, facts: &LeaseFacts) -> Refusal {
    let l = req.label;
    let explanation = match errno {
        libc::EPERM => explain_eperm(req, facts),
        libc::EEXIST => format!(
            "label {l} already exists in this network namespace and --fresh (IPV6_FL_F_EXCL) asked for a label nobody has{}. \
             Choose another label, wait until it is freed, or drop --fresh to share it.",
            facts.entry.map(|e| format!("; {}", entry_words(&e))).unwrap_or_default()
        ),
        libc::ENOENT => format!(
            "label {l} does not exist and --join (no IPV6_FL_F_CREATE) only joins an existing label. \
             Drop --join to create it, or start the sender that owns it first."
        ),
        libc::ERANGE => format!(
            "net.ipv6.flowlabel_state_ranges is {} so labels 0x80000-0xfffff are reserved for stateless \
             (automatic) labels and cannot be leased; label {l} is in that range. Pick a label below 0x80000, \
             or allow the whole range with `sysctl -w net.ipv6.flowlabel_state_ranges=0`.",
            facts.state_ranges.unwrap_or(1)
        ),
        libc::ENOBUFS => "the kernel's flow-label table is full: it holds at most 8192 labels, and without \
             CAP_NET_ADMIN at most 32 per socket and 3/4 of the table (half of that per network namespace). \
             Wait for lingering labels to expire (see /proc/net/ip6_flowlabel), release labels you hold, \
             or run with CAP_NET_ADMIN."
            .to_string(),
        libc::EINVAL => format!(
            "the request is malformed for the kernel: the destination must not be :: or an IPv4-mapped \
             address, the share mode must be one of excl, process, user, any (asked: {}), and the label \
             must fit in 20 bits (asked: {l}). Check --to and --share.",
            req.share.name()
        ),
        libc::ENOMEM => "the kernel ran out of memory for the label; retry later.".to_string(),
        _ => format!("unexpected error {}", io::Error::from_raw_os_error(errno)),
    };
    Refusal {
        operation: format!("to lease flow label {l}"),
        errno,
        errno_name: errno_name(errno),
        explanation,
    }
}

fn explain_eperm(req: &LeaseRequest, f: &LeaseFacts) -> String {
    let l = req.label;
    if (req.linger > MAX_UNPRIVILEGED_LINGER || req.expires > MAX_UNPRIVILEGED_LINGER)
        && !f.net_admin
    {
        return format!(
            "a linger or expiry above {MAX_UNPRIVILEGED_LINGER} s (asked: linger {} s, expires {} s) needs CAP_NET_ADMIN. \
             Use --linger/--expires of at most {MAX_UNPRIVILEGED_LINGER}, or run with CAP_NET_ADMIN.",
            req.linger, req.expires
        );
    }
    match f.entry {
        Some(e) if Share::from_raw(e.share) == Some(Share::Excl) => format!(
            "label {l} is taken exclusively: {}. An exclusive label (share excl) can be held by one socket only, \
             and after it is released it lingers for its linger time. Wait {} s, choose another label, \
             or use --share user/any on both runs so a later run may join it.",
            entry_words(&e),
            e.expires.max(e.linger).max(1)
        ),
        Some(e) if e.share != req.share.raw() => format!(
            "label {l} exists with a different share mode: {}; you asked for share mode {}. \
             Use --share {} to join it, or choose another label.",
            entry_words(&e),
            req.share.name(),
            Share::from_raw(e.share).map(Share::name).unwrap_or("?")
        ),
        Some(e)
            if Share::from_raw(e.share) == Some(Share::Process) && e.owner != i64::from(f.pid) =>
        {
            format!(
                "label {l} belongs to another process: {}. A share-process label can be joined only by sockets \
             of the process that created it. Wait until it is freed or choose another label.",
                entry_words(&e)
            )
        }
        Some(e) if Share::from_raw(e.share) == Some(Share::User) => format!(
            "label {l} belongs to another user: {}. A share-user label can be joined only by the same user. \
             Run as that user, wait until it is freed, or choose another label.",
            entry_words(&e)
        ),
        Some(e) => format!(
            "label {l} exists ({}) and may not be shared with this socket.",
            entry_words(&e)
        ),
        None => format!(
            "one of three causes: (1) label {l} is still lingering from an earlier run, or held by another \
             socket, with share mode excl (wait its linger time, default 6 s, or choose another label); \
             (2) it exists with another share mode or owner than --share {} asks; (3) a linger or expiry \
             above {MAX_UNPRIVILEGED_LINGER} s without CAP_NET_ADMIN. See /proc/net/ip6_flowlabel.",
            req.share.name()
        ),
    }
}

/// Explains a refusal of a send/connect that carries a leased label in `sin6_flowinfo`.
pub fn explain_send(errno: i32, label: FlowLabel, operation: &str) -> Refusal {
    let explanation = match errno {
        libc::EINVAL => format!(
            "the socket holds no lease for the label in sin6_flowinfo (the kernel looked up the label it read \
             there and found none). flowpol leased {label} and writes it in network byte order; a label written \
             in host order (rust-lang/rust#101605) or a lease released too early gives this error."
        ),
        _ => format!("{}", io::Error::from_raw_os_error(errno)),
    };
    Refusal {
        operation: format!("{operation} with flow label {label}"),
        errno,
        errno_name: errno_name(errno),
        explanation,
    }
}

/// Explains a refusal to release (PUT) a lease.
pub fn explain_release(errno: i32, label: FlowLabel) -> Refusal {
    let explanation = match errno {
        libc::ESRCH => "this socket holds no lease for that label (already released?).".to_string(),
        _ => format!("{}", io::Error::from_raw_os_error(errno)),
    };
    Refusal {
        operation: format!("to release flow label {label}"),
        errno,
        errno_name: errno_name(errno),
        explanation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "Label S Owner  Users  Linger Expires  Dst                              Opt\n\
                         12345 1 0      0      60     57       fd00:1::2                        0   \n\
                         00ABC 2 4242   1      6      6        fd00:1::2                        0   \n";

    fn req(label: u32, share: Share, linger: u16) -> LeaseRequest {
        LeaseRequest {
            label: FlowLabel::new(label.into()).unwrap(),
            share,
            linger,
            expires: 0,
            create: true,
            exclusive_create: false,
        }
    }

    fn facts(entry: Option<LabelEntry>, net_admin: bool) -> LeaseFacts {
        LeaseFacts {
            net_admin,
            state_ranges: Some(1),
            entry,
            pid: 1,
        }
    }

    #[test]
    fn an_io_error_prints_its_cause_once() {
        let e = SendError::io(
            "connecting to fd00::2",
            io::Error::new(io::ErrorKind::TimedOut, "timed out"),
        );
        assert_eq!(
            format!("{:#}", anyhow::Error::new(e)),
            "connecting to fd00::2: timed out"
        );
        let e = SendError::io(
            "sending to fd00::2",
            io::Error::from_raw_os_error(libc::ENETUNREACH),
        );
        let text = format!("{:#}", anyhow::Error::new(e).context("send"));
        assert_eq!(text.matches("Network is unreachable").count(), 1, "{text}");
    }

    #[test]
    fn parses_proc_table() {
        let t = parse_label_table(TABLE);
        assert_eq!(t.len(), 2);
        assert_eq!(
            t[0],
            LabelEntry {
                label: 0x12345,
                share: 1,
                owner: 0,
                users: 0,
                linger: 60,
                expires: 57
            }
        );
        assert_eq!(t[1].label, 0xabc);
        assert_eq!(t[1].owner, 4242);
    }

    #[test]
    fn eperm_lingering_exclusive() {
        let e = parse_label_table(TABLE)[0];
        let r = explain_lease(
            libc::EPERM,
            &req(0x12345, Share::Excl, 6),
            &facts(Some(e), true),
        );
        assert_eq!(r.errno_name, "EPERM");
        let s = r.to_string();
        assert!(s.contains("lingering from an earlier use"), "{s}");
        assert!(s.contains("freed in about 57 s"), "{s}");
        assert!(
            s.starts_with("the kernel refused to lease flow label 0x12345 (EPERM): "),
            "{s}"
        );
    }

    #[test]
    fn eperm_linger_needs_net_admin() {
        let r = explain_lease(
            libc::EPERM,
            &req(0x1, Share::Excl, 200),
            &facts(None, false),
        );
        assert!(
            r.explanation.contains("needs CAP_NET_ADMIN"),
            "{}",
            r.explanation
        );
    }

    #[test]
    fn eperm_share_mismatch_and_other_process() {
        let e = parse_label_table(TABLE)[1];
        let r = explain_lease(
            libc::EPERM,
            &req(0xabc, Share::User, 6),
            &facts(Some(e), true),
        );
        assert!(
            r.explanation.contains("different share mode"),
            "{}",
            r.explanation
        );
        assert!(
            r.explanation.contains("--share process"),
            "{}",
            r.explanation
        );
        let r = explain_lease(
            libc::EPERM,
            &req(0xabc, Share::Process, 6),
            &facts(Some(e), true),
        );
        assert!(
            r.explanation.contains("another process"),
            "{}",
            r.explanation
        );
    }

    #[test]
    fn other_errnos_have_words() {
        for (errno, needle) in [
            (libc::ERANGE, "flowlabel_state_ranges"),
            (libc::EEXIST, "--fresh"),
            (libc::ENOENT, "--join"),
            (libc::ENOBUFS, "table is full"),
            (libc::EINVAL, "IPv4-mapped"),
        ] {
            let r = explain_lease(errno, &req(0x90000, Share::Excl, 6), &facts(None, true));
            assert!(r.explanation.contains(needle), "{errno}: {}", r.explanation);
            assert_ne!(r.errno_name, "errno");
        }
    }
}
