//! Fused CPU convolution: im2col + gemm for dense and grouped convolutions, direct
//! shift-and-add loops for depthwise ones, with backward passes of the same kind.
//!
//! For one image and one group `g`, with `col = im2col(x)` (`[C_in/groups * kh * kw, H'W']`,
//! row `(c, a, b)` holding the input pixels that tap `(a, b)` of channel `c` reads):
//! - forward: `y_g = W_g * col_g`
//! - input gradient: `dx = col2im(W_g^T * dy_g)` (col2im is the adjoint of im2col: it adds
//!   each column entry back onto the pixel it was read from)
//! - weight gradient: `dW_g = sum_n dy_g * col_g^T`
//!
//! Images are processed in chunks (their im2col columns side by side) to bound memory and
//! keep the products large; chunks are split over rayon threads in fixed partitions.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::Conv2dParams;
use super::kernel::{Mat, Real, contiguous, dispatch_real, matmul, split_even, storage, threads};

/// Elements of scratch (im2col columns and the gathered output rows) per thread.
const SCRATCH_ELEMS: usize = 1 << 21;

/// The sizes of one convolution.
#[derive(Clone, Copy, Debug)]
struct Geom {
    n: usize,
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    kh: usize,
    kw: usize,
    h_out: usize,
    w_out: usize,
    p: Conv2dParams,
}

impl Geom {
    fn new(
        x_dims: (usize, usize, usize, usize),
        w_dims: (usize, usize, usize, usize),
        p: Conv2dParams,
    ) -> Result<Self> {
        let (n, c_in, h, w) = x_dims;
        let (c_out, _, kh, kw) = w_dims;
        let h_out = super::conv_output_len(h, kh, p)?;
        let w_out = super::conv_output_len(w, kw, p)?;
        Ok(Self {
            n,
            c_in,
            h,
            w,
            c_out,
            kh,
            kw,
            h_out,
            w_out,
            p,
        })
    }

    fn hw_in(&self) -> usize {
        self.h * self.w
    }
    fn hw_out(&self) -> usize {
        self.h_out * self.w_out
    }
    /// Rows of one group's im2col block (the inner dimension of its products).
    fn k_g(&self) -> usize {
        self.c_in / self.p.groups * self.kh * self.kw
    }
    fn k_total(&self) -> usize {
        self.c_in * self.kh * self.kw
    }
    fn m_g(&self) -> usize {
        self.c_out / self.p.groups
    }
    fn depthwise(&self) -> bool {
        self.p.groups > 1 && self.p.groups == self.c_in && self.c_out == self.c_in
    }
    /// A 1x1 convolution whose im2col is the input itself.
    fn pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.p.stride == 1 && self.p.padding == 0
    }
    /// Images per chunk: bounded by the scratch budget, and small enough that every thread
    /// gets a chunk.
    fn images_per_chunk(&self) -> usize {
        let per_image = (self.k_total() + self.c_out) * self.hw_out();
        let by_memory = (SCRATCH_ELEMS / per_image.max(1)).max(1);
        by_memory.min(self.n.div_ceil(threads())).max(1)
    }
    /// Columns `[lo, hi)` of an output row whose input index `j*s + tap - padding` lies in
    /// `[0, len)`, for a tap offset `tap = a * dilation`.
    fn valid(&self, out_len: usize, len: usize, tap: usize) -> (usize, usize) {
        let (s, p) = (self.p.stride, self.p.padding);
        let lo = if tap >= p { 0 } else { (p - tap).div_ceil(s) };
        let hi = if len + p > tap {
            (len + p - tap).div_ceil(s).min(out_len)
        } else {
            0
        };
        (lo.min(hi), hi)
    }
}

/// Writes the im2col columns of one image `x: [C_in, H, W]` into `col` (row stride `ld`),
/// columns `col0 .. col0 + H'W'`.
fn im2col<T: Real>(x: &[T], g: &Geom, col: &mut [T], ld: usize, col0: usize) {
    let (s, d, p) = (g.p.stride, g.p.dilation, g.p.padding);
    let hw_out = g.hw_out();
    for c in 0..g.c_in {
        let xc = &x[c * g.hw_in()..(c + 1) * g.hw_in()];
        for a in 0..g.kh {
            for b in 0..g.kw {
                let r = (c * g.kh + a) * g.kw + b;
                let row = &mut col[r * ld + col0..r * ld + col0 + hw_out];
                let (lo, hi) = g.valid(g.w_out, g.w, b * d);
                for i in 0..g.h_out {
                    let dst = &mut row[i * g.w_out..(i + 1) * g.w_out];
                    let y = i * s + a * d;
                    if y < p || y - p >= g.h || lo == hi {
                        dst.fill(T::ZERO);
                        continue;
                    }
                    let src = &xc[(y - p) * g.w..(y - p + 1) * g.w];
                    dst[..lo].fill(T::ZERO);
                    dst[hi..].fill(T::ZERO);
                    let off = lo * s + b * d - p;
                    if s == 1 {
                        dst[lo..hi].copy_from_slice(&src[off..off + hi - lo]);
                    } else {
                        for (t, v) in dst[lo..hi].iter_mut().enumerate() {
                            *v = src[off + t * s];
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: adds the columns `col0 .. col0 + H'W'` of `col` onto the
/// pixels of `dx: [C_in, H, W]` they were read from.
fn col2im<T: Real>(col: &[T], ld: usize, col0: usize, g: &Geom, dx: &mut [T]) {
    let (s, d, p) = (g.p.stride, g.p.dilation, g.p.padding);
    let hw_out = g.hw_out();
    for c in 0..g.c_in {
        let dxc = &mut dx[c * g.hw_in()..(c + 1) * g.hw_in()];
        for a in 0..g.kh {
            for b in 0..g.kw {
                let r = (c * g.kh + a) * g.kw + b;
                let row = &col[r * ld + col0..r * ld + col0 + hw_out];
                let (lo, hi) = g.valid(g.w_out, g.w, b * d);
                if lo == hi {
                    continue;
                }
                for i in 0..g.h_out {
                    let y = i * s + a * d;
                    if y < p || y - p >= g.h {
                        continue;
                    }
                    let src = &row[i * g.w_out..(i + 1) * g.w_out];
                    let dst = &mut dxc[(y - p) * g.w..(y - p + 1) * g.w];
                    let off = lo * s + b * d - p;
                    if s == 1 {
                        for (v, &u) in dst[off..off + hi - lo].iter_mut().zip(&src[lo..hi]) {
                            *v += u;
                        }
                    } else {
                        for (t, &u) in src[lo..hi].iter().enumerate() {
                            dst[off + t * s] += u;
                        }
                    }
                }
            }
        }
    }
}

/// Copies the rows of `nb` images `[C, HW]` (consecutive in `src`) side by side into
/// `dst: [C, nb * HW]`.
fn gather_images<T: Real>(src: &[T], nb: usize, c: usize, hw: usize, dst: &mut [T]) {
    let ld = nb * hw;
    for b in 0..nb {
        for ch in 0..c {
            let s = &src[(b * c + ch) * hw..(b * c + ch + 1) * hw];
            dst[ch * ld + b * hw..ch * ld + (b + 1) * hw].copy_from_slice(s);
        }
    }
}

/// The inverse of [`gather_images`].
fn scatter_images<T: Real>(src: &[T], nb: usize, c: usize, hw: usize, dst: &mut [T]) {
    let ld = nb * hw;
    for b in 0..nb {
        for ch in 0..c {
            let s = &src[ch * ld + b * hw..ch * ld + (b + 1) * hw];
            dst[(b * c + ch) * hw..(b * c + ch + 1) * hw].copy_from_slice(s);
        }
    }
}

/// Splits `data` (consecutive images of `per_image` elements) into the mutable regions of
/// the image ranges `parts`.
fn split_images<'a, T>(
    mut data: &'a mut [T],
    parts: &[std::ops::Range<usize>],
    per_image: usize,
) -> Vec<&'a mut [T]> {
    let mut out = Vec::with_capacity(parts.len());
    for r in parts {
        let (head, tail) = data.split_at_mut(r.len() * per_image);
        out.push(head);
        data = tail;
    }
    out
}

/// Image ranges of the fixed partitions (one per thread) and chunk size.
fn partitions(g: &Geom) -> (Vec<std::ops::Range<usize>>, usize) {
    let chunk = g.images_per_chunk();
    let n_chunks = g.n.div_ceil(chunk);
    let parts = split_even(n_chunks, threads())
        .into_iter()
        .map(|r| r.start * chunk..(r.end * chunk).min(g.n))
        .collect();
    (parts, chunk)
}

fn conv_forward<T: Real>(x: &[T], wt: &[T], g: &Geom) -> Vec<T> {
    if g.depthwise() {
        return depthwise_forward(x, wt, g);
    }
    let (hw_out, k_g, m_g, k_total) = (g.hw_out(), g.k_g(), g.m_g(), g.k_total());
    let mut y = vec![T::ZERO; g.n * g.c_out * hw_out];
    let (parts, chunk) = partitions(g);
    let gemm_threads = if parts.len() > 1 { 1 } else { threads() };
    let regions = split_images(&mut y, &parts, g.c_out * hw_out);
    parts.par_iter().zip(regions).for_each(|(range, y_part)| {
        let mut col = Vec::new();
        let mut y_tmp = Vec::new();
        let mut start = range.start;
        while start < range.end {
            let nb = chunk.min(range.end - start);
            let ld = nb * hw_out;
            let x_chunk = &x[start * g.c_in * g.hw_in()..(start + nb) * g.c_in * g.hw_in()];
            let rhs_data: &[T] = if g.pointwise() && nb == 1 {
                x_chunk
            } else {
                col.resize(k_total * ld, T::ZERO);
                if g.pointwise() {
                    gather_images(x_chunk, nb, g.c_in, hw_out, &mut col);
                } else {
                    for b in 0..nb {
                        im2col(
                            &x_chunk[b * g.c_in * g.hw_in()..],
                            g,
                            &mut col,
                            ld,
                            b * hw_out,
                        );
                    }
                }
                &col
            };
            let y_chunk =
                &mut y_part[(start - range.start) * g.c_out * hw_out..][..nb * g.c_out * hw_out];
            let dst: &mut [T] = if nb == 1 {
                y_chunk
            } else {
                y_tmp.resize(g.c_out * ld, T::ZERO);
                &mut y_tmp
            };
            for grp in 0..g.p.groups {
                let lhs = Mat::rows(&wt[grp * m_g * k_g..], m_g, k_g, k_g);
                let rhs = Mat::rows(&rhs_data[grp * k_g * ld..], k_g, ld, ld);
                matmul(
                    &mut dst[grp * m_g * ld..],
                    ld,
                    lhs,
                    rhs,
                    false,
                    gemm_threads,
                );
            }
            if nb > 1 {
                scatter_images(&y_tmp, nb, g.c_out, hw_out, y_chunk);
            }
            start += nb;
        }
    });
    y
}

fn conv_input_grad<T: Real>(dy: &[T], wt: &[T], g: &Geom) -> Vec<T> {
    if g.depthwise() {
        return depthwise_input_grad(dy, wt, g);
    }
    let (hw_out, k_g, m_g, k_total) = (g.hw_out(), g.k_g(), g.m_g(), g.k_total());
    let per_image_dx = g.c_in * g.hw_in();
    let mut dx = vec![T::ZERO; g.n * per_image_dx];
    let (parts, chunk) = partitions(g);
    let gemm_threads = if parts.len() > 1 { 1 } else { threads() };
    let regions = split_images(&mut dx, &parts, per_image_dx);
    parts.par_iter().zip(regions).for_each(|(range, dx_part)| {
        let mut dcol = Vec::new();
        let mut dy_tmp = Vec::new();
        let mut start = range.start;
        while start < range.end {
            let nb = chunk.min(range.end - start);
            let ld = nb * hw_out;
            let dy_chunk = &dy[start * g.c_out * hw_out..(start + nb) * g.c_out * hw_out];
            let rhs_data: &[T] = if nb == 1 {
                dy_chunk
            } else {
                dy_tmp.resize(g.c_out * ld, T::ZERO);
                gather_images(dy_chunk, nb, g.c_out, hw_out, &mut dy_tmp);
                &dy_tmp
            };
            let dx_chunk =
                &mut dx_part[(start - range.start) * per_image_dx..][..nb * per_image_dx];
            let direct = g.pointwise() && nb == 1;
            let dst: &mut [T] = if direct {
                dx_chunk
            } else {
                dcol.resize(k_total * ld, T::ZERO);
                &mut dcol
            };
            for grp in 0..g.p.groups {
                let lhs = Mat::rows(&wt[grp * m_g * k_g..], m_g, k_g, k_g).t();
                let rhs = Mat::rows(&rhs_data[grp * m_g * ld..], m_g, ld, ld);
                matmul(
                    &mut dst[grp * k_g * ld..],
                    ld,
                    lhs,
                    rhs,
                    false,
                    gemm_threads,
                );
            }
            if !direct {
                if g.pointwise() {
                    scatter_images(&dcol, nb, g.c_in, hw_out, dx_chunk);
                } else {
                    for b in 0..nb {
                        col2im(
                            &dcol,
                            ld,
                            b * hw_out,
                            g,
                            &mut dx_chunk[b * per_image_dx..(b + 1) * per_image_dx],
                        );
                    }
                }
            }
            start += nb;
        }
    });
    dx
}

fn conv_weight_grad<T: Real>(x: &[T], dy: &[T], g: &Geom) -> Vec<T> {
    if g.depthwise() {
        return depthwise_weight_grad(x, dy, g);
    }
    let (hw_out, k_g, m_g, k_total) = (g.hw_out(), g.k_g(), g.m_g(), g.k_total());
    let (parts, chunk) = partitions(g);
    let gemm_threads = if parts.len() > 1 { 1 } else { threads() };
    let partials: Vec<Vec<T>> = parts
        .par_iter()
        .map(|range| {
            let mut dw = vec![T::ZERO; g.c_out * k_g];
            let mut col = Vec::new();
            let mut dy_tmp = Vec::new();
            let mut start = range.start;
            while start < range.end {
                let nb = chunk.min(range.end - start);
                let ld = nb * hw_out;
                let x_chunk = &x[start * g.c_in * g.hw_in()..(start + nb) * g.c_in * g.hw_in()];
                let dy_chunk = &dy[start * g.c_out * hw_out..(start + nb) * g.c_out * hw_out];
                let cols: &[T] = if g.pointwise() && nb == 1 {
                    x_chunk
                } else {
                    col.resize(k_total * ld, T::ZERO);
                    if g.pointwise() {
                        gather_images(x_chunk, nb, g.c_in, hw_out, &mut col);
                    } else {
                        for b in 0..nb {
                            im2col(
                                &x_chunk[b * g.c_in * g.hw_in()..],
                                g,
                                &mut col,
                                ld,
                                b * hw_out,
                            );
                        }
                    }
                    &col
                };
                let dys: &[T] = if nb == 1 {
                    dy_chunk
                } else {
                    dy_tmp.resize(g.c_out * ld, T::ZERO);
                    gather_images(dy_chunk, nb, g.c_out, hw_out, &mut dy_tmp);
                    &dy_tmp
                };
                for grp in 0..g.p.groups {
                    let lhs = Mat::rows(&dys[grp * m_g * ld..], m_g, ld, ld);
                    let rhs = Mat::rows(&cols[grp * k_g * ld..], k_g, ld, ld).t();
                    matmul(
                        &mut dw[grp * m_g * k_g..],
                        k_g,
                        lhs,
                        rhs,
                        true,
                        gemm_threads,
                    );
                }
                start += nb;
            }
            dw
        })
        .collect();
    sum_in_order(partials)
}

/// Adds per-partition partial sums in partition order.
fn sum_in_order<T: Real>(partials: Vec<Vec<T>>) -> Vec<T> {
    let mut it = partials.into_iter();
    let mut total = it.next().unwrap_or_default();
    for part in it {
        for (t, p) in total.iter_mut().zip(part) {
            *t += p;
        }
    }
    total
}

/// Planes per rayon task so that small planes are not scheduled one by one.
fn planes_per_task(plane: usize) -> usize {
    (4096 / plane.max(1)).max(1)
}

fn depthwise_forward<T: Real>(x: &[T], wt: &[T], g: &Geom) -> Vec<T> {
    let (s, d, p) = (g.p.stride, g.p.dilation, g.p.padding);
    let (hw_in, hw_out, taps) = (g.hw_in(), g.hw_out(), g.kh * g.kw);
    let ranges: Vec<(usize, usize)> = (0..g.kw).map(|b| g.valid(g.w_out, g.w, b * d)).collect();
    let mut y = vec![T::ZERO; g.n * g.c_out * hw_out];
    y.par_chunks_mut(hw_out)
        .with_min_len(planes_per_task(hw_out))
        .enumerate()
        .for_each(|(plane, yp)| {
            let c = plane % g.c_in;
            let xp = &x[plane * hw_in..(plane + 1) * hw_in];
            let wk = &wt[c * taps..(c + 1) * taps];
            for i in 0..g.h_out {
                let yrow = &mut yp[i * g.w_out..(i + 1) * g.w_out];
                for a in 0..g.kh {
                    let yy = i * s + a * d;
                    if yy < p || yy - p >= g.h {
                        continue;
                    }
                    let xrow = &xp[(yy - p) * g.w..(yy - p + 1) * g.w];
                    for (b, &(lo, hi)) in ranges.iter().enumerate() {
                        if lo == hi {
                            continue;
                        }
                        let wv = wk[a * g.kw + b];
                        let off = lo * s + b * d - p;
                        if s == 1 {
                            for (v, &u) in yrow[lo..hi].iter_mut().zip(&xrow[off..off + hi - lo]) {
                                *v += wv * u;
                            }
                        } else {
                            for (t, v) in yrow[lo..hi].iter_mut().enumerate() {
                                *v += wv * xrow[off + t * s];
                            }
                        }
                    }
                }
            }
        });
    y
}

fn depthwise_input_grad<T: Real>(dy: &[T], wt: &[T], g: &Geom) -> Vec<T> {
    let (s, d, p) = (g.p.stride, g.p.dilation, g.p.padding);
    let (hw_in, hw_out, taps) = (g.hw_in(), g.hw_out(), g.kh * g.kw);
    let ranges: Vec<(usize, usize)> = (0..g.kw).map(|b| g.valid(g.w_out, g.w, b * d)).collect();
    let mut dx = vec![T::ZERO; g.n * g.c_in * hw_in];
    dx.par_chunks_mut(hw_in)
        .with_min_len(planes_per_task(hw_in))
        .enumerate()
        .for_each(|(plane, dxp)| {
            let c = plane % g.c_in;
            let dyp = &dy[plane * hw_out..(plane + 1) * hw_out];
            let wk = &wt[c * taps..(c + 1) * taps];
            for i in 0..g.h_out {
                let dyrow = &dyp[i * g.w_out..(i + 1) * g.w_out];
                for a in 0..g.kh {
                    let yy = i * s + a * d;
                    if yy < p || yy - p >= g.h {
                        continue;
                    }
                    let dxrow = &mut dxp[(yy - p) * g.w..(yy - p + 1) * g.w];
                    for (b, &(lo, hi)) in ranges.iter().enumerate() {
                        if lo == hi {
                            continue;
                        }
                        let wv = wk[a * g.kw + b];
                        let off = lo * s + b * d - p;
                        if s == 1 {
                            for (v, &u) in dxrow[off..off + hi - lo].iter_mut().zip(&dyrow[lo..hi])
                            {
                                *v += wv * u;
                            }
                        } else {
                            for (t, &u) in dyrow[lo..hi].iter().enumerate() {
                                dxrow[off + t * s] += wv * u;
                            }
                        }
                    }
                }
            }
        });
    dx
}

fn depthwise_weight_grad<T: Real>(x: &[T], dy: &[T], g: &Geom) -> Vec<T> {
    let (s, d, p) = (g.p.stride, g.p.dilation, g.p.padding);
    let (hw_in, hw_out, taps) = (g.hw_in(), g.hw_out(), g.kh * g.kw);
    let ranges: Vec<(usize, usize)> = (0..g.kw).map(|b| g.valid(g.w_out, g.w, b * d)).collect();
    let mut dw = vec![T::ZERO; g.c_out * taps];
    dw.par_chunks_mut(taps).enumerate().for_each(|(c, dwc)| {
        let mut gathered = vec![T::ZERO; g.w_out];
        for n in 0..g.n {
            let plane = n * g.c_in + c;
            let xp = &x[plane * hw_in..(plane + 1) * hw_in];
            let dyp = &dy[plane * hw_out..(plane + 1) * hw_out];
            for i in 0..g.h_out {
                let dyrow = &dyp[i * g.w_out..(i + 1) * g.w_out];
                for a in 0..g.kh {
                    let yy = i * s + a * d;
                    if yy < p || yy - p >= g.h {
                        continue;
                    }
                    let xrow = &xp[(yy - p) * g.w..(yy - p + 1) * g.w];
                    for (b, &(lo, hi)) in ranges.iter().enumerate() {
                        if lo == hi {
                            continue;
                        }
                        let off = lo * s + b * d - p;
                        let xs: &[T] = if s == 1 {
                            &xrow[off..off + hi - lo]
                        } else {
                            for (t, v) in gathered[..hi - lo].iter_mut().enumerate() {
                                *v = xrow[off + t * s];
                            }
                            &gathered[..hi - lo]
                        };
                        dwc[a * g.kw + b] += super::kernel::dot(&dyrow[lo..hi], xs);
                    }
                }
            }
        }
    });
    dw
}

/// Whether a gradient with respect to `t` can be needed.
fn needs_grad(t: &Tensor) -> bool {
    t.track_op()
}

/// `conv2d(xs, weight)` as a custom op: the forward and both gradients are fused kernels.
pub(crate) struct Conv2dOp {
    pub p: Conv2dParams,
}

impl CustomOp2 for Conv2dOp {
    fn name(&self) -> &'static str {
        "dptq-conv2d"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geom::new(xl.shape().dims4()?, wl.shape().dims4()?, self.p)?;
        dispatch_real!(self.name(), xs, T => {
            let x = contiguous::<T>(xs, xl, self.name())?;
            let w = contiguous::<T>(ws, wl, self.name())?;
            let y = conv_forward(x, w, &g);
            Ok((storage(y), Shape::from((g.n, g.c_out, g.h_out, g.w_out))))
        })
    }

    fn bwd(
        &self,
        xs: &Tensor,
        weight: &Tensor,
        _ys: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let dx = if needs_grad(xs) {
            let (_, _, h, w) = xs.dims4()?;
            Some(dy.apply_op2_no_bwd(weight, &Conv2dInputGrad { p: self.p, h, w })?)
        } else {
            None
        };
        let dw = if needs_grad(weight) {
            let (_, _, kh, kw) = weight.dims4()?;
            let c_out = weight.dim(0)?;
            Some(xs.apply_op2_no_bwd(
                &dy,
                &Conv2dWeightGrad {
                    p: self.p,
                    c_out,
                    kh,
                    kw,
                },
            )?)
        } else {
            None
        };
        Ok((dx, dw))
    }
}

/// `(dy, weight) -> dx` for an input of spatial size `h x w`.
struct Conv2dInputGrad {
    p: Conv2dParams,
    h: usize,
    w: usize,
}

impl CustomOp2 for Conv2dInputGrad {
    fn name(&self) -> &'static str {
        "dptq-conv2d-input-grad"
    }

    fn cpu_fwd(
        &self,
        dys: &CpuStorage,
        dyl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, _, _, _) = dyl.shape().dims4()?;
        let (c_out, c_in_g, kh, kw) = wl.shape().dims4()?;
        let c_in = c_in_g * self.p.groups;
        let g = Geom::new((n, c_in, self.h, self.w), (c_out, c_in_g, kh, kw), self.p)?;
        if dyl.dims() != [n, c_out, g.h_out, g.w_out] {
            candle_core::bail!(
                "{}: gradient {:?} does not match the output of {g:?}",
                self.name(),
                dyl.dims()
            );
        }
        dispatch_real!(self.name(), dys, T => {
            let dy = contiguous::<T>(dys, dyl, self.name())?;
            let w = contiguous::<T>(ws, wl, self.name())?;
            let dx = conv_input_grad(dy, w, &g);
            Ok((storage(dx), Shape::from((n, c_in, self.h, self.w))))
        })
    }
}

/// `(xs, dy) -> dweight` for a kernel `[c_out, C_in/groups, kh, kw]`.
struct Conv2dWeightGrad {
    p: Conv2dParams,
    c_out: usize,
    kh: usize,
    kw: usize,
}

impl CustomOp2 for Conv2dWeightGrad {
    fn name(&self) -> &'static str {
        "dptq-conv2d-weight-grad"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        dys: &CpuStorage,
        dyl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x_dims = xl.shape().dims4()?;
        let c_in_g = x_dims.1 / self.p.groups;
        let g = Geom::new(x_dims, (self.c_out, c_in_g, self.kh, self.kw), self.p)?;
        if dyl.dims() != [g.n, g.c_out, g.h_out, g.w_out] {
            candle_core::bail!(
                "{}: gradient {:?} does not match the output of {g:?}",
                self.name(),
                dyl.dims()
            );
        }
        dispatch_real!(self.name(), xs, T => {
            let x = contiguous::<T>(xs, xl, self.name())?;
            let dy = contiguous::<T>(dys, dyl, self.name())?;
            let dw = conv_weight_grad(x, dy, &g);
            Ok((storage(dw), Shape::from((self.c_out, c_in_g, self.kh, self.kw))))
        })
    }
}
