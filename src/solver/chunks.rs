//! Fixed chunking with ordered reduction: every sweep over the batch that sums
//! floating-point values does so chunk by chunk, and adds the chunks' results in
//! order. With the `parallel` feature, large sweeps run their chunks on rayon's
//! threads; the sums are the same to the last bit whatever the number of threads,
//! because the chunk boundaries and the order of the final additions do not depend on
//! it.

/// Queries per chunk. Within one chunk values are added in query order, so a batch of
/// at most this many queries sums exactly as a plain loop does.
pub(super) const CHUNK: usize = 4096;

/// Sweeps over fewer items than this stay on the calling thread: below it, handing
/// chunks to the pool costs more than it saves (two threads, one W₋₁ per query).
const PARALLEL_MIN: usize = 32_768;

/// The same for sweeps whose every item costs several W₋₁ evaluations (a query's
/// abandonment price): worth splitting from fewer items.
const PARALLEL_MIN_COSTLY: usize = 4096;

/// Whether a sweep over `len` items runs on rayon's threads: when it is large and
/// the pool it would run in (the global one, or the one a caller `install`ed) has more
/// than one thread.
#[cfg(feature = "parallel")]
#[inline]
pub(super) fn parallel(len: usize) -> bool {
    parallel_from(len, PARALLEL_MIN)
}

/// Whether a sweep over `len` items, worth splitting from `min` items, runs on rayon's
/// threads.
#[cfg(feature = "parallel")]
#[inline]
fn parallel_from(len: usize, min: usize) -> bool {
    len >= min && rayon::current_num_threads() > 1
}

/// The positive values of `f(k)` for `k` in `0..len`, each with its `k`, in order,
/// written to `out`, which keeps its memory (room for all is reserved at once, so it
/// does not grow by copying). On rayon's threads when large, where `values` (memory
/// of the caller's) first takes every `f(k)`.
pub(super) fn positive_into(
    len: usize,
    out: &mut Vec<(f64, usize)>,
    values: &mut Vec<f64>,
    f: impl Fn(usize) -> f64 + Sync + Send,
) {
    out.clear();
    out.reserve(len);
    #[cfg(feature = "parallel")]
    if parallel(len) {
        use rayon::prelude::*;
        (0..len).into_par_iter().map(&f).collect_into_vec(values);
        let positive = values.iter().enumerate().filter(|&(_, &v)| v > 0.0);
        out.extend(positive.map(|(k, &v)| (v, k)));
        return;
    }
    let _ = values;
    out.extend((0..len).map(|k| (f(k), k)).filter(|&(v, _)| v > 0.0));
}

/// `out[k] = f(k, &inputs[k])` for every `k`, as [`map_into`], for an `f` that costs
/// several W₋₁ evaluations, so split across threads from fewer items.
pub(super) fn map_costly_into<A, T>(
    inputs: &[A],
    out: &mut Vec<T>,
    f: impl Fn(usize, &A) -> T + Sync + Send,
) where
    A: Sync,
    T: Send,
{
    map_from(PARALLEL_MIN_COSTLY, inputs, out, f);
}

/// Runs `work(offset, inputs, outputs)` on each [`CHUNK`] of `inputs` and the same
/// range of `outputs` (as long as `inputs`), and folds the chunks' results with
/// `combine` in chunk order, starting from `init`.
pub(super) fn fold<A, T, R>(
    inputs: &[A],
    outputs: &mut [T],
    init: R,
    work: impl Fn(usize, &[A], &mut [T]) -> R + Sync + Send,
    combine: impl Fn(R, R) -> R,
) -> R
where
    A: Sync,
    T: Send,
    R: Send,
{
    debug_assert_eq!(inputs.len(), outputs.len());
    #[cfg(feature = "parallel")]
    if parallel(inputs.len()) {
        use rayon::prelude::*;
        let parts: Vec<R> = inputs
            .par_chunks(CHUNK)
            .zip(outputs.par_chunks_mut(CHUNK))
            .enumerate()
            .map(|(k, (a, t))| work(k * CHUNK, a, t))
            .collect();
        return parts.into_iter().fold(init, combine);
    }
    inputs
        .chunks(CHUNK)
        .zip(outputs.chunks_mut(CHUNK))
        .enumerate()
        .fold(init, |acc, (k, (a, t))| combine(acc, work(k * CHUNK, a, t)))
}

/// `work` on each [`CHUNK`] of `inputs`, the results folded with `combine` in chunk
/// order, starting from `init`: [`fold`] without outputs.
pub(super) fn reduce<A, R>(
    inputs: &[A],
    init: R,
    work: impl Fn(&[A]) -> R + Sync + Send,
    combine: impl Fn(R, R) -> R,
) -> R
where
    A: Sync,
    R: Send,
{
    #[cfg(feature = "parallel")]
    if parallel(inputs.len()) {
        use rayon::prelude::*;
        let parts: Vec<R> = inputs.par_chunks(CHUNK).map(&work).collect();
        return parts.into_iter().fold(init, combine);
    }
    inputs
        .chunks(CHUNK)
        .fold(init, |acc, part| combine(acc, work(part)))
}

/// `work(offset, part)` on each [`CHUNK`] of `items`, on rayon's threads when large.
pub(super) fn for_each_mut<T: Send>(items: &mut [T], work: impl Fn(usize, &mut [T]) + Sync + Send) {
    #[cfg(feature = "parallel")]
    if parallel(items.len()) {
        use rayon::prelude::*;
        items
            .par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(k, part)| work(k * CHUNK, part));
        return;
    }
    for (k, part) in items.chunks_mut(CHUNK).enumerate() {
        work(k * CHUNK, part);
    }
}

/// `out[k] = f(k, &inputs[k])` for every `k`, on rayon's threads when large; `out`
/// keeps its memory when it is large enough already.
pub(super) fn map_into<A, T>(
    inputs: &[A],
    out: &mut Vec<T>,
    f: impl Fn(usize, &A) -> T + Sync + Send,
) where
    A: Sync,
    T: Send,
{
    map_from(PARALLEL_MIN, inputs, out, f);
}

/// [`map_into`], split across threads from `min` items.
fn map_from<A, T>(
    min: usize,
    inputs: &[A],
    out: &mut Vec<T>,
    f: impl Fn(usize, &A) -> T + Sync + Send,
) where
    A: Sync,
    T: Send,
{
    #[cfg(feature = "parallel")]
    if parallel_from(inputs.len(), min) {
        use rayon::prelude::*;
        inputs
            .par_iter()
            .enumerate()
            .map(|(k, a)| f(k, a))
            .collect_into_vec(out);
        return;
    }
    #[cfg(not(feature = "parallel"))]
    let _ = min;
    out.clear();
    out.extend(inputs.iter().enumerate().map(|(k, a)| f(k, a)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_folded_in_order_with_their_offsets() {
        let inputs: Vec<u64> = (0..(3 * CHUNK as u64 + 5)).collect();
        let mut outputs = vec![0u64; inputs.len()];
        let offsets = fold(
            &inputs,
            &mut outputs,
            Vec::new(),
            |offset, a, t| {
                for (x, y) in a.iter().zip(t.iter_mut()) {
                    *y = 2 * x;
                }
                vec![(offset, a.len())]
            },
            |mut acc, part| {
                acc.extend(part);
                acc
            },
        );
        assert_eq!(
            offsets,
            [
                (0, CHUNK),
                (CHUNK, CHUNK),
                (2 * CHUNK, CHUNK),
                (3 * CHUNK, 5)
            ]
        );
        assert!(outputs.iter().zip(&inputs).all(|(y, x)| *y == 2 * x));
        let sums = reduce(
            &inputs,
            Vec::new(),
            |a| vec![a.iter().sum::<u64>()],
            |mut acc, part| {
                acc.extend(part);
                acc
            },
        );
        let first: u64 = (0..CHUNK as u64).sum();
        assert_eq!(
            (sums.len(), sums[0], sums[3]),
            (4, first, (3 * CHUNK as u64..inputs.len() as u64).sum())
        );
        let mut mapped = Vec::new();
        map_into(&inputs, &mut mapped, |k, &x| k as u64 + x);
        assert!(mapped.iter().enumerate().all(|(k, &y)| y == 2 * k as u64));
        let (mut positive, mut values) = (vec![(1.0, 1)], Vec::new());
        positive_into(inputs.len(), &mut positive, &mut values, |k| k as f64 - 5.0);
        assert_eq!(positive.len(), inputs.len() - 6);
        assert_eq!(positive[0], (1.0, 6));
        let mut costly = vec![7; 3];
        map_costly_into(&inputs, &mut costly, |k, &x| k as u64 * x);
        assert!(costly.iter().enumerate().all(|(k, &y)| y == (k * k) as u64));
    }
}
