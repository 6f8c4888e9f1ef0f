//! Command buffers of the read path, kept per thread: once a thread has served a read, the
//! next read's `GET` reuses that command's two buffers instead of allocating them.
//!
//! Nothing is shared: a buffer is taken out before the command is written and handed back,
//! cleared, after its reply arrived (a read cancelled in between just drops it).

use std::cell::RefCell;

use redis_core::redis::Cmd;

/// Buffers kept per thread: about as many reads as one worker thread has in flight at once.
const KEPT_PER_THREAD: usize = 64;

/// Commands for longer keys are dropped rather than kept, so a rare long key does not pin a
/// large buffer.
pub(crate) const KEPT_KEY_LEN: usize = 256;

thread_local! {
    static SPARE: RefCell<Vec<Cmd>> = const { RefCell::new(Vec::new()) };
}

/// An empty command: a spare one of this thread's, or a new one.
pub(crate) fn take() -> Cmd {
    SPARE
        .try_with(|spare| spare.borrow_mut().pop())
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Keeps `cmd` (a sent command whose key was at most [`KEPT_KEY_LEN`] bytes) for the next
/// [`take`] on this thread, unless the thread has enough.
pub(crate) fn give_back(mut cmd: Cmd) {
    cmd.clear();
    // During thread shutdown the spares are gone: `cmd` is dropped instead.
    let _ = SPARE.try_with(|spare| {
        let mut spare = spare.borrow_mut();
        if spare.len() < KEPT_PER_THREAD {
            spare.push(cmd);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_given_back_is_taken_again_empty() {
        let mut cmd = take();
        cmd.arg("GET").arg("app:cache:{a}");
        give_back(cmd);
        let mut again = take();
        again.arg("GET").arg("b");
        assert_eq!(
            again.get_packed_command(),
            redis_core::redis::cmd("GET").arg("b").get_packed_command()
        );
        // Past the limit, commands are dropped rather than kept.
        for _ in 0..KEPT_PER_THREAD + 10 {
            give_back(Cmd::new());
        }
        SPARE.with(|spare| assert_eq!(spare.borrow().len(), KEPT_PER_THREAD));
    }
}
