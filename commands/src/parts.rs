//! CPU work on many items split over the machine's cores: a rebuild's
//! batch of thousands of events is decoded and opened this way.

use std::num::NonZeroUsize;
use std::sync::LazyLock;

/// Items in a part done on a thread of its own; smaller inputs (the live
/// projector's batches of a few events, a page's keys) stay whole on the
/// calling thread. A rebuild's batches, or a catch-up's after the
/// projector was away, are split: the calling thread (an async worker)
/// waits for its helpers, as it would otherwise have done the whole work.
const ITEMS_PER_PART: usize = 1000;

static CORES: LazyLock<usize> = LazyLock::new(|| std::thread::available_parallelism().map_or(1, NonZeroUsize::get));

/// `work` done on `items` in up to one part a core, side by side on scoped
/// threads (the calling thread takes the first part); the results in order.
/// A panic in a part is raised again here.
pub fn in_parts<T: Sync, R: Send>(items: &[T], work: impl Fn(&[T]) -> R + Sync) -> Vec<R> {
    let parts = CORES.min(items.len() / ITEMS_PER_PART).max(1);
    if parts == 1 {
        return vec![work(items)];
    }
    let mut chunks = items.chunks(items.len().div_ceil(parts));
    let first = chunks.next().unwrap_or_default();
    std::thread::scope(|scope| {
        let others: Vec<_> = chunks.map(|chunk| scope.spawn(|| work(chunk))).collect();
        let mut results = vec![work(first)];
        results.extend(
            others.into_iter().map(|other| other.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))),
        );
        results
    })
}

/// [`in_parts`] for fallible work whose parts make lists: the lists joined
/// in order, or the first part's error.
///
/// # Errors
/// The error of the first part that failed.
pub fn try_in_parts<T: Sync, R: Send, E: Send>(
    items: &[T],
    work: impl Fn(&[T]) -> Result<Vec<R>, E> + Sync,
) -> Result<Vec<R>, E> {
    let mut all = Vec::with_capacity(items.len());
    for part in in_parts(items, work) {
        all.extend(part?);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_come_back_in_order_and_whole() {
        let items: Vec<usize> = (0..10_000).collect();
        let doubled = try_in_parts(&items, |part| Ok::<_, ()>(part.iter().map(|i| i * 2).collect()));
        assert_eq!(doubled, Ok(items.iter().map(|i| i * 2).collect::<Vec<_>>()));
        let parts = in_parts(&items, <[usize]>::len);
        assert_eq!(parts.iter().sum::<usize>(), items.len());
        assert_eq!(parts.len(), CORES.min(10), "one part a core, at least {ITEMS_PER_PART} items each");
    }

    #[test]
    fn small_inputs_stay_whole() {
        let items = [1, 2, 3];
        assert_eq!(in_parts(&items, <[i32]>::len), vec![3]);
        assert_eq!(in_parts(&[] as &[i32], <[i32]>::len), vec![0]);
    }

    #[test]
    fn the_first_failing_part_is_the_error() {
        let items: Vec<usize> = (0..10_000).collect();
        let failed = try_in_parts(&items, |part| if part.contains(&9_999) { Err(part[0]) } else { Ok(part.to_vec()) });
        let parts = CORES.min(10);
        let expected_start = (parts - 1) * 10_000_usize.div_ceil(parts);
        assert_eq!(failed, Err(expected_start));
    }
}
