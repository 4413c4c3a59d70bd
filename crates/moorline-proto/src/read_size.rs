//! [`ReadSize`]: how much room to give the next socket read, so that an idle connection holds
//! a small buffer and a busy one reads in large chunks.
//!
//! A fixed large reservation (64 KiB per read) costs every idle connection 64 KiB of heap;
//! a fixed small one costs a busy connection many more reads. This policy starts small,
//! jumps to the maximum as soon as a read fills the room it was given (more is probably
//! waiting), and steps back down after several reads in a row that used little of it. The
//! shell also asks [`ReadSize::shrink_to`] whether an empty buffer is worth giving back.
//!
//! ```
//! use moorline_proto::read_size::ReadSize;
//!
//! let mut r = ReadSize::new(4096, 65536);
//! assert_eq!(r.want(), 4096);
//! r.on_read(4096, 4096); // filled: more is waiting
//! assert_eq!(r.want(), 65536);
//! for _ in 0..16 {
//!     r.on_read(100, 65536); // quiet again
//! }
//! assert_eq!(r.want(), 4096);
//! assert_eq!(r.shrink_to(65536 + 4096), Some(4096), "an empty 68 KiB buffer goes back");
//! ```

/// Consecutive small reads before the reservation halves.
const QUIET_READS: u32 = 4;

/// The read-room policy (pure: the shell reports reads, asks what to reserve).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadSize {
    min: usize,
    max: usize,
    want: usize,
    quiet: u32,
}

impl ReadSize {
    /// Between `min` and `max` bytes per read (`min` at least 1, `max` at least `min`).
    pub fn new(min: usize, max: usize) -> Self {
        let min = min.max(1);
        let max = max.max(min);
        Self { min, max, want: min, quiet: 0 }
    }

    /// The room the next read should have.
    pub fn want(&self) -> usize {
        self.want
    }

    /// A read returned `n` bytes into `room` bytes of free space.
    pub fn on_read(&mut self, n: usize, room: usize) {
        if n >= room {
            // Filled: the socket probably holds more; read big from now on.
            self.want = self.max;
            self.quiet = 0;
        } else if n < room / 4 {
            self.quiet += 1;
            if self.quiet >= QUIET_READS {
                self.want = (self.want / 2).max(self.min);
                self.quiet = 0;
            }
        } else {
            self.quiet = 0;
        }
    }

    /// The connection has been quiet for a while (the shell's idle timer): back to the
    /// minimum at once, so that the room a burst grew can go back.
    pub fn on_idle(&mut self) {
        self.want = self.min;
        self.quiet = 0;
    }

    /// Whether an empty buffer of `capacity` bytes should be replaced by a smaller one, and by
    /// how large: only once the policy has come back down, and only when it holds more than
    /// twice what is wanted (so a busy connection never reallocates for nothing).
    pub fn shrink_to(&self, capacity: usize) -> Option<usize> {
        (capacity > 2 * self.want && self.want < self.max).then_some(self.want)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_goes_back_to_the_minimum_at_once() {
        let mut r = ReadSize::new(4096, 65536);
        r.on_read(4096, 4096);
        assert_eq!(r.want(), 65536);
        r.on_idle();
        assert_eq!(r.want(), 4096);
        assert_eq!(r.shrink_to(65536), Some(4096));
    }

    #[test]
    fn grows_at_once_and_shrinks_slowly() {
        let mut r = ReadSize::new(4096, 65536);
        r.on_read(4096, 4096);
        assert_eq!(r.want(), 65536);
        // Half-full reads keep it large.
        for _ in 0..100 {
            r.on_read(30000, 65536);
        }
        assert_eq!(r.want(), 65536);
        assert_eq!(r.shrink_to(70000), None, "a busy connection keeps its buffer");
        // Three quiet reads are not enough, four halve it.
        for _ in 0..3 {
            r.on_read(10, 65536);
        }
        assert_eq!(r.want(), 65536);
        r.on_read(10, 65536);
        assert_eq!(r.want(), 32768);
        for _ in 0..100 {
            r.on_read(10, 65536);
        }
        assert_eq!(r.want(), 4096, "never under the minimum");
        assert_eq!(r.shrink_to(8192), None, "not worth it at twice the minimum");
        assert_eq!(r.shrink_to(8193), Some(4096));
    }

    #[test]
    fn degenerate_bounds_are_made_sane() {
        let r = ReadSize::new(0, 0);
        assert_eq!(r.want(), 1);
        let mut r = ReadSize::new(100, 10);
        assert_eq!(r.want(), 100);
        r.on_read(100, 100);
        assert_eq!(r.want(), 100);
        r.on_read(0, 0);
        assert_eq!(r.want(), 100);
    }
}
