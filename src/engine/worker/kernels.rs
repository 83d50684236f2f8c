//! The CPU kernels of the embedding encoder ([`super::bert_cpu`]) on plain `f32`
//! slices: matrix products through the `gemm` crate (one checked, safe entry point),
//! and the element-wise passes — softmax, layer norm, GELU — vectorised.
//!
//! The element-wise kernels are written once as plain loops and compiled three times
//! (AVX-512, AVX2+FMA, the build's baseline), the best one chosen at run time: the
//! package is built for any x86-64, so the compiler may not assume AVX, and libm's
//! scalar `expf` was a tenth of a batch in a profile. `exp` here is a branch-free
//! polynomial the compiler can vectorise.

use gemm::Parallelism;

/// Compiles `$body` for AVX-512 and AVX2+FMA as well as the baseline, and runs the
/// best the CPU has. The body must be plain safe code; only the dispatch is unsafe.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn generic($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                fn avx512($($arg: $ty),*) { generic($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) { generic($($arg),*) }
                if std::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has just been checked for the features `avx512`
                    // was compiled with.
                    #[allow(unsafe_code)]
                    return unsafe { avx512($($arg),*) };
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: as above, for AVX2 and FMA.
                    #[allow(unsafe_code)]
                    return unsafe { avx2($($arg),*) };
                }
            }
            generic($($arg),*)
        }
    };
}

/// Lanes of the partial sums: wide enough for one AVX-512 register, so that the
/// compiler vectorises reductions it may not reorder itself.
const LANES: usize = 16;

#[inline(always)]
fn sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + rest.iter().sum::<f32>()
}

#[inline(always)]
fn max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a = a.max(v);
        }
    }
    acc.iter()
        .chain(rest)
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v))
}

/// e^x in f32 without branches or calls (relative error under 2e-7 over the range
/// where the result is a normal number; below it 0, above it f32::MAX's order).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two, so that x - n ln 2 stays exact for the n that occur.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // 1.5 * 2^23: adding it rounds to an integer held in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    // e^r on |r| <= ln2 / 2: Taylor to r^6, within f32's precision there.
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // 2^n from the integer in the mantissa of `shifted`, placed in the exponent.
    let bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    let scale = f32::from_bits(bits.wrapping_add(127) << 23);
    p * scale
}

multiversion! {
    /// Softmax of each `width`-long row of `data`, in place.
    pub fn softmax_rows(data: &mut [f32], width: usize) {
        for row in data.chunks_exact_mut(width) {
            let top = max(row);
            for v in row.iter_mut() {
                *v = exp(*v - top);
            }
            let inverse = 1.0 / sum(row);
            for v in row.iter_mut() {
                *v *= inverse;
            }
        }
    }
}

multiversion! {
    /// For each `width`-long row of `data`: adds `bias`, then normalises the row to
    /// zero mean and unit variance (`eps` added to the variance) and scales it by
    /// `gamma` and shifts it by `beta`, in place.
    pub fn bias_layer_norm(data: &mut [f32], bias: &[f32], gamma: &[f32], beta: &[f32], eps: f32) {
        let width = gamma.len();
        for row in data.chunks_exact_mut(width) {
            for (v, &b) in row.iter_mut().zip(bias) {
                *v += b;
            }
            let mean = sum(row) / width as f32;
            let mut squares = [0f32; LANES];
            let chunks = row.chunks_exact(LANES);
            let rest = chunks.remainder().iter().map(|v| (v - mean) * (v - mean)).sum::<f32>();
            for chunk in chunks {
                for (s, &v) in squares.iter_mut().zip(chunk) {
                    *s += (v - mean) * (v - mean);
                }
            }
            let variance = (squares.iter().sum::<f32>() + rest) / width as f32;
            let inverse = 1.0 / (variance + eps).sqrt();
            for ((v, &g), &b) in row.iter_mut().zip(gamma).zip(beta) {
                *v = (*v - mean) * inverse * g + b;
            }
        }
    }
}

/// erf by Abramowitz and Stegun 7.1.26 (largest error 1.5e-7).
#[inline(always)]
fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_8,
        -1.453_152,
        1.061_405_4,
    ];
    let a = x.abs();
    let t = 1.0 / (1.0 + P * a);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    (1.0 - poly * exp(-a * a)).copysign(x)
}

/// GELU with erf, BERT's activation.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// GELU's tanh approximation.
#[inline(always)]
fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let y = SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x);
    // tanh(y) = 1 - 2 / (e^2y + 1), which saturates cleanly at both ends.
    0.5 * x * (2.0 - 2.0 / (exp(2.0 * y) + 1.0))
}

/// The feed-forward activations of a BERT model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// GELU with erf.
    GeluErf,
    /// GELU's tanh approximation.
    GeluTanh,
    /// max(0, x).
    Relu,
}

multiversion! {
    /// For each `bias.len()`-long row of `data`: adds `bias`, then applies
    /// `activation`, in place.
    pub fn bias_activation(data: &mut [f32], bias: &[f32], activation: Activation) {
        for row in data.chunks_exact_mut(bias.len()) {
            let pairs = row.iter_mut().zip(bias);
            match activation {
                Activation::GeluErf => pairs.for_each(|(v, &b)| *v = gelu(*v + b)),
                Activation::GeluTanh => pairs.for_each(|(v, &b)| *v = gelu_tanh(*v + b)),
                Activation::Relu => pairs.for_each(|(v, &b)| *v = (*v + b).max(0.0)),
            }
        }
    }
}

/// A matrix read from a slice: element (i, j) is `data[offset + i * row_stride + j *
/// col_stride]`.
#[derive(Clone, Copy)]
pub struct Matrix<'a> {
    /// The elements.
    pub data: &'a [f32],
    /// Where element (0, 0) is.
    pub offset: usize,
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Distance between rows.
    pub row_stride: usize,
    /// Distance between columns.
    pub col_stride: usize,
}

impl<'a> Matrix<'a> {
    /// A contiguous row-major matrix.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize) -> Matrix<'a> {
        Matrix {
            data,
            offset: 0,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// Whether every element lies inside `data`.
    fn in_bounds(&self) -> bool {
        if self.rows == 0 || self.cols == 0 {
            return true;
        }
        let last = (self.rows - 1)
            .checked_mul(self.row_stride)
            .zip((self.cols - 1).checked_mul(self.col_stride))
            .and_then(|(r, c)| r.checked_add(c))
            .and_then(|rc| rc.checked_add(self.offset));
        matches!(last, Some(last) if last < self.data.len())
    }
}

/// `dst = accumulate * dst + scale * lhs × rhs`, with `dst` a contiguous row-major
/// (lhs.rows × rhs.cols) matrix (`accumulate` is 0 or 1: whether `dst` is read).
/// Runs over `threads` rayon threads (1: on the calling thread).
///
/// # Panics
/// When the shapes disagree or a matrix reaches outside its slice: a bug in the
/// caller, never something input can cause.
pub fn matmul(
    dst: &mut [f32],
    lhs: Matrix,
    rhs: Matrix,
    accumulate: bool,
    scale: f32,
    threads: usize,
) {
    let (m, n, k) = (lhs.rows, rhs.cols, lhs.cols);
    assert_eq!(rhs.rows, k, "matmul: inner dimensions differ");
    assert!(dst.len() >= m * n, "matmul: destination too small");
    assert!(
        lhs.in_bounds() && rhs.in_bounds(),
        "matmul: a matrix reaches outside its slice"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(0.0);
        }
        return;
    }
    let parallelism = if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    // SAFETY: every element gemm reads (lhs, rhs) or writes (dst: m × n, row-major)
    // has been checked to lie inside its slice; dst is borrowed mutably, so it
    // overlaps neither input.
    #[allow(unsafe_code)]
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr().add(lhs.offset),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr().add(rhs.offset),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            if accumulate { 1.0 } else { 0.0 },
            scale,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_the_standard_library() {
        for i in -8700..=8800 {
            let x = i as f32 / 100.0;
            let (ours, exact) = (exp(x), x.exp());
            assert!(
                ((ours - exact) / exact).abs() < 1e-6,
                "exp({x}): {ours} vs {exact}"
            );
        }
        assert!((exp(-1000.0) / (-87.0f32).exp() - 1.0).abs() < 1e-6);
        assert!(exp(1000.0).is_finite());
    }

    #[test]
    fn gelu_matches_the_exact_function() {
        for i in -600..=600 {
            let x = i as f32 / 100.0;
            let exact = 0.5
                * f64::from(x)
                * (1.0 + candle_core::cpu::erf::erf_f64(f64::from(x) / 2f64.sqrt()));
            assert!(
                (f64::from(gelu(x)) - exact).abs() < 1e-6,
                "gelu({x}): {} vs {exact}",
                gelu(x)
            );
        }
        assert_eq!(gelu(0.0), 0.0);
        for i in -600..=600 {
            let x = f64::from(i) / 100.0;
            let exact = 0.5
                * x
                * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh());
            assert!(
                (f64::from(gelu_tanh(x as f32)) - exact).abs() < 1e-6,
                "gelu_tanh({x})"
            );
        }
        assert_eq!(gelu_tanh(-100.0), 0.0);
        assert_eq!(gelu_tanh(100.0), 100.0);
    }

    #[test]
    fn softmax_rows_sum_to_one_and_keep_order() {
        let width = 37;
        let mut data: Vec<f32> = (0..width * 3)
            .map(|i| ((i * 7919) % 61) as f32 / 3.0 - 10.0)
            .collect();
        let original = data.clone();
        softmax_rows(&mut data, width);
        for (row, before) in data.chunks(width).zip(original.chunks(width)) {
            let top = before.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let total: f64 = before.iter().map(|&v| f64::from(v - top).exp()).sum();
            for (&p, &v) in row.iter().zip(before) {
                let exact = f64::from(v - top).exp() / total;
                assert!((f64::from(p) - exact).abs() < 1e-6, "{p} vs {exact}");
            }
        }
    }

    #[test]
    fn bias_layer_norm_matches_the_definition() {
        let width = 40;
        let mut data: Vec<f32> = (0..width * 2)
            .map(|i| (i as f32 * 0.37).sin() * 5.0)
            .collect();
        let bias: Vec<f32> = (0..width).map(|i| i as f32 * 0.01).collect();
        let gamma: Vec<f32> = (0..width).map(|i| 1.0 + i as f32 * 0.02).collect();
        let beta: Vec<f32> = (0..width).map(|i| -(i as f32) * 0.03).collect();
        let original = data.clone();
        bias_layer_norm(&mut data, &bias, &gamma, &beta, 1e-12);
        for (row, before) in data.chunks(width).zip(original.chunks(width)) {
            let x: Vec<f64> = before
                .iter()
                .zip(&bias)
                .map(|(&v, &b)| f64::from(v + b))
                .collect();
            let mean = x.iter().sum::<f64>() / width as f64;
            let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / width as f64;
            for (j, &y) in row.iter().enumerate() {
                let exact = (x[j] - mean) / var.sqrt() * f64::from(gamma[j]) + f64::from(beta[j]);
                assert!((f64::from(y) - exact).abs() < 1e-5, "{y} vs {exact}");
            }
        }
    }

    #[test]
    fn matmul_reads_strided_views_and_accumulates() {
        // lhs: 3 × 2 taken with a row stride of 4 out of a longer buffer; rhs: the
        // transpose of a 2 × 3 row-major block (column stride 2).
        let lhs_data: Vec<f32> = (0..12).map(|i| i as f32).collect();
        let lhs = Matrix {
            data: &lhs_data,
            offset: 1,
            rows: 3,
            cols: 2,
            row_stride: 4,
            col_stride: 1,
        };
        let rhs_data = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let rhs = Matrix {
            data: &rhs_data,
            offset: 0,
            rows: 2,
            cols: 3,
            row_stride: 1,
            col_stride: 2,
        };
        let mut dst = vec![1.0f32; 9];
        matmul(&mut dst, lhs, rhs, true, 2.0, 1);
        for i in 0..3 {
            for j in 0..3 {
                let exact: f32 = (0..2)
                    .map(|p| lhs_data[1 + i * 4 + p] * rhs_data[p + j * 2])
                    .sum();
                assert_eq!(dst[i * 3 + j], 1.0 + 2.0 * exact);
            }
        }
    }

    #[test]
    #[should_panic(expected = "outside its slice")]
    fn matmul_refuses_a_view_past_its_slice() {
        let data = [0f32; 6];
        let m = Matrix {
            data: &data,
            offset: 1,
            rows: 2,
            cols: 3,
            row_stride: 3,
            col_stride: 1,
        };
        matmul(&mut [0f32; 4], m, Matrix::rows(&data, 3, 2), false, 1.0, 1);
    }
}
