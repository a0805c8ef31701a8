//! Seeded pseudo-random numbers (splitmix64). Every worker thread draws from its own stream, derived from
//! the run's seed and the thread's place, so one seed replays the same sequence of operations per thread.

/// A splitmix64 generator.
pub struct Rng(u64);

impl Rng {
    /// The stream of worker thread `thread` of worker process `proc_` for the run's `seed`.
    pub fn for_thread(seed: u64, proc_: u64, thread: u64) -> Rng {
        let mut r = Rng(seed);
        let mix = r.next() ^ proc_.wrapping_mul(0xbf58_476d_1ce4_e5b9) ^ thread.wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng(mix)
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `permille`/1000.
    pub fn chance(&mut self, permille: u64) -> bool {
        self.below(1000) < permille
    }

    /// One element of a non-empty slice.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// An index into `weights`, each chosen in proportion to its weight (0 never).
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|w| *w as u64).sum();
        let mut x = self.below(total);
        for (i, w) in weights.iter().enumerate() {
            if x < *w as u64 {
                return i;
            }
            x -= *w as u64;
        }
        weights.len() - 1
    }
}
