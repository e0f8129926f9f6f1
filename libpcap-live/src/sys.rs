//! Thin, checked wrappers over the system calls PAL needs.

use libpcap_tools::bpf::{self, BpfProgram};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};

/// Lowers the scheduling weight of the calling thread by `nice` steps
/// (Linux: `setpriority(PRIO_PROCESS, gettid(), current + nice)`), so that a
/// thread on the critical path (the reading thread of the analyzer) keeps
/// its core when more threads than cores are busy. Raising priority is not
/// offered (it needs privileges and is never what a tool should do).
///
/// # Errors
/// The OS error of `getpriority`/`setpriority`; on other systems,
/// `Unsupported`.
pub fn lower_thread_priority(nice: i32) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid has no preconditions and cannot fail.
        let tid = unsafe { libc::gettid() };
        let who = libc::id_t::try_from(tid).map_err(|_| io::Error::other("negative thread id"))?;
        // getpriority can return -1 legitimately: clear errno first and check it after.
        // SAFETY: __errno_location returns a valid pointer to this thread's errno.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: PRIO_PROCESS with a thread id reads that thread's nice value only.
        let current = unsafe { libc::getpriority(libc::PRIO_PROCESS, who) };
        let err = io::Error::last_os_error();
        if current == -1 && err.raw_os_error().unwrap_or(0) != 0 {
            return Err(err);
        }
        let target = current.saturating_add(nice.max(0)).min(19);
        // SAFETY: PRIO_PROCESS with a thread id changes that thread's nice value only.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, who, target) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = nice;
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "thread priority",
        ))
    }
}

/// Turns a C return value into `io::Result`: negative means errno.
fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// The size of a memory page, in bytes.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions; it only reads a system value.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(v).ok().filter(|&v| v > 0).unwrap_or(4096)
}

/// Opens an `AF_PACKET`/`SOCK_RAW` socket with protocol 0: it receives
/// nothing until it is bound with a protocol ([`bind_packet`]).
///
/// # Errors
/// The OS error of `socket` (`EPERM` without root or `CAP_NET_RAW`).
pub fn packet_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket has no memory preconditions; the result is checked.
    let fd = cvt(unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: fd was just returned by socket and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `setsockopt(fd, level, name, value)` for a plain-data `value`.
fn setsockopt<T: Copy>(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    let len = libc::socklen_t::try_from(std::mem::size_of::<T>())
        .map_err(|_| io::Error::other("option too large"))?;
    // SAFETY: `value` points to `len` readable bytes for the duration of the
    // call; the kernel only reads them.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast::<libc::c_void>(),
            len,
        )
    })?;
    Ok(())
}

/// Reads a socket option into `out` (the kernel writes at most
/// `size_of::<T>()` bytes). Only for the integer-only structs below, for which
/// every bit pattern is a valid value.
fn getsockopt_into<T: Copy>(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    out: &mut T,
) -> io::Result<()> {
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<T>())
        .map_err(|_| io::Error::other("option too large"))?;
    // SAFETY: `out` points to `len` writable bytes; callers use only types
    // made of integers (any bytes the kernel writes form a valid value).
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (out as *mut T).cast::<libc::c_void>(),
            &mut len,
        )
    })?;
    Ok(())
}

/// Selects the ring version (`PACKET_VERSION`, TPACKET_V3).
///
/// # Errors
/// The OS error of `setsockopt`.
pub fn set_tpacket_v3(fd: &OwnedFd) -> io::Result<()> {
    let v = libc::tpacket_versions::TPACKET_V3 as libc::c_int;
    setsockopt(fd, libc::SOL_PACKET, libc::PACKET_VERSION, &v)
}

/// The geometry of a TPACKET_V3 receive ring (`struct tpacket_req3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingRequest {
    /// Bytes per block (a power of two, a multiple of the page size).
    pub block_size: u32,
    /// Number of blocks.
    pub block_count: u32,
    /// Frame size (multiple of 16; in TPACKET_V3 it only sets the frame count).
    pub frame_size: u32,
    /// Milliseconds after which the kernel hands a partly filled block to
    /// userspace (0: the kernel chooses).
    pub block_timeout_ms: u32,
}

/// Creates the receive ring (`PACKET_RX_RING`) and maps it.
///
/// # Errors
/// The OS error of `setsockopt` (`EINVAL` for a geometry the kernel refuses)
/// or `mmap`.
pub fn rx_ring(fd: &OwnedFd, req: RingRequest) -> io::Result<RxRing> {
    let frames_per_block = req.block_size.checked_div(req.frame_size).unwrap_or(0);
    let frame_nr = frames_per_block
        .checked_mul(req.block_count)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "too many frames"))?;
    let r = libc::tpacket_req3 {
        tp_block_size: req.block_size,
        tp_block_nr: req.block_count,
        tp_frame_size: req.frame_size,
        tp_frame_nr: frame_nr,
        tp_retire_blk_tov: req.block_timeout_ms,
        tp_sizeof_priv: 0,
        tp_feature_req_word: 0,
    };
    setsockopt(fd, libc::SOL_PACKET, libc::PACKET_RX_RING, &r)?;
    let block_size = req.block_size as usize;
    let blocks = req.block_count as usize;
    let len = block_size
        .checked_mul(blocks)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "ring too large"))?;
    // SAFETY: a fresh shared mapping of the socket's ring, whose size is the
    // one just configured; the result is checked against MAP_FAILED.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(RxRing {
        ptr: ptr.cast::<u8>(),
        len,
        block_size,
        blocks,
    })
}

/// Offset of `block_status` in `struct tpacket_block_desc`
/// (`version`, `offset_to_priv`, then `tpacket_hdr_v1.block_status`).
pub const BLOCK_STATUS_OFFSET: usize = 8;

/// A TPACKET_V3 receive ring mapped in memory: `blocks` blocks of
/// `block_size` bytes, each owned by the kernel (status `TP_STATUS_KERNEL`)
/// or by userspace (`TP_STATUS_USER`) until given back with
/// [`RxRing::release`].
///
/// Only blocks owned by userspace are ever read as bytes, and only through a
/// shared borrow of the ring; giving a block back takes `&mut self`, so no
/// borrow of its bytes survives the hand-over.
#[derive(Debug)]
pub struct RxRing {
    ptr: *mut u8,
    len: usize,
    block_size: usize,
    blocks: usize,
}

// SAFETY: the mapping is plain memory owned by this value; the kernel's side
// of the protocol does not depend on which thread reads it.
unsafe impl Send for RxRing {}

impl RxRing {
    /// Number of blocks.
    pub fn blocks(&self) -> usize {
        self.blocks
    }

    /// Bytes per block.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// The status word of block `i` (an atomic load with acquire ordering,
    /// which orders the reads of the block's bytes after it), or `None` for
    /// an index out of range.
    fn status(&self, i: usize) -> Option<&AtomicU32> {
        let off = i
            .checked_mul(self.block_size)?
            .checked_add(BLOCK_STATUS_OFFSET)?;
        if off.checked_add(4)? > self.len || i >= self.blocks {
            return None;
        }
        // SAFETY: `off + 4 <= len`, so the word is inside the mapping, which
        // lives as long as `self`; blocks start on page boundaries and the
        // offset is 8, so the word is 4-byte aligned; the kernel accesses it
        // concurrently, which is why it is only ever used as an atomic.
        Some(unsafe { AtomicU32::from_ptr(self.ptr.add(off).cast::<u32>()) })
    }

    /// The bytes of block `i` if userspace owns it (`TP_STATUS_USER`),
    /// else `None`.
    pub fn user_block(&self, i: usize) -> Option<&[u8]> {
        let st = self.status(i)?.load(Ordering::Acquire);
        if st & libc::TP_STATUS_USER == 0 {
            return None;
        }
        let start = i.checked_mul(self.block_size)?;
        if start.checked_add(self.block_size)? > self.len {
            return None;
        }
        // SAFETY: the range is inside the mapping (checked above), which lives
        // as long as `self`. The kernel set TP_STATUS_USER (read with acquire
        // ordering, so its writes to the block are visible) and does not write
        // the block again until `release` gives it back, which needs
        // `&mut self` and so cannot happen while this borrow lives.
        Some(unsafe { std::slice::from_raw_parts(self.ptr.add(start), self.block_size) })
    }

    /// Gives block `i` back to the kernel (`TP_STATUS_KERNEL`, release
    /// ordering: our reads of it are done before the kernel may reuse it).
    pub fn release(&mut self, i: usize) {
        if let Some(s) = self.status(i) {
            s.store(libc::TP_STATUS_KERNEL, Ordering::Release);
        }
    }
}

impl Drop for RxRing {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly the mapping made in `rx_ring`; no borrow
        // of it can outlive `self`.
        unsafe {
            libc::munmap(self.ptr.cast::<libc::c_void>(), self.len);
        }
    }
}

/// The index of the interface `name` in the network namespace of the
/// calling thread.
///
/// # Errors
/// `ENODEV` (`NotFound`) when there is no such interface, `InvalidInput` for
/// a name with a NUL byte.
pub fn interface_index(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in interface name"))?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(i)
}

/// The ARPHRD hardware type of interface `name` in the network namespace
/// of the calling thread (`SIOCGIFHWADDR` on a datagram socket; needs no
/// privilege).
///
/// # Errors
/// `ENODEV` when there is no such interface, `InvalidInput` for a name that
/// is too long or has a NUL byte, or the OS error of `socket`/`ioctl`.
pub fn interface_hwtype(name: &str) -> io::Result<u16> {
    let bytes = name.as_bytes();
    if bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "invalid interface name",
        ));
    }
    // SAFETY: ifreq is made of integers and a union of plain-data members;
    // all zeroes is a valid value of each.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: socket has no memory preconditions; the result is checked.
    let fd = cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: fd was just returned by socket and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `req` is a valid, NUL-terminated ifreq for the duration of the
    // call; SIOCGIFHWADDR writes only inside it.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req) })?;
    // SAFETY: SIOCGIFHWADDR succeeded, so the kernel filled `ifru_hwaddr`;
    // every member of the union is plain data.
    Ok(unsafe { req.ifr_ifru.ifru_hwaddr.sa_family })
}

/// Binds a packet socket to interface `ifindex` for every protocol
/// (`ETH_P_ALL`); from then on it receives that interface's frames.
///
/// # Errors
/// The OS error of `bind` (`ENETDOWN`, `ENODEV`...).
pub fn bind_packet(fd: &OwnedFd, ifindex: u32) -> io::Result<()> {
    let sll = sockaddr_ll(ifindex);
    let len = libc::socklen_t::try_from(std::mem::size_of::<libc::sockaddr_ll>())
        .map_err(|_| io::Error::other("sockaddr too large"))?;
    // SAFETY: `sll` is a valid sockaddr_ll of `len` bytes for the duration of the call.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast::<libc::sockaddr>(),
            len,
        )
    })?;
    Ok(())
}

fn sockaddr_ll(ifindex: u32) -> libc::sockaddr_ll {
    libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: (libc::ETH_P_ALL as u16).to_be(),
        sll_ifindex: libc::c_int::try_from(ifindex).unwrap_or(0),
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 0,
        sll_addr: [0; 8],
    }
}

/// The ARPHRD hardware type of the interface a packet socket is bound to
/// (`sll_hatype` of `getsockname`).
///
/// # Errors
/// The OS error of `getsockname`.
pub fn bound_hatype(fd: &OwnedFd) -> io::Result<u16> {
    let mut sll = sockaddr_ll(0);
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::sockaddr_ll>())
        .map_err(|_| io::Error::other("sockaddr too large"))?;
    // SAFETY: `sll` is writable for `len` bytes; the kernel writes at most that
    // and sockaddr_ll is made of integers only.
    cvt(unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            (&mut sll as *mut libc::sockaddr_ll).cast::<libc::sockaddr>(),
            &mut len,
        )
    })?;
    Ok(sll.sll_hatype)
}

/// Puts the interface in promiscuous mode for as long as the socket is open
/// (`PACKET_ADD_MEMBERSHIP` with `PACKET_MR_PROMISC`; the kernel counts the
/// members and undoes it when the socket closes).
///
/// # Errors
/// The OS error of `setsockopt`.
pub fn add_promiscuous(fd: &OwnedFd, ifindex: u32) -> io::Result<()> {
    let m = libc::packet_mreq {
        mr_ifindex: libc::c_int::try_from(ifindex).unwrap_or(0),
        mr_type: libc::PACKET_MR_PROMISC as u16,
        mr_alen: 0,
        mr_address: [0; 8],
    };
    setsockopt(fd, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &m)
}

/// Joins fanout group `id` (`PACKET_FANOUT` with `id | type_flags << 16`).
///
/// # Errors
/// The OS error of `setsockopt` (`EINVAL` for a group of another mode).
pub fn join_fanout(fd: &OwnedFd, id: u16, type_flags: u16) -> io::Result<()> {
    let v: u32 = u32::from(id) | (u32::from(type_flags) << 16);
    setsockopt(fd, libc::SOL_PACKET, libc::PACKET_FANOUT, &v)
}

/// The fanout group id of a socket (`getsockopt(PACKET_FANOUT)`, low 16 bits).
///
/// # Errors
/// The OS error of `getsockopt`.
pub fn fanout_id(fd: &OwnedFd) -> io::Result<u16> {
    let mut v: u32 = 0;
    getsockopt_into(fd, libc::SOL_PACKET, libc::PACKET_FANOUT, &mut v)?;
    Ok((v & 0xffff) as u16)
}

/// Kernel counters of a packet socket since the last call (`PACKET_STATISTICS`
/// resets them on every read): packets received (including the dropped ones),
/// packets dropped because the ring was full, and times the ring froze.
///
/// # Errors
/// The OS error of `getsockopt`.
pub fn packet_stats(fd: &OwnedFd) -> io::Result<(u32, u32, u32)> {
    let mut s = libc::tpacket_stats_v3 {
        tp_packets: 0,
        tp_drops: 0,
        tp_freeze_q_cnt: 0,
    };
    getsockopt_into(fd, libc::SOL_PACKET, libc::PACKET_STATISTICS, &mut s)?;
    Ok((s.tp_packets, s.tp_drops, s.tp_freeze_q_cnt))
}

/// The pending error of a socket (`SO_ERROR`, cleared by the read), if any.
///
/// # Errors
/// The OS error of `getsockopt`.
pub fn take_socket_error(fd: &OwnedFd) -> io::Result<Option<io::Error>> {
    let mut v: libc::c_int = 0;
    getsockopt_into(fd, libc::SOL_SOCKET, libc::SO_ERROR, &mut v)?;
    Ok((v != 0).then(|| io::Error::from_raw_os_error(v)))
}

/// Attaches a classic BPF program that drops every packet (`ret #0`).
///
/// # Errors
/// The OS error of `setsockopt`.
pub fn attach_drop_all_filter(fd: &OwnedFd) -> io::Result<()> {
    attach_instructions(
        fd,
        &mut [libc::sock_filter {
            code: bpf::op::RET | bpf::op::K,
            jt: 0,
            jf: 0,
            k: 0,
        }],
    )
}

/// The instructions of `prog` as the kernel receives them: as they are,
/// except that a constant return other than 0 becomes `0xFFFF_FFFF`.
///
/// A socket filter's return value is the number of bytes of the frame to
/// keep (0: drop it). For an `AF_PACKET` ring, `tpacket_rcv` cuts the
/// frame to that length before copying it into the ring. libpcap compiles
/// `ret #snaplen` (262144 here) for a match; the ring has its own limit
/// (the block size, [`crate::afpacket::LiveConfig::block_size`]), so
/// keeping the whole frame is the right answer: nothing is cut by the
/// filter that the ring would have kept. A return of `A` (never emitted by
/// libpcap's compiler) is kept as it is.
pub fn kernel_instructions(prog: &BpfProgram) -> Vec<libc::sock_filter> {
    prog.instructions()
        .iter()
        .map(|i| {
            let k = if i.code == bpf::op::RET | bpf::op::K && i.k != 0 {
                u32::MAX
            } else {
                i.k
            };
            libc::sock_filter {
                code: i.code,
                jt: i.jt,
                jf: i.jf,
                k,
            }
        })
        .collect()
}

/// Attaches the classic BPF program `prog` to the socket
/// (`SO_ATTACH_FILTER`), replacing the filter it had, if any, atomically:
/// every packet is seen either by the old filter or by the new one. A
/// constant non-zero return keeps the whole frame (see
/// [`kernel_instructions`]).
///
/// # Errors
/// The OS error of `setsockopt` (`EINVAL` for a program the kernel refuses,
/// `ENOMEM` when it is over `net.core.optmem_max`).
pub fn attach_filter(fd: &OwnedFd, prog: &BpfProgram) -> io::Result<()> {
    attach_instructions(fd, &mut kernel_instructions(prog))
}

/// `SO_ATTACH_FILTER` with the instructions `code`.
fn attach_instructions(fd: &OwnedFd, code: &mut [libc::sock_filter]) -> io::Result<()> {
    let len = u16::try_from(code.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "BPF program too long"))?;
    let fprog = libc::sock_fprog {
        len,
        filter: code.as_mut_ptr(),
    };
    // the kernel copies the program during the call; `code` outlives it
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog)
}

/// Removes the socket's BPF filter.
///
/// # Errors
/// The OS error of `setsockopt`.
pub fn detach_filter(fd: &OwnedFd) -> io::Result<()> {
    let v: libc::c_int = 0;
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_DETACH_FILTER, &v)
}

/// What [`poll_in`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Data (a block) is ready.
    Ready,
    /// The timeout passed.
    Timeout,
    /// A signal interrupted the wait.
    Interrupted,
    /// The socket reports an error or hang-up (`revents`).
    Error(i16),
}

/// Waits up to `timeout_ms` for the socket to be readable.
///
/// # Errors
/// The OS error of `poll`, other than `EINTR`.
pub fn poll_in(fd: &OwnedFd, timeout_ms: i32) -> io::Result<Readiness> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN | libc::POLLERR,
        revents: 0,
    };
    // SAFETY: one valid pollfd, borrowed mutably for the duration of the call.
    let r = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(Readiness::Interrupted);
        }
        return Err(e);
    }
    if r == 0 {
        return Ok(Readiness::Timeout);
    }
    if p.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
        return Ok(Readiness::Error(p.revents));
    }
    Ok(Readiness::Ready)
}

/// Sends one frame on a bound packet socket.
///
/// # Errors
/// The OS error of `send`.
pub fn send_frame(fd: &OwnedFd, frame: &[u8]) -> io::Result<usize> {
    // SAFETY: `frame` is readable for its length during the call.
    let n = unsafe {
        libc::send(
            fd.as_raw_fd(),
            frame.as_ptr().cast::<libc::c_void>(),
            frame.len(),
            0,
        )
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// Opens a netlink socket of family `protocol` (`NETLINK_NETFILTER` for
/// nfqueue) and binds it with a port id chosen by the kernel.
///
/// # Errors
/// The OS error of `socket` or `bind`.
pub fn netlink_socket(protocol: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket has no memory preconditions; the result is checked.
    let fd = cvt(unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            protocol,
        )
    })?;
    // SAFETY: fd was just returned by socket and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let sa = sockaddr_nl();
    let len = libc::socklen_t::try_from(std::mem::size_of::<libc::sockaddr_nl>())
        .map_err(|_| io::Error::other("sockaddr too large"))?;
    // SAFETY: `sa` is a valid sockaddr_nl of `len` bytes for the duration of the call.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_nl).cast::<libc::sockaddr>(),
            len,
        )
    })?;
    Ok(fd)
}

/// The address of the kernel (port id 0, no groups).
fn sockaddr_nl() -> libc::sockaddr_nl {
    // SAFETY: sockaddr_nl is made of integers only; all zeroes is a valid value.
    let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    sa
}

/// Sets the receive buffer of a socket to `bytes`, beyond `rmem_max` when
/// allowed (`SO_RCVBUFFORCE`, needs `CAP_NET_ADMIN`), else as far as
/// `rmem_max` lets (`SO_RCVBUF`).
///
/// # Errors
/// The OS error of `setsockopt(SO_RCVBUF)`.
pub fn set_receive_buffer(fd: &OwnedFd, bytes: u32) -> io::Result<()> {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    if setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &v).is_ok() {
        return Ok(());
    }
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &v)
}

/// Sends one netlink message to the kernel.
///
/// # Errors
/// The OS error of `sendto`, or a short send.
pub fn netlink_send(fd: &OwnedFd, msg: &[u8]) -> io::Result<()> {
    let sa = sockaddr_nl();
    let len = libc::socklen_t::try_from(std::mem::size_of::<libc::sockaddr_nl>())
        .map_err(|_| io::Error::other("sockaddr too large"))?;
    // SAFETY: `msg` is readable for its length and `sa` is a valid
    // sockaddr_nl of `len` bytes, both for the duration of the call.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            msg.as_ptr().cast::<libc::c_void>(),
            msg.len(),
            0,
            (&sa as *const libc::sockaddr_nl).cast::<libc::sockaddr>(),
            len,
        )
    };
    let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    if n != msg.len() {
        return Err(io::Error::other(format!("sent {n} of {} bytes", msg.len())));
    }
    Ok(())
}

/// Receives one datagram into `buf` without waiting: `Ok(None)` when none
/// is there, else its full length (`MSG_TRUNC`: more than `buf.len()` when
/// it did not fit and was cut).
///
/// # Errors
/// The OS error of `recv` (`ENOBUFS` when the kernel could not queue
/// messages for us because the receive buffer was full).
pub fn recv_nowait(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    // SAFETY: `buf` is writable for its length for the duration of the call;
    // the kernel writes at most that many bytes (MSG_TRUNC only changes the
    // returned length).
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast::<libc::c_void>(),
            buf.len(),
            libc::MSG_DONTWAIT | libc::MSG_TRUNC,
        )
    };
    match usize::try_from(n) {
        Ok(n) => Ok(Some(n)),
        Err(_) => {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
                _ => Err(e),
            }
        }
    }
}

/// Moves the calling thread into the network namespace at `path` (a file
/// such as `/run/netns/NAME`). Other threads keep theirs.
///
/// # Errors
/// Opening the file, or `setns` (`EPERM` without `CAP_SYS_ADMIN`).
pub fn enter_net_namespace(path: &std::path::Path) -> io::Result<()> {
    let f = std::fs::File::open(path)?;
    // SAFETY: `f` is an open namespace file for the duration of the call;
    // setns only changes the calling thread's network namespace.
    cvt(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) })?;
    Ok(())
}

/// Most open files [`raise_open_files_limit`] asks for.
pub const OPEN_FILES_WANTED: u64 = 1 << 16;

/// Raises the soft limit on open files (`RLIMIT_NOFILE`) towards the hard
/// one, up to [`OPEN_FILES_WANTED`]: the merges at the end of a long run
/// read many sorted runs at once, and the usual soft limit (1024) is far
/// below the hard one. Never lowers it. Gives the limits before and after
/// (soft).
///
/// # Errors
/// The OS error of `getrlimit`/`setrlimit`.
pub fn raise_open_files_limit() -> io::Result<(u64, u64)> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from)?;
    let want = hard.min(OPEN_FILES_WANTED);
    if soft >= want {
        return Ok((soft, soft));
    }
    setrlimit(Resource::RLIMIT_NOFILE, want, hard).map_err(io::Error::from)?;
    Ok((soft, want))
}

#[cfg(test)]
mod tests {
    use super::*;
    use libpcap_tools::bpf::{BpfInsn, op};

    #[test]
    fn kernel_programs_keep_whole_frames_on_a_match() {
        let p = BpfProgram::new(vec![
            BpfInsn::stmt(op::LD | op::H | op::ABS, 12),
            BpfInsn::jump(op::JMP | op::JEQ | op::K, 0x800, 0, 2),
            BpfInsn::stmt(op::RET | op::K, 262_144),
            BpfInsn::stmt(op::RET | op::A, 0),
            BpfInsn::stmt(op::RET | op::K, 0),
        ])
        .unwrap();
        let k = kernel_instructions(&p);
        let v: Vec<(u16, u8, u8, u32)> = k.iter().map(|i| (i.code, i.jt, i.jf, i.k)).collect();
        assert_eq!(
            v,
            vec![
                (0x28, 0, 0, 12),
                (0x15, 0, 2, 0x800),
                (0x06, 0, 0, u32::MAX),
                (0x16, 0, 0, 0),
                (0x06, 0, 0, 0),
            ]
        );
    }

    #[test]
    fn hardware_type_of_an_interface() {
        assert_eq!(interface_hwtype("lo").unwrap(), libc::ARPHRD_LOOPBACK);
        assert!(interface_hwtype("pal-nosuch0").is_err());
        assert!(interface_hwtype("a-name-much-too-long").is_err());
    }

    #[test]
    fn lowering_a_thread_leaves_the_others_alone() {
        // SAFETY: getpriority(PRIO_PROCESS, 0) reads the calling thread's nice value.
        let main_before = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let (lowered, before) = std::thread::spawn(|| {
            // SAFETY: as above, for this thread.
            let before = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
            lower_thread_priority(3).unwrap();
            // SAFETY: as above.
            let after = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
            (after, before)
        })
        .join()
        .unwrap();
        assert_eq!(lowered, (before + 3).min(19));
        // SAFETY: as above, for the test's own thread.
        let main_after = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        assert_eq!(main_after, main_before);
    }

    #[test]
    fn the_open_files_limit_is_raised_towards_the_hard_one_never_lowered() {
        use nix::sys::resource::{Resource, getrlimit};
        let (before, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        let (was, now) = raise_open_files_limit().unwrap();
        assert_eq!(was, before);
        assert!(now >= before, "{now} < {before}");
        assert!(now >= hard.min(OPEN_FILES_WANTED), "{now}, hard {hard}");
        assert_eq!(getrlimit(Resource::RLIMIT_NOFILE).unwrap(), (now, hard));
        // a second call changes nothing
        assert_eq!(raise_open_files_limit().unwrap(), (now, now));
    }
}
