//! One page of activation records, newest first, out of the database and the few records still in the
//! writer's queue, without reading the database from its first row: with `k` queued records (not yet
//! stored), the page `skip..skip+limit` of the union needs only the database's rows from
//! `offset = skip - k` (each queued record moves a stored one back by at most one place).

use crate::model::Activation;
use std::cmp::Ordering;

/// The list order: newest `start` first, then by id (descending) for records of the same millisecond.
pub fn newest_first(a: &Activation, b: &Activation) -> Ordering {
    b.start.cmp(&a.start).then_with(|| b.activation_id.cmp(&a.activation_id))
}

/// Rows `skip..skip+limit` of `stored ∪ extra` in [`newest_first`] order, given `tail`, the stored rows in
/// that order from row `offset = skip.saturating_sub(extra.len())` on (at least `skip + limit - offset` of
/// them unless the stored rows end first), and `extra`, records not among the stored ones (any order).
pub fn page(
    offset: usize,
    tail: Vec<Activation>,
    mut extra: Vec<Activation>,
    skip: usize,
    limit: usize,
) -> Vec<Activation> {
    debug_assert_eq!(offset, skip.saturating_sub(extra.len()));
    extra.sort_by(newest_first);
    // `base`: the place in the union of the first record of the merged list below.
    let (base, extra) = match tail.first() {
        _ if offset == 0 => (0, extra),
        // Fewer than `offset` stored rows: the union has fewer than `skip` records.
        None => return Vec::new(),
        Some(first) => {
            // Queued records before the tail's first row sit somewhere among the `offset` rows before it.
            let before = extra.partition_point(|e| newest_first(e, first) == Ordering::Less);
            (offset + before, extra.split_off(before))
        }
    };
    let mut merged = Vec::with_capacity(tail.len() + extra.len());
    let (mut t, mut e) = (tail.into_iter().peekable(), extra.into_iter().peekable());
    loop {
        let next = match (t.peek(), e.peek()) {
            (Some(a), Some(b)) if newest_first(a, b) != Ordering::Greater => t.next(),
            (Some(_), Some(_)) => e.next(),
            (Some(_), None) => t.next(),
            (None, _) => e.next(),
        };
        match next {
            Some(a) => merged.push(a),
            None => break,
        }
    }
    merged.into_iter().skip(skip - base).take(limit).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(start: u64, n: u32) -> Activation {
        let mut a = Activation::sample(&format!("{n:032x}"));
        a.start = start;
        a
    }

    /// Every split of a set of records into stored and queued, every skip and limit: the page equals the
    /// page of the whole set sorted.
    #[test]
    fn pages_of_the_union_match_the_sorted_whole() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..300 {
            let n = rand(12) as u32;
            let all: Vec<Activation> = (0..n).map(|i| rec(rand(6), i)).collect();
            let (mut stored, mut queued) = (Vec::new(), Vec::new());
            for a in &all {
                if rand(3) == 0 { queued.push(a.clone()) } else { stored.push(a.clone()) }
            }
            stored.sort_by(newest_first);
            let mut whole = all.clone();
            whole.sort_by(newest_first);
            for skip in 0..n as usize + 2 {
                for limit in 0..n as usize + 2 {
                    let offset = skip.saturating_sub(queued.len());
                    let fetch = skip + limit - offset;
                    let tail: Vec<_> = stored.iter().skip(offset).take(fetch).cloned().collect();
                    let got = page(offset, tail, queued.clone(), skip, limit);
                    let want: Vec<_> = whole.iter().skip(skip).take(limit).cloned().collect();
                    assert_eq!(got, want, "n={n} skip={skip} limit={limit} queued={}", queued.len());
                }
            }
        }
    }
}
