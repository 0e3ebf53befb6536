//! A replica's demand sample of one window, as stored in Redis, and the merge of every
//! replica's samples over the recent windows into one weighted sample.
//!
//! Encoding (little-endian): a version byte (1), the window's arrivals (u64), then per
//! sampled arrival its threshold, width, ceiling and weight (f64) and cap (u64):
//! 40 bytes each, about 10 kB for the default 256 samples.

use clear_alloc::online::SampledQuery;
use clear_alloc::ShiftedSurge;

const VERSION: u8 = 1;
const HEADER: usize = 1 + 8;
const RECORD: usize = 40;

/// Encodes one window's arrivals and reservoir sample.
pub(crate) fn encode(arrivals: u64, sample: &[SampledQuery]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + RECORD * sample.len());
    out.push(VERSION);
    out.extend_from_slice(&arrivals.to_le_bytes());
    for q in sample {
        let curve = q.curve();
        for x in [
            curve.threshold(),
            curve.width(),
            curve.ceiling(),
            q.weight(),
        ] {
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.extend_from_slice(&q.cap().to_le_bytes());
    }
    out
}

/// Decodes what [`encode`] wrote; a malformed record (bad length, version, or a curve
/// the core rejects) is an error naming what is wrong, never a panic.
pub(crate) fn decode(bytes: &[u8]) -> Result<(u64, Vec<SampledQuery>), String> {
    if bytes.len() < HEADER || !(bytes.len() - HEADER).is_multiple_of(RECORD) {
        return Err(format!("sample of {} bytes is malformed", bytes.len()));
    }
    if bytes[0] != VERSION {
        return Err(format!("sample version {} is unknown", bytes[0]));
    }
    let word = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[at..at + 8]);
        b
    };
    let arrivals = u64::from_le_bytes(word(1));
    let mut sample = Vec::with_capacity((bytes.len() - HEADER) / RECORD);
    for at in (HEADER..bytes.len()).step_by(RECORD) {
        let f = |i: usize| f64::from_le_bytes(word(at + 8 * i));
        let curve = ShiftedSurge::new(f(0), f(1), f(2)).map_err(|e| e.to_string())?;
        let cap = u64::from_le_bytes(word(at + 32));
        sample.push(SampledQuery::new(curve, f(3), cap).map_err(|e| e.to_string())?);
    }
    Ok((arrivals, sample))
}

/// One replica's sample of one window.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ReplicaWindow {
    pub(crate) arrivals: u64,
    pub(crate) sample: Vec<SampledQuery>,
}

/// The fleet's demand in one average window: every sampled arrival of every replica in
/// the `windows` merged stands for `arrivals / sample length` of its replica's window,
/// divided by the number of windows (an idle window counts, adding no demand).
pub(crate) fn merge(windows: &[Vec<ReplicaWindow>]) -> Vec<(SampledQuery, f64)> {
    let count = windows.len().max(1) as f64;
    let mut merged = Vec::new();
    for replica in windows.iter().flatten() {
        if replica.sample.is_empty() {
            continue;
        }
        let weight = replica.arrivals as f64 / replica.sample.len() as f64 / count;
        merged.extend(replica.sample.iter().map(|&q| (q, weight)));
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampled(t: f64, cap: u64) -> SampledQuery {
        SampledQuery::new(ShiftedSurge::new(t, 120.0, 0.8).unwrap(), 1.5, cap).unwrap()
    }

    #[test]
    fn a_sample_round_trips_through_its_encoding() {
        let sample = vec![sampled(100.0, 4096), sampled(350.5, 512)];
        let bytes = encode(1_234, &sample);
        assert_eq!(bytes.len(), 9 + 2 * 40);
        let (arrivals, back) = decode(&bytes).unwrap();
        assert_eq!(arrivals, 1_234);
        assert_eq!(back.len(), 2);
        for (a, b) in sample.iter().zip(&back) {
            assert_eq!(a.cap(), b.cap());
            assert_eq!(a.weight(), b.weight());
            assert_eq!(a.curve().threshold(), b.curve().threshold());
            assert!((a.curve().width() - b.curve().width()).abs() < 1e-9);
            assert_eq!(a.curve().ceiling(), b.curve().ceiling());
        }
    }

    #[test]
    fn malformed_samples_are_errors_not_panics() {
        assert!(decode(&[]).is_err());
        let mut bytes = encode(5, &[sampled(100.0, 10)]);
        bytes.pop();
        assert!(decode(&bytes).unwrap_err().contains("malformed"));
        let mut bytes = encode(5, &[sampled(100.0, 10)]);
        bytes[0] = 9;
        assert!(decode(&bytes).unwrap_err().contains("version"));
        // A NaN threshold: the curve's own validation names the field.
        let mut bytes = encode(5, &[sampled(100.0, 10)]);
        bytes[9..17].copy_from_slice(&f64::NAN.to_le_bytes());
        assert!(decode(&bytes).unwrap_err().contains("threshold"));
    }

    #[test]
    fn merged_weights_add_up_to_the_fleets_mean_arrivals_per_window() {
        let a = ReplicaWindow {
            arrivals: 300,
            sample: vec![sampled(100.0, 10); 3],
        };
        let b = ReplicaWindow {
            arrivals: 100,
            sample: vec![sampled(200.0, 10); 2],
        };
        let idle = ReplicaWindow {
            arrivals: 0,
            sample: vec![],
        };
        // Window 1: 400 arrivals over two replicas; window 2: idle.
        let merged = merge(&[vec![a, b], vec![idle]]);
        assert_eq!(merged.len(), 5);
        let total: f64 = merged.iter().map(|(_, w)| w).sum();
        assert!((total - 200.0).abs() < 1e-9, "{total}");
        assert!((merged[0].1 - 50.0).abs() < 1e-12);
        assert!((merged[4].1 - 25.0).abs() < 1e-12);
    }
}
