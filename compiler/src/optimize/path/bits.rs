//! Fixed-width bitsets over compact label ids, for the searches that keep many label
//! sets (the dynamic programmes and branch-and-bound). The width is a const generic so
//! that unions and intersections compile to straight-line word operations.

/// A set of compact label ids `0..64 * W`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) struct Bits<const W: usize>(pub(crate) [u64; W]);

impl<const W: usize> Bits<W> {
    pub(crate) const EMPTY: Self = Bits([0; W]);

    pub(crate) fn from_labels(labels: &[u32]) -> Self {
        let mut b = Self::EMPTY;
        for &l in labels {
            b.insert(l as usize);
        }
        b
    }

    #[inline]
    pub(crate) fn insert(&mut self, i: usize) {
        self.0[i / 64] |= 1u64 << (i % 64);
    }

    #[inline]
    pub(crate) fn contains(&self, i: usize) -> bool {
        self.0[i / 64] >> (i % 64) & 1 == 1
    }

    #[inline]
    pub(crate) fn or(&self, o: &Self) -> Self {
        let mut r = *self;
        for k in 0..W {
            r.0[k] |= o.0[k];
        }
        r
    }

    #[inline]
    pub(crate) fn and_not(&self, o: &Self) -> Self {
        let mut r = *self;
        for k in 0..W {
            r.0[k] &= !o.0[k];
        }
        r
    }

    #[inline]
    pub(crate) fn intersects(&self, o: &Self) -> bool {
        (0..W).any(|k| self.0[k] & o.0[k] != 0)
    }

    /// Product of the sizes of the members.
    #[inline]
    pub(crate) fn size(&self, sizes: &[f64]) -> f64 {
        let mut p = 1.0;
        for k in 0..W {
            let mut w = self.0[k];
            while w != 0 {
                p = super::problem::mul(p, sizes[k * 64 + w.trailing_zeros() as usize]);
                w &= w - 1;
            }
        }
        p
    }

    /// The members in increasing order.
    pub(crate) fn ones(&self) -> Ones<'_, W> {
        Ones {
            bits: self,
            word: 0,
            cur: self.0.first().copied().unwrap_or(0),
        }
    }
}

pub(crate) struct Ones<'a, const W: usize> {
    bits: &'a Bits<W>,
    word: usize,
    cur: u64,
}

impl<const W: usize> Iterator for Ones<'_, W> {
    type Item = usize;
    #[inline]
    fn next(&mut self) -> Option<usize> {
        loop {
            if self.cur != 0 {
                let i = self.word * 64 + self.cur.trailing_zeros() as usize;
                self.cur &= self.cur - 1;
                return Some(i);
            }
            self.word += 1;
            if self.word >= W {
                return None;
            }
            self.cur = self.bits.0[self.word];
        }
    }
}

/// The largest label count the bitset searches handle (16 words).
pub(crate) const MAX_BIT_LABELS: usize = 16 * 64;

/// Calls `$f::<W>($args)` with the smallest supported width `W` that holds `$n` labels,
/// or evaluates to `None` when there are more than [`MAX_BIT_LABELS`].
macro_rules! with_width {
    ($n:expr, $f:ident ( $($arg:expr),* $(,)? )) => {
        match ($n).div_ceil(64) {
            0 | 1 => Some($f::<1>($($arg),*)),
            2 => Some($f::<2>($($arg),*)),
            3 | 4 => Some($f::<4>($($arg),*)),
            5..=8 => Some($f::<8>($($arg),*)),
            9..=16 => Some($f::<16>($($arg),*)),
            _ => None,
        }
    };
}
pub(crate) use with_width;

/// Iterates the members of a tensor subset.
#[inline]
pub(crate) fn set_ones(mut s: u128) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if s == 0 {
            None
        } else {
            let i = s.trailing_zeros() as usize;
            s &= s - 1;
            Some(i)
        }
    })
}
