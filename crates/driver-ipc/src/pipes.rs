//! Pipe buffer sizes: Linux pipes hold 64 KiB by default, so a 1 MiB stream costs at
//! least sixteen wake-ups of each side; 1 MiB buffers (the unprivileged maximum) cut that
//! to one or two.

/// The size asked for.
const PIPE_SIZE: usize = 1 << 20;

/// Grows the pipe behind `fd` to 1 MiB, as far as the system allows; anything else
/// (not a pipe, not Linux, a lower limit) is left as it is.
pub(crate) fn grow(fd: &impl std::os::fd::AsFd) {
    #[cfg(target_os = "linux")]
    {
        let _ = rustix::pipe::fcntl_setpipe_size(fd, PIPE_SIZE);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (fd, PIPE_SIZE);
}
