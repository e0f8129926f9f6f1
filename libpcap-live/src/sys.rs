//! Thin, checked wrappers over the system calls PAL needs.

use std::io;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
