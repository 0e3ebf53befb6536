//! Gauss–Hermite quadrature for expectations under a standard normal.
//!
//! Nodes and weights of the physicists' rule (weight `e^(−x²)`) by Newton's method
//! on the orthonormal Hermite recurrence (Golub–Welsch would need an eigensolver),
//! rescaled to the probabilists' form: `E[g(Z)] ≈ Σ w_k g(z_k)` with `z_k = √2 x_k`
//! and `w_k = W_k / √π`, so the weights sum to 1.

use crate::error::{ensure, Result, Subject};

/// The most nodes [`gauss_hermite`] computes; beyond it the weights of the outer nodes
/// underflow and nothing a curve needs is gained.
pub const MAX_NODES: usize = 64;

/// The `n`-node Gauss–Hermite rule for `Z ~ N(0, 1)`: nodes ascending, and weights
/// summing to 1. It is exact for polynomials of degree < 2n.
///
/// ```
/// let (z, w) = clear_alloc::prior::gauss_hermite(3)?;
/// // E[Z²] = 1 and E[Z⁴] = 3.
/// let moment = |k: i32| z.iter().zip(&w).map(|(z, w)| w * z.powi(k)).sum::<f64>();
/// assert!((moment(2) - 1.0).abs() < 1e-12 && (moment(4) - 3.0).abs() < 1e-12);
/// # Ok::<(), clear_alloc::Error>(())
/// ```
///
/// # Errors
/// [`Error::InvalidParameter`](crate::Error::InvalidParameter) (field `nodes`) unless
/// `1 ≤ n ≤ MAX_NODES`.
pub fn gauss_hermite(n: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    ensure(
        (1..=MAX_NODES).contains(&n),
        Subject::Parameter,
        "nodes",
        n as u64,
        "must be between 1 and 64",
    )?;
    const PI_M4: f64 = 0.751_125_544_464_942_5; // π^(−1/4)
    let nf = n as f64;
    let mut x = vec![0.0; n];
    let mut w = vec![0.0; n];
    let mut z = 0.0f64;
    for i in 0..n.div_ceil(2) {
        // Starting guesses for the largest roots first (Numerical Recipes, gauher).
        z = match i {
            0 => (2.0 * nf + 1.0).sqrt() - 1.85575 * (2.0 * nf + 1.0).powf(-1.0 / 6.0),
            1 => z - 1.14 * nf.powf(0.426) / z,
            2 => 1.86 * z - 0.86 * x[0],
            3 => 1.91 * z - 0.91 * x[1],
            _ => 2.0 * z - x[i - 2],
        };
        let mut derivative = 1.0;
        for _ in 0..100 {
            let (mut p1, mut p2) = (PI_M4, 0.0);
            for j in 0..n {
                let p3 = p2;
                p2 = p1;
                let jf = j as f64;
                p1 = z * (2.0 / (jf + 1.0)).sqrt() * p2 - (jf / (jf + 1.0)).sqrt() * p3;
            }
            derivative = (2.0 * nf).sqrt() * p2;
            let step = p1 / derivative;
            z -= step;
            if step.abs() <= 1e-14 * z.abs().max(1.0) {
                break;
            }
        }
        x[i] = z;
        x[n - 1 - i] = -z;
        w[i] = 2.0 / (derivative * derivative);
        w[n - 1 - i] = w[i];
    }
    if n % 2 == 1 {
        x[n / 2] = 0.0;
    }
    // W_k/√π sums to 1 up to rounding; dividing by the computed sum makes a mixture of
    // these weights a distribution to the last bit.
    let total: f64 = w.iter().sum();
    let nodes = x
        .iter()
        .rev()
        .map(|x| x * std::f64::consts::SQRT_2)
        .collect();
    let weights = w.iter().rev().map(|w| w / total).collect();
    Ok((nodes, weights))
}
