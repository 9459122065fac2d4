//! Descriptor and system-call helpers shared by every other `sys` module.

use std::ffi::CString;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd, RawFd};

use libc::{c_int, c_void, socklen_t};

/// Calls `libc::$fn($args)` and maps a return of `-1` to `io::Error::last_os_error()`.
///
/// The call is `unsafe`; the caller writes the `// SAFETY:` comment that says why its arguments
/// are valid, right above the macro use.
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        // SAFETY: the caller of `syscall!` states, at the call site, why the arguments are valid.
        let res = unsafe { libc::$fn($($arg),*) };
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}

/// `setsockopt(fd, level, name, &value, sizeof value)`. The value is passed mutably because the
/// kernel may write back through it (`IPV6_FLOWLABEL_MGR` GET with label 0 returns the label it
/// chose); for every other option the kernel only reads it.
///
/// `T` must be the plain-data type the option expects (`c_int`, a `repr(C)` struct); a pointer
/// inside it (as in `sock_fprog`) must stay valid for the call.
pub fn setsockopt<T>(fd: RawFd, level: c_int, name: c_int, value: &mut T) -> io::Result<()> {
    // SAFETY: `value` is a live, initialised, writable `T` of `size_of::<T>()` bytes for the
    // whole call; the kernel reads (and at most writes) that many bytes.
    syscall!(setsockopt(
        fd,
        level,
        name,
        (value as *mut T).cast::<c_void>(),
        size_of::<T>() as socklen_t,
    ))
    .map(drop)
}

/// `getsockopt(fd, level, name, &mut value, &mut len)`: `value` goes in (some options read it,
/// e.g. `IPV6_FLOWLABEL_MGR`) and is overwritten; returns the length the kernel wrote.
///
/// `T` must be plain data for which any bit pattern is a valid value (integers, arrays of them,
/// `repr(C)` structs of them).
pub fn getsockopt<T>(fd: RawFd, level: c_int, name: c_int, value: &mut T) -> io::Result<usize> {
    let mut len = size_of::<T>() as socklen_t;
    // SAFETY: `value` is a live writable `T` and `len` holds its size, so the kernel writes at
    // most `size_of::<T>()` bytes into it and writes the length back into `len`.
    syscall!(getsockopt(
        fd,
        level,
        name,
        (value as *mut T).cast::<c_void>(),
        &mut len,
    ))?;
    Ok(len as usize)
}

/// Sets an integer socket option.
pub fn set_int(fd: &impl AsRawFd, level: c_int, name: c_int, value: c_int) -> io::Result<()> {
    let mut v = value;
    setsockopt(fd.as_raw_fd(), level, name, &mut v)
}

/// The index of a network interface by name.
pub fn if_index(name: &str) -> io::Result<u32> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(i)
    }
}

/// A second descriptor for the same socket (for reading statistics while pnet owns the first).
pub fn dup(fd: &OwnedFd) -> io::Result<OwnedFd> {
    fd.try_clone()
}

/// Gives up ownership: the caller (pnet) closes it.
pub fn into_raw(fd: OwnedFd) -> RawFd {
    fd.into_raw_fd()
}

/// The socket's pending error (`SO_ERROR`, which reading clears), e.g. `ENETDOWN` after its
/// interface went down or away; `None` when there is none.
pub fn socket_error(fd: RawFd) -> io::Result<Option<io::Error>> {
    let mut err: c_int = 0;
    getsockopt(fd, libc::SOL_SOCKET, libc::SO_ERROR, &mut err)?;
    Ok((err != 0).then(|| io::Error::from_raw_os_error(err)))
}

/// Waits up to `timeout_ms` for the descriptor to become readable. Ok(false) on timeout or EINTR.
/// A pending socket error (e.g. `ENETDOWN` when the interface went down) is returned as the error.
pub fn poll_in(fd: RawFd, timeout_ms: i32) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN | libc::POLLERR,
        revents: 0,
    };
    // SAFETY: one valid, writable pollfd, count 1.
    let r = match syscall!(poll(&mut p, 1, timeout_ms)) {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(false),
        Err(e) => return Err(e),
    };
    if r > 0 && p.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
        if let Some(e) = socket_error(fd)? {
            return Err(e);
        }
        if p.revents & libc::POLLIN == 0 {
            return Err(io::Error::other("capture socket closed"));
        }
    }
    Ok(r > 0)
}
