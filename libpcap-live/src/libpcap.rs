//! libpcap's own filter compiler, loaded at run time.
//!
//! # Why libpcap's compiler
//!
//! A capture filter (`-f 'tcp port 80'`) must select exactly the packets
//! tcpdump selects. The expression language has decades of link-type
//! quirks (where the network header starts on each link type, how `vlan`
//! shifts later offsets, what `ip broadcast` means, the IPv6 and MPLS
//! corner cases), and libpcap's code generator *is* the definition. So PAL
//! does not compile expressions itself: [`Libpcap`] calls `pcap_compile`
//! and copies the classic BPF program it returns into a
//! [`BpfProgram`], which is then attached in the
//! kernel (`-i`) or run by `libpcap-tools`' interpreter (files, NFQUEUE).
//!
//! # Loading
//!
//! libpcap is opened with `dlopen` (through the `libloading` crate) when a
//! filter is first needed: the binaries build and run on a machine without
//! libpcap's headers or library, and only a filter then fails, with
//! [`FilterError::LibraryMissing`] naming the package to install
//! (Debian/Ubuntu `libpcap0.8`, Fedora/RHEL `libpcap`). The names tried are
//! `libpcap.so.1`, `libpcap.so.0.8` (Debian's name for the same ABI) and
//! `libpcap.so`; the environment variable `PAL_LIBPCAP` names the file to
//! use instead. Calls to `pcap_compile` are serialised by a process-wide
//! lock (libpcap before 1.8 had a global parser state).
//!
//! # Semantics
//!
//! - **Files** ([`FilterCompiler::compile`]): as `tcpdump -r`. The program
//!   is compiled on a savefile handle of the packets' link type: libpcap
//!   reads the header of an empty capture from memory (`fmemopen` +
//!   `pcap_fopen_offline`), so it maps the file's `LINKTYPE_*` value to its
//!   `DLT_*` value itself and applies its rules for savefiles (it refuses
//!   `inbound`/`outbound` where only the kernel knows the direction, as
//!   tcpdump does). Optimised, with netmask 0: tcpdump 4.99 passes 0 when
//!   it reads a file, so `ip broadcast` compiles and matches the
//!   destinations `0.0.0.0` and `255.255.255.255` only. `len`, `greater` and
//!   `less` compare the packet's original (wire) length. `vlan` looks for
//!   the 802.1Q/802.1ad tag in the frame bytes. One departure: link type
//!   14 (raw IP written by OpenBSD) is compiled as raw IP (101), as PAL
//!   decodes it; libpcap on Linux knows no link type 14.
//! - **Live capture** ([`Libpcap::compile_for_interface`]): the program
//!   tcpdump would attach on that interface: compiled on an activated
//!   handle (`pcap_create` + `pcap_activate`) with the interface's netmask
//!   (`pcap_lookupnet`, 0 when it has no IPv4 address). On Linux the kernel
//!   takes the VLAN tag out of a frame before socket filters run, and
//!   libpcap then generates `vlan` tests that read the tag from the
//!   kernel's ancillary data (`SKF_AD_VLAN_TAG*` loads), and direction
//!   tests (`inbound`) that read the packet type: such a program is meant
//!   for the kernel. When activation is not possible, the program is
//!   compiled on `pcap_open_dead` with the DLT of the interface's link type
//!   ([`dlt_of`], as libpcap's `linktype_to_dlt`), logged at debug level:
//!   VLAN-tagged traffic is then matched as in a file, which differs from
//!   what the kernel sees.
//!
//! ```no_run
//! use libpcap_live::libpcap::Libpcap;
//! use libpcap_tools::{FilterCompiler, LinkType};
//! let pcap = Libpcap::load()?;
//! let prog = pcap.compile(LinkType::ETHERNET, "udp port 53")?;
//! assert!(prog.len() > 1);
//! # Ok::<(), libpcap_tools::FilterError>(())
//! ```

use libpcap_tools::bpf::{BpfInsn, BpfProgram, MAX_INSNS};
use libpcap_tools::{FilterCompiler, FilterError, LinkType};
use std::ffi::{CStr, CString, c_char, c_int, c_uint};
use std::fmt;
use std::sync::Mutex;

/// The snapshot length given to libpcap: its `MAXIMUM_SNAPLEN`, the value
/// of the `ret` of a match.
pub const SNAPLEN: c_int = 262_144;

/// The library names tried, in order, when `PAL_LIBPCAP` is not set.
pub const LIBRARY_NAMES: [&str; 3] = ["libpcap.so.1", "libpcap.so.0.8", "libpcap.so"];

/// The environment variable naming the libpcap file to load.
pub const LIBRARY_ENV: &str = "PAL_LIBPCAP";

/// `PCAP_ERRBUF_SIZE`.
const ERRBUF_SIZE: usize = 256;

/// `DLT_RAW` on Linux (and every system but OpenBSD, where it is 14).
pub const DLT_RAW: i32 = 12;

/// Serialises the calls into libpcap's compiler in this process.
static COMPILE: Mutex<()> = Mutex::new(());

/// `pcap_t`, opaque.
#[repr(C)]
struct PcapT {
    _private: [u8; 0],
}

/// `struct bpf_insn`.
#[repr(C)]
#[derive(Clone, Copy)]
struct CInsn {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

/// `struct bpf_program`.
#[repr(C)]
struct CProgram {
    bf_len: c_uint,
    bf_insns: *mut CInsn,
}

type OpenDead = unsafe extern "C" fn(c_int, c_int) -> *mut PcapT;
type FopenOffline = unsafe extern "C" fn(*mut libc::FILE, *mut c_char) -> *mut PcapT;
type Compile = unsafe extern "C" fn(*mut PcapT, *mut CProgram, *const c_char, c_int, u32) -> c_int;
type GetErr = unsafe extern "C" fn(*mut PcapT) -> *mut c_char;
type FreeCode = unsafe extern "C" fn(*mut CProgram);
type Close = unsafe extern "C" fn(*mut PcapT);
type LibVersion = unsafe extern "C" fn() -> *const c_char;
type Create = unsafe extern "C" fn(*const c_char, *mut c_char) -> *mut PcapT;
type SetSnaplen = unsafe extern "C" fn(*mut PcapT, c_int) -> c_int;
type Activate = unsafe extern "C" fn(*mut PcapT) -> c_int;
type Datalink = unsafe extern "C" fn(*mut PcapT) -> c_int;
type LookupNet = unsafe extern "C" fn(*const c_char, *mut u32, *mut u32, *mut c_char) -> c_int;

/// The libpcap library, loaded, with the functions PAL calls (see the
/// [module docs](self)).
pub struct Libpcap {
    /// Where it was loaded from.
    path: String,
    open_dead: OpenDead,
    fopen_offline: FopenOffline,
    compile: Compile,
    geterr: GetErr,
    freecode: FreeCode,
    close: Close,
    lib_version: LibVersion,
    create: Create,
    set_snaplen: SetSnaplen,
    activate: Activate,
    datalink: Datalink,
    lookupnet: LookupNet,
    /// Keeps the library mapped for as long as the function pointers above
    /// may be called: declared last, so dropped last.
    _lib: libloading::Library,
}

impl fmt::Debug for Libpcap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Libpcap")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// The `LINKTYPE_*` value of a capture file mapped to libpcap's `DLT_*`
/// value on Linux, as libpcap's `linktype_to_dlt` does: the values 104 and
/// above are the same, and so are those below 100 (`NULL` 0, `ETHERNET` 1,
/// `PPP` 9, `PPP_HDLC` 50…); `ATM_RFC1483` 100 is DLT 11, `RAW` 101 is
/// `DLT_RAW` (12), `SLIP_BSDOS` 102 is 15, `PPP_BSDOS` 103 is 16.
///
/// One departure: `LINKTYPE` 14 (raw IP as written by OpenBSD, where
/// `DLT_RAW` is 14) is read as raw IP ([`DLT_RAW`]), as PAL's decoders do;
/// libpcap on Linux knows no link type 14. `None` for a value libpcap
/// cannot take (over `i32::MAX`).
pub fn dlt_of(linktype: LinkType) -> Option<i32> {
    Some(match linktype.0 {
        100 => 11,
        101 | 14 => DLT_RAW,
        102 => 15,
        103 => 16,
        v => i32::try_from(v).ok()?,
    })
}

/// An error and its sources, `: `-separated (libloading's `dlopen failed`
/// keeps the loader's reason in its source).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The text of a C string owned by libpcap, or a placeholder for NULL.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string valid for the call.
unsafe fn text(p: *const c_char) -> String {
    if p.is_null() {
        return "(no message)".to_string();
    }
    // SAFETY: the caller guarantees a valid NUL-terminated string.
    unsafe { CStr::from_ptr(p) }
        .to_string_lossy()
        .trim()
        .to_string()
}

/// A `pcap_t` closed on drop.
struct Handle<'a> {
    pcap: &'a Libpcap,
    p: *mut PcapT,
    /// The bytes a savefile handle reads (through `fmemopen`): freed only
    /// after `pcap_close` closed the stream, since fields drop after
    /// `Drop::drop`.
    _file: Option<Box<[u8]>>,
}

impl Drop for Handle<'_> {
    fn drop(&mut self) {
        // SAFETY: `p` is a non-NULL handle from pcap_open_dead,
        // pcap_fopen_offline or pcap_create, closed only here (which also
        // closes a savefile handle's stream, before its bytes are freed).
        unsafe { (self.pcap.close)(self.p) };
    }
}

/// The 24-byte header of a little-endian classic pcap file of link type
/// `linktype` and snapshot length [`SNAPLEN`], without packets.
fn pcap_header(linktype: u32) -> [u8; 24] {
    let mut h = [0u8; 24];
    h[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    h[4..6].copy_from_slice(&2u16.to_le_bytes());
    h[6..8].copy_from_slice(&4u16.to_le_bytes());
    h[16..20].copy_from_slice(&(SNAPLEN as u32).to_le_bytes());
    h[20..24].copy_from_slice(&linktype.to_le_bytes());
    h
}

impl Libpcap {
    /// Loads libpcap: the file named by `PAL_LIBPCAP` if set, else the
    /// first of [`LIBRARY_NAMES`] the dynamic loader finds.
    ///
    /// # Errors
    /// [`FilterError::LibraryMissing`] naming what was tried, and the
    /// packages to install.
    pub fn load() -> Result<Libpcap, FilterError> {
        match std::env::var_os(LIBRARY_ENV).filter(|v| !v.is_empty()) {
            Some(p) => Self::open_first(&[p], &format!("{LIBRARY_ENV} is set")),
            None => Self::open_first(
                &LIBRARY_NAMES.map(std::ffi::OsString::from),
                "no library found",
            ),
        }
    }

    /// Loads libpcap from `path` (a file, or a name for the dynamic loader).
    ///
    /// # Errors
    /// [`FilterError::LibraryMissing`] as for [`Libpcap::load`].
    pub fn load_from(path: impl AsRef<std::ffi::OsStr>) -> Result<Libpcap, FilterError> {
        Self::open_first(&[path.as_ref().to_os_string()], "not loadable")
    }

    /// The first of `names` that loads.
    fn open_first(names: &[std::ffi::OsString], how: &str) -> Result<Libpcap, FilterError> {
        let mut tried = Vec::new();
        for name in names {
            // SAFETY: loading libpcap runs its initialisers, which have no
            // preconditions; the library is a C library with no Rust
            // invariants to break.
            match unsafe { libloading::Library::new(name) } {
                Ok(lib) => return Self::from_library(lib, name.to_string_lossy().into_owned()),
                Err(e) => tried.push(format!("{}: {}", name.to_string_lossy(), chain(&e))),
            }
        }
        Err(FilterError::LibraryMissing {
            reason: format!("{how}; tried {}", tried.join("; ")),
        })
    }

    fn from_library(lib: libloading::Library, path: String) -> Result<Libpcap, FilterError> {
        let missing = |name: &str, e: libloading::Error| FilterError::LibraryMissing {
            reason: format!(
                "{path} has no function {name} ({}): libpcap 1.0 or later is needed",
                chain(&e)
            ),
        };
        macro_rules! sym {
            ($name:literal, $ty:ty) => {
                // SAFETY: the symbol is libpcap's function of that name,
                // whose C signature `$ty` transcribes (pcap/pcap.h); the
                // pointer is used only while `lib`, stored beside it, lives.
                *unsafe { lib.get::<$ty>(concat!($name, "\0").as_bytes()) }
                    .map_err(|e| missing($name, e))?
            };
        }
        Ok(Libpcap {
            open_dead: sym!("pcap_open_dead", OpenDead),
            fopen_offline: sym!("pcap_fopen_offline", FopenOffline),
            compile: sym!("pcap_compile", Compile),
            geterr: sym!("pcap_geterr", GetErr),
            freecode: sym!("pcap_freecode", FreeCode),
            close: sym!("pcap_close", Close),
            lib_version: sym!("pcap_lib_version", LibVersion),
            create: sym!("pcap_create", Create),
            set_snaplen: sym!("pcap_set_snaplen", SetSnaplen),
            activate: sym!("pcap_activate", Activate),
            datalink: sym!("pcap_datalink", Datalink),
            lookupnet: sym!("pcap_lookupnet", LookupNet),
            path,
            _lib: lib,
        })
    }

    /// The library's version string (`pcap_lib_version`), e.g.
    /// `libpcap version 1.10.3 (with TPACKET_V3)`.
    pub fn version(&self) -> String {
        // SAFETY: pcap_lib_version takes nothing and returns a static string.
        unsafe { text((self.lib_version)()) }
    }

    /// The file or name the library was loaded from.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// A handle from `pcap_open_dead` for `dlt`.
    fn open_dead(&self, dlt: i32) -> Result<Handle<'_>, FilterError> {
        // SAFETY: pcap_open_dead only allocates; any int is accepted.
        let p = unsafe { (self.open_dead)(dlt, SNAPLEN) };
        if p.is_null() {
            return Err(FilterError::Library(
                "pcap_open_dead failed (out of memory)".into(),
            ));
        }
        Ok(Handle {
            pcap: self,
            p,
            _file: None,
        })
    }

    /// A savefile handle of link type `linktype`, as `tcpdump -r` has: libpcap
    /// reads the header of an empty capture from memory (`fmemopen` +
    /// `pcap_fopen_offline`), maps the `LINKTYPE_*` value to its `DLT_*`
    /// value itself, and applies its savefile rules when compiling.
    fn open_savefile(&self, linktype: LinkType) -> Result<Handle<'_>, FilterError> {
        // LINKTYPE 14 is raw IP for PAL (see `dlt_of`); libpcap would not
        // know it; values past 26 bits would be cut by libpcap's
        // LT_LINKTYPE mask
        let lt = match linktype.0 {
            14 => 101,
            v if v > 0x03ff_ffff => {
                return Err(FilterError::UnsupportedLinkType {
                    linktype,
                    message: "not a link type libpcap can take".into(),
                });
            }
            v => v,
        };
        let mut bytes: Box<[u8]> = Box::new(pcap_header(lt));
        // SAFETY: `bytes` is valid for its length and outlives the stream
        // (kept in the handle, freed after pcap_close closes the stream);
        // the mode is a NUL-terminated string.
        let file = unsafe {
            libc::fmemopen(
                bytes.as_mut_ptr().cast::<libc::c_void>(),
                bytes.len(),
                c"r".as_ptr(),
            )
        };
        if file.is_null() {
            return Err(FilterError::Library(format!(
                "fmemopen: {}",
                std::io::Error::last_os_error()
            )));
        }
        let mut errbuf = [0 as c_char; ERRBUF_SIZE];
        // SAFETY: `file` is an open stream; `errbuf` has PCAP_ERRBUF_SIZE
        // bytes. On success libpcap owns the stream.
        let p = unsafe { (self.fopen_offline)(file, errbuf.as_mut_ptr()) };
        if p.is_null() {
            // SAFETY: on failure the stream is still ours, closed once here;
            // errbuf holds a NUL-terminated message (zeroed first).
            let message = unsafe {
                libc::fclose(file);
                text(errbuf.as_ptr())
            };
            return Err(FilterError::UnsupportedLinkType { linktype, message });
        }
        Ok(Handle {
            pcap: self,
            p,
            _file: Some(bytes),
        })
    }

    /// `pcap_compile` on `h`: the program, or libpcap's message.
    fn compile_on(
        &self,
        h: &Handle<'_>,
        expr: &CStr,
        netmask: u32,
    ) -> Result<Result<BpfProgram, String>, FilterError> {
        let mut prog = CProgram {
            bf_len: 0,
            bf_insns: std::ptr::null_mut(),
        };
        let rc = {
            let _lock = COMPILE.lock().unwrap_or_else(|e| e.into_inner());
            // SAFETY: `h.p` is a live handle, `prog` a writable bpf_program,
            // `expr` a NUL-terminated string; all outlive the call.
            unsafe { (self.compile)(h.p, &mut prog, expr.as_ptr(), 1, netmask) }
        };
        if rc != 0 {
            // SAFETY: pcap_geterr returns the handle's error buffer, valid
            // until the next call on the handle; it is copied at once.
            return Ok(Err(unsafe { text((self.geterr)(h.p)) }));
        }
        let len = prog.bf_len as usize;
        let insns = if prog.bf_insns.is_null() || len == 0 || len > MAX_INSNS {
            Vec::new()
        } else {
            // SAFETY: after a successful pcap_compile, `bf_insns` points to
            // `bf_len` instructions owned by `prog` until pcap_freecode;
            // they are copied before it.
            unsafe { std::slice::from_raw_parts(prog.bf_insns, len) }
                .iter()
                .map(|i| BpfInsn::new(i.code, i.jt, i.jf, i.k))
                .collect()
        };
        // SAFETY: `prog` was filled by a successful pcap_compile and is
        // freed once.
        unsafe { (self.freecode)(&mut prog) };
        if insns.is_empty() && len > 0 && len <= MAX_INSNS {
            return Err(FilterError::Library(
                "pcap_compile returned no instructions".into(),
            ));
        }
        Ok(Ok(BpfProgram::new(insns).map_err(FilterError::from)?))
    }

    /// Compiles `expr` on handle `h` for `linktype`, telling a link type
    /// libpcap cannot filter at all (even the empty expression fails) from
    /// a bad expression.
    fn compile_typed(
        &self,
        h: &Handle<'_>,
        linktype: LinkType,
        expr: &str,
        netmask: u32,
    ) -> Result<BpfProgram, FilterError> {
        let bad = |message: String| FilterError::Expression {
            expr: expr.to_string(),
            linktype,
            message,
        };
        let c = CString::new(expr).map_err(|_| bad("NUL byte in the expression".into()))?;
        match self.compile_on(h, &c, netmask)? {
            Ok(p) => Ok(p),
            Err(message) => match self.compile_on(h, c"", netmask)? {
                Ok(_) => Err(bad(message)),
                Err(_) => Err(FilterError::UnsupportedLinkType { linktype, message }),
            },
        }
    }

    /// The program tcpdump would attach on the live interface `iface` (in
    /// the network namespace of the calling thread) for `expr`: see the
    /// [module docs](self). Needs the right to open packet sockets for the
    /// exact program; without it, or when libpcap cannot activate the
    /// interface, the program is compiled as for a file of the interface's
    /// link type.
    ///
    /// # Errors
    /// As [`FilterCompiler::compile`]; [`FilterError::Interface`] when
    /// there is no such interface or it has a hardware type live capture
    /// does not support.
    pub fn compile_for_interface(
        &self,
        iface: &str,
        expr: &str,
    ) -> Result<BpfProgram, FilterError> {
        let bad_iface = |reason: String| FilterError::Interface {
            interface: iface.to_string(),
            reason,
        };
        let hatype = crate::sys::interface_hwtype(iface).map_err(|e| bad_iface(e.to_string()))?;
        let linktype = crate::afpacket::linktype_of(hatype).ok_or_else(|| {
            bad_iface(format!(
                "hardware type {hatype} (ARPHRD), which live capture does not support"
            ))
        })?;
        let dlt = dlt_of(linktype).unwrap_or(1);
        let name = CString::new(iface).map_err(|_| bad_iface("NUL in the name".into()))?;
        match self.activate(&name, dlt) {
            Ok(h) => {
                let netmask = self.netmask(&name);
                self.compile_typed(&h, linktype, expr, netmask)
            }
            Err(why) => {
                log::debug!(
                    "{iface}: libpcap cannot activate the interface ({why}); the filter is \
                     compiled as for a capture file of link type {linktype} (VLAN tests then look \
                     into the frame bytes, where the kernel no longer has the tag)"
                );
                // as libpcap compiles for a live handle it could not
                // activate: direction and interface tests stay kernel tests
                let h = self.open_dead(dlt)?;
                self.compile_typed(&h, linktype, expr, 0)
            }
        }
    }

    /// `pcap_create` + `pcap_activate` on `iface`, checked to have the data
    /// link type `dlt` we capture with.
    fn activate(&self, iface: &CStr, dlt: i32) -> Result<Handle<'_>, String> {
        let mut errbuf = [0 as c_char; ERRBUF_SIZE];
        // SAFETY: `iface` is NUL-terminated and `errbuf` has
        // PCAP_ERRBUF_SIZE bytes, as pcap_create requires.
        let p = unsafe { (self.create)(iface.as_ptr(), errbuf.as_mut_ptr()) };
        if p.is_null() {
            // SAFETY: pcap_create wrote a NUL-terminated message into errbuf
            // (zeroed first, so it is terminated in any case).
            return Err(unsafe { text(errbuf.as_ptr()) });
        }
        let h = Handle {
            pcap: self,
            p,
            _file: None,
        };
        // SAFETY: `h.p` is a live, not yet activated handle.
        let _ = unsafe { (self.set_snaplen)(h.p, SNAPLEN) };
        // SAFETY: as above.
        let rc = unsafe { (self.activate)(h.p) };
        if rc < 0 {
            // SAFETY: the handle's error buffer, copied at once.
            return Err(format!("pcap_activate: {}", unsafe {
                text((self.geterr)(h.p))
            }));
        }
        // SAFETY: `h.p` is an activated handle.
        let got = unsafe { (self.datalink)(h.p) };
        if got != dlt {
            return Err(format!(
                "libpcap captures it as DLT {got}, PAL as DLT {dlt}"
            ));
        }
        Ok(h)
    }

    /// The IPv4 netmask of `iface` (`pcap_lookupnet`), or 0 when it has
    /// none, as tcpdump does.
    fn netmask(&self, iface: &CStr) -> u32 {
        let (mut net, mut mask) = (0u32, 0u32);
        let mut errbuf = [0 as c_char; ERRBUF_SIZE];
        // SAFETY: `iface` is NUL-terminated, `net`/`mask` are writable and
        // `errbuf` has PCAP_ERRBUF_SIZE bytes.
        let rc =
            unsafe { (self.lookupnet)(iface.as_ptr(), &mut net, &mut mask, errbuf.as_mut_ptr()) };
        if rc < 0 {
            // SAFETY: pcap_lookupnet wrote a NUL-terminated message.
            log::debug!("pcap_lookupnet: {}; netmask 0", unsafe {
                text(errbuf.as_ptr())
            });
            return 0;
        }
        mask
    }
}

impl FilterCompiler for Libpcap {
    /// Compiles `expr` as `tcpdump -r` does for a file of link type
    /// `linktype` (see the [module docs](self)).
    fn compile(&self, linktype: LinkType, expr: &str) -> Result<BpfProgram, FilterError> {
        let h = self.open_savefile(linktype)?;
        self.compile_typed(&h, linktype, expr, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// libpcap, or `None` after printing a SKIP line.
    fn pcap(test: &str) -> Option<Libpcap> {
        match Libpcap::load() {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("SKIP {test}: {e}");
                None
            }
        }
    }

    #[test]
    fn a_missing_library_names_the_package_to_install() {
        let e = Libpcap::load_from("/nonexistent/libpcap.so").unwrap_err();
        assert!(matches!(e, FilterError::LibraryMissing { .. }), "{e:?}");
        let m = e.to_string();
        for part in [
            "/nonexistent/libpcap.so",
            "libpcap0.8",
            "dnf install libpcap",
            "PAL_LIBPCAP",
        ] {
            assert!(m.contains(part), "{part} not in {m}");
        }
        // a library that is not libpcap lacks its functions
        let e = Libpcap::load_from("libc.so.6").unwrap_err();
        assert!(e.to_string().contains("pcap_open_dead"), "{e}");
    }

    #[test]
    fn link_types_map_to_dlts_as_in_libpcap() {
        for (lt, dlt) in [
            (0, 0),
            (1, 1),
            (9, 9),
            (10, 10),
            (12, 12),
            (14, 12),
            (50, 50),
            (100, 11),
            (101, 12),
            (102, 15),
            (103, 16),
            (104, 104),
            (105, 105),
            (108, 108),
            (113, 113),
            (127, 127),
            (228, 228),
            (229, 229),
            (239, 239),
            (276, 276),
        ] {
            assert_eq!(dlt_of(LinkType(lt)), Some(dlt), "LINKTYPE {lt}");
        }
        assert_eq!(dlt_of(LinkType(u32::MAX)), None);
    }

    #[test]
    fn good_expressions_compile_to_valid_programs() {
        let Some(p) = pcap("good_expressions_compile_to_valid_programs") else {
            return;
        };
        assert!(
            p.version().starts_with("libpcap version"),
            "{}",
            p.version()
        );
        // "ip" on Ethernet: exactly the four instructions of tcpdump -d
        let ip = p.compile(LinkType::ETHERNET, "ip").unwrap();
        assert_eq!(
            ip.instructions(),
            &[
                BpfInsn::new(0x28, 0, 0, 12),
                BpfInsn::new(0x15, 0, 1, 0x800),
                BpfInsn::new(0x06, 0, 0, 262_144),
                BpfInsn::new(0x06, 0, 0, 0),
            ]
        );
        // on raw IPv4 the same expression looks at the version nibble
        let raw = p.compile(LinkType::RAW, "ip").unwrap();
        assert_ne!(raw, ip);
        let mut v4 = [0u8; 20];
        v4[0] = 0x45;
        assert_ne!(raw.run(&v4, 20), 0);
        v4[0] = 0x60;
        assert_eq!(raw.run(&v4, 20), 0);
        for (lt, e) in [
            (LinkType::ETHERNET, "tcp[tcpflags] & tcp-syn != 0"),
            (LinkType::LINUX_SLL, "udp port 53 or (ip6 and icmp6)"),
            (LinkType::LINUX_SLL2, "host 10.0.0.1 and tcp"),
            (LinkType::ETHERNET, "vlan 100 and udp"),
            (LinkType::NULL, "not net 192.168.0.0/16"),
            (LinkType::IPV6, "ip6 proto 17"),
            (LinkType::ETHERNET, ""),
        ] {
            let prog = p
                .compile(lt, e)
                .unwrap_or_else(|err| panic!("{lt} {e}: {err}"));
            assert!(prog.len() > 1 || e.is_empty(), "{lt} {e}: {prog}");
        }
    }

    #[test]
    fn bad_expressions_give_libpcaps_message() {
        let Some(p) = pcap("bad_expressions_give_libpcaps_message") else {
            return;
        };
        let e = p.compile(LinkType::ETHERNET, "tcp port").unwrap_err();
        assert!(matches!(e, FilterError::Expression { .. }), "{e:?}");
        assert!(e.to_string().contains("syntax error"), "{e}");
        assert!(e.to_string().contains("'tcp port'"), "{e}");
        let e = p.compile(LinkType::ETHERNET, "port 99999").unwrap_err();
        assert!(e.to_string().contains("port"), "{e}");
        let e = p.compile(LinkType::ETHERNET, "ip\0").unwrap_err();
        assert!(e.to_string().contains("NUL"), "{e}");
        // a primitive the link type does not have
        let e = p
            .compile(LinkType::RAW, "ether host 01:02:03:04:05:06")
            .unwrap_err();
        assert!(matches!(e, FilterError::Expression { .. }), "{e:?}");
        assert!(e.to_string().contains("ethernet addresses"), "{e}");
        // direction: only in the data of cooked captures; elsewhere the
        // kernel's, refused for files as tcpdump -r refuses it
        let e = p.compile(LinkType::ETHERNET, "inbound").unwrap_err();
        assert!(e.to_string().contains("when reading savefiles"), "{e}");
        assert!(p.compile(LinkType::LINUX_SLL, "inbound").is_ok());
        // OpenBSD's raw IP link type is read as raw IP
        assert_eq!(
            p.compile(LinkType::RAW_14, "udp").unwrap(),
            p.compile(LinkType::RAW, "udp").unwrap()
        );
        let e = p.compile(LinkType::LINUX_SLL2, "vlan").unwrap_err();
        assert!(e.to_string().contains("no VLAN support"), "{e}");
    }

    #[test]
    fn a_link_type_libpcap_cannot_filter_is_told_apart() {
        let Some(p) = pcap("a_link_type_libpcap_cannot_filter_is_told_apart") else {
            return;
        };
        let e = p.compile(LinkType(4_000_000), "ip").unwrap_err();
        assert!(
            matches!(e, FilterError::UnsupportedLinkType { .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("4000000"), "{e}");
        // NFLOG: the empty expression compiles, protocol tests do not
        assert!(p.compile(LinkType::NFLOG, "").is_ok());
        let e = p.compile(LinkType::NFLOG, "tcp").unwrap_err();
        assert!(matches!(e, FilterError::Expression { .. }), "{e:?}");
        assert!(e.to_string().contains("NFLOG"), "{e}");
    }

    #[test]
    fn programs_for_a_live_interface() {
        let Some(p) = pcap("programs_for_a_live_interface") else {
            return;
        };
        let e = p.compile_for_interface("pal-nosuch0", "udp").unwrap_err();
        assert!(matches!(e, FilterError::Interface { .. }), "{e:?}");
        assert!(e.to_string().contains("pal-nosuch0"), "{e}");
        // loopback is captured as Ethernet; activated (as root) or not, a
        // plain expression gives the file program
        let lo = p.compile_for_interface("lo", "udp").unwrap();
        assert_eq!(lo, p.compile(LinkType::ETHERNET, "udp").unwrap());
        let e = p.compile_for_interface("lo", "udp port").unwrap_err();
        assert!(e.to_string().contains("syntax error"), "{e}");
    }

    #[test]
    fn compiling_from_several_threads_at_once_is_safe() {
        let Some(p) = pcap("compiling_from_several_threads_at_once_is_safe") else {
            return;
        };
        let p = std::sync::Arc::new(p);
        let want = p.compile(LinkType::ETHERNET, "tcp port 80").unwrap();
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let p = p.clone();
                std::thread::spawn(move || {
                    (0..50)
                        .map(|_| p.compile(LinkType::ETHERNET, "tcp port 80").unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in hs {
            for got in h.join().unwrap() {
                assert_eq!(got, want);
            }
        }
    }
}
