//! The daemon's limit of open files, raised to what the system allows.
//!
//! A SQL query holds one open handle per rollup partition it reads (a day
//! of `sensor_hourly` or `building_quarterly`), for as long as it runs, so
//! a query over years of them opens thousands; the WAL, chunk files and
//! connections need handles too. The service unit sets a high limit; a
//! daemon started by hand inherits the shell's soft limit (often 1,024),
//! which a process may raise up to its hard limit on its own.

/// Raises the soft limit on open files to the hard limit, logging the
/// limit the daemon runs with.
#[allow(unsafe_code)]
pub(crate) fn raise_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "reading the open-file limit");
        return;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads one rlimit from a struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        } else {
            tracing::warn!(error = %std::io::Error::last_os_error(), "raising the open-file limit");
        }
    }
    tracing::info!(open_files = limit.rlim_cur, "open-file limit");
}

#[cfg(test)]
mod tests {
    #[test]
    #[allow(unsafe_code)]
    fn the_soft_limit_ends_at_the_hard_limit() {
        super::raise_limit();
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as in `raise_limit`.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        assert_eq!(limit.rlim_cur, limit.rlim_max);
    }
}
