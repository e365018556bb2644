//! Fused CPU convolution: im2col + gemm for dense and grouped convolutions, direct
//! shift-and-add loops for depthwise ones, with backward passes of the same kind.
//!
//! For one image and one group `g`, with `col = im2col(x)` (`[C_in/groups * kh * kw, H'W']`,
//! row `(c, a, b)` holding the input pixels that tap `(a, b)` of channel `c` reads):
//! - forward: `y_g = W_g * col_g`
//! - input gradient: for stride 1, a forward convolution of `dy` with the flipped,
//!   transposed kernel and padding `d(k - 1) - p`; otherwise `dx = col2im(W_g^T * dy_g)`
//!   (col2im is the adjoint of im2col: it adds each column entry back onto the pixel it
//!   was read from)
//! - weight gradient: `dW_g = sum_n dy_g * col_g^T`
//!
//! The columns are built and consumed in tiles that fit in the L2 cache: a range of output
//! positions of one image, or several whole images when images are small. The batch is
//! split over rayon threads in fixed contiguous ranges of images; weight gradients are
//! summed per range, then over ranges in order.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::Conv2dParams;
use super::kernel::{
    Mat, Real, contiguous, dispatch_real, matmul, simd, split_even, storage, threads,
};

/// Bytes of scratch per tile (im2col columns plus the output columns). Measured on a
/// 1 MiB-L2 machine: 384 KiB tiles ran the 16-channel 28x28 convolution 1.5x slower than
/// 768 KiB-1.5 MiB ones (more, smaller products), 64x56x56 unchanged.
const TILE_BYTES: usize = 1 << 20;
/// The narrowest tile, in columns, whatever the channel count.
const MIN_TILE_COLS: usize = 64;

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

    /// The tiles over the images `images`, in order.
    fn tiles<T>(&self, images: std::ops::Range<usize>) -> Vec<Tile> {
        let per_col = (self.k_total() + self.c_out) * std::mem::size_of::<T>();
        let cols = (TILE_BYTES / per_col.max(1)).max(MIN_TILE_COLS);
        let hw = self.hw_out();
        let mut tiles = Vec::new();
        if hw >= cols {
            let n_tiles = hw.div_ceil(cols);
            let width = hw.div_ceil(n_tiles);
            for n in images {
                for q0 in (0..hw).step_by(width) {
                    tiles.push(Tile {
                        n0: n,
                        n1: n + 1,
                        q0,
                        q1: (q0 + width).min(hw),
                    });
                }
            }
        } else {
            let per_tile = (cols / hw.max(1)).max(1);
            let mut n0 = images.start;
            while n0 < images.end {
                let n1 = (n0 + per_tile).min(images.end);
                tiles.push(Tile {
                    n0,
                    n1,
                    q0: 0,
                    q1: hw,
                });
                n0 = n1;
            }
        }
        tiles
    }

    /// The geometry of the stride-1 input gradient as a forward convolution of `dy` with
    /// the flipped, transposed kernel, when its padding `d(k - 1) - p` is not negative.
    fn transposed(&self) -> Option<Geom> {
        let d = self.p.dilation;
        let span = d * (self.kh - 1).min(self.kw - 1);
        if self.p.stride != 1 || self.kh != self.kw || self.p.padding > span {
            return None;
        }
        let p = Conv2dParams {
            padding: span - self.p.padding,
            ..self.p
        };
        Some(Geom {
            n: self.n,
            c_in: self.c_out,
            h: self.h_out,
            w: self.w_out,
            c_out: self.c_in,
            kh: self.kh,
            kw: self.kw,
            h_out: self.h,
            w_out: self.w,
            p,
        })
    }
}

/// Images `[n0, n1)` and output positions `[q0, q1)` of each (all positions when the tile
/// holds several images).
#[derive(Clone, Copy, Debug)]
struct Tile {
    n0: usize,
    n1: usize,
    q0: usize,
    q1: usize,
}

impl Tile {
    fn images(&self) -> usize {
        self.n1 - self.n0
    }
    fn cols(&self) -> usize {
        self.images() * (self.q1 - self.q0)
    }
}

/// The row segments `(i, j_start, j_end, column)` of output positions `[q0, q1)`.
fn segments(g: &Geom, q0: usize, q1: usize) -> Vec<(usize, usize, usize, usize)> {
    let mut segs = Vec::new();
    let mut q = q0;
    while q < q1 {
        let (i, j) = (q / g.w_out, q % g.w_out);
        let je = g.w_out.min(j + q1 - q);
        segs.push((i, j, je, q - q0));
        q += je - j;
    }
    segs
}

/// Writes the im2col columns of output positions `[q0, q1)` of one image `x: [C_in, H, W]`
/// into `col` (row stride `ld`), from column `col0` on.
fn im2col<T: Real>(
    x: &[T],
    g: &Geom,
    (q0, q1): (usize, usize),
    col: &mut [T],
    ld: usize,
    col0: usize,
) {
    simd(
        #[inline(always)]
        || {
            let (s, d, p) = (g.p.stride, g.p.dilation, g.p.padding);
            let segs = segments(g, q0, q1);
            let ranges: Vec<(usize, usize)> =
                (0..g.kw).map(|b| g.valid(g.w_out, g.w, b * d)).collect();
            if s == 1 && g.w_out == g.w {
                return im2col_same(x, g, (q0, q1), col, ld, col0, &segs, &ranges);
            }
            for c in 0..g.c_in {
                let xc = &x[c * g.hw_in()..(c + 1) * g.hw_in()];
                for a in 0..g.kh {
                    for (b, &(lo, hi)) in ranges.iter().enumerate() {
                        let r = (c * g.kh + a) * g.kw + b;
                        let row = &mut col[r * ld + col0..r * ld + col0 + q1 - q0];
                        for &(i, js, je, t0) in &segs {
                            let dst = &mut row[t0..t0 + je - js];
                            let y = i * s + a * d;
                            let (l, h) = (lo.clamp(js, je), hi.clamp(js, je));
                            if y < p || y - p >= g.h || l == h {
                                dst.fill(T::ZERO);
                                continue;
                            }
                            let src = &xc[(y - p) * g.w..(y - p + 1) * g.w];
                            dst[..l - js].fill(T::ZERO);
                            dst[h - js..].fill(T::ZERO);
                            let off = l * s + b * d - p;
                            let dst = &mut dst[l - js..h - js];
                            if s == 1 {
                                dst.copy_from_slice(&src[off..off + h - l]);
                            } else {
                                for (t, v) in dst.iter_mut().enumerate() {
                                    *v = src[off + t * s];
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// [`im2col`] for stride 1 and an output as wide as the input ("same" padding): the row of
/// tap `(a, b)` is the input plane shifted by `(a*d - p) * W + (b*d - p)` positions, copied
/// in one piece, then the positions that fall outside the image (the padding) are zeroed.
fn im2col_same<T: Real>(
    x: &[T],
    g: &Geom,
    (q0, q1): (usize, usize),
    col: &mut [T],
    ld: usize,
    col0: usize,
    segs: &[(usize, usize, usize, usize)],
    ranges: &[(usize, usize)],
) {
    simd(
        #[inline(always)]
        || {
            let (d, p, hw) = (
                g.p.dilation as isize,
                g.p.padding as isize,
                g.hw_in() as isize,
            );
            for c in 0..g.c_in {
                let xc = &x[c * g.hw_in()..(c + 1) * g.hw_in()];
                for a in 0..g.kh {
                    for (b, &(lo, hi)) in ranges.iter().enumerate() {
                        let r = (c * g.kh + a) * g.kw + b;
                        let row = &mut col[r * ld + col0..r * ld + col0 + q1 - q0];
                        let shift = (a as isize * d - p) * g.w as isize + (b as isize * d - p);
                        let start = (q0 as isize).max(-shift).min(q1 as isize);
                        let end = (q1 as isize).min(hw - shift).max(start);
                        let (l, h) = ((start - q0 as isize) as usize, (end - q0 as isize) as usize);
                        row[..l].fill(T::ZERO);
                        row[h..].fill(T::ZERO);
                        row[l..h]
                            .copy_from_slice(&xc[(start + shift) as usize..(end + shift) as usize]);
                        for &(i, js, je, t0) in segs {
                            let y = (i + a * g.p.dilation) as isize - p;
                            let seg = &mut row[t0..t0 + je - js];
                            if y < 0 || y >= g.h as isize {
                                seg.fill(T::ZERO);
                                continue;
                            }
                            // At most `padding` columns on either side: plain stores, no memset call.
                            for j in js..lo.clamp(js, je) {
                                seg[j - js] = T::ZERO;
                            }
                            for j in hi.clamp(js, je)..je {
                                seg[j - js] = T::ZERO;
                            }
                        }
                    }
                }
            }
        },
    )
}

/// The adjoint of [`im2col`]: adds the columns of output positions `[q0, q1)` (from column
/// `col0` of `col`) onto the pixels of `dx: [C_in, H, W]` they were read from.
fn col2im<T: Real>(
    col: &[T],
    ld: usize,
    col0: usize,
    g: &Geom,
    (q0, q1): (usize, usize),
    dx: &mut [T],
) {
    simd(
        #[inline(always)]
        || {
            let (s, d, p) = (g.p.stride, g.p.dilation, g.p.padding);
            let segs = segments(g, q0, q1);
            let ranges: Vec<(usize, usize)> =
                (0..g.kw).map(|b| g.valid(g.w_out, g.w, b * d)).collect();
            for c in 0..g.c_in {
                let dxc = &mut dx[c * g.hw_in()..(c + 1) * g.hw_in()];
                for a in 0..g.kh {
                    for (b, &(lo, hi)) in ranges.iter().enumerate() {
                        let r = (c * g.kh + a) * g.kw + b;
                        let row = &col[r * ld + col0..r * ld + col0 + q1 - q0];
                        for &(i, js, je, t0) in &segs {
                            let y = i * s + a * d;
                            let (l, h) = (lo.clamp(js, je), hi.clamp(js, je));
                            if y < p || y - p >= g.h || l == h {
                                continue;
                            }
                            let src = &row[t0 + l - js..t0 + h - js];
                            let dst = &mut dxc[(y - p) * g.w..(y - p + 1) * g.w];
                            let off = l * s + b * d - p;
                            if s == 1 {
                                for (v, &u) in dst[off..off + h - l].iter_mut().zip(src) {
                                    *v += u;
                                }
                            } else {
                                for (t, &u) in src.iter().enumerate() {
                                    dst[off + t * s] += u;
                                }
                            }
                        }
                    }
                }
            }
        },
    )
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

/// The fixed image ranges, one per thread, and the threads each range's products may use
/// (all of them when there is a single range).
fn partitions(n: usize) -> (Vec<std::ops::Range<usize>>, usize) {
    let parts = split_even(n, threads());
    let gemm_threads = if parts.len() > 1 { 1 } else { threads() };
    (parts, gemm_threads)
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

/// The im2col of narrow or strided convolutions as a gather: every image is copied once
/// into zero-padded planes (`(H + 2p) x (W + 2p)` per channel), then each row `(c, a, b)`
/// reads the padded pixel of every output position through a table of indices computed once
/// per call. No bounds logic per pixel, no short copies.
struct GatherTable {
    hp: usize,
    wp: usize,
    /// `[kh * kw, H'W']`: padded-plane index read by tap `(a, b)` at output `(i, j)`.
    idx: Vec<u32>,
}

impl GatherTable {
    fn new(g: &Geom) -> Self {
        let (s, d, p) = (g.p.stride, g.p.dilation, g.p.padding);
        let (hp, wp) = (g.h + 2 * p, g.w + 2 * p);
        let mut idx = Vec::with_capacity(g.kh * g.kw * g.hw_out());
        for a in 0..g.kh {
            for b in 0..g.kw {
                for i in 0..g.h_out {
                    for j in 0..g.w_out {
                        idx.push(((i * s + a * d) * wp + j * s + b * d) as u32);
                    }
                }
            }
        }
        Self { hp, wp, idx }
    }

    fn plane(&self) -> usize {
        self.hp * self.wp
    }

    /// Copies `x: [C_in, H, W]` into the interiors of the padded planes (whose borders stay
    /// zero).
    fn pad<T: Real>(&self, x: &[T], g: &Geom, padded: &mut [T]) {
        let p = g.p.padding;
        for c in 0..g.c_in {
            let src = &x[c * g.hw_in()..(c + 1) * g.hw_in()];
            let dst = &mut padded[c * self.plane()..(c + 1) * self.plane()];
            for (y, row) in src.chunks_exact(g.w).enumerate() {
                dst[(y + p) * self.wp + p..(y + p) * self.wp + p + g.w].copy_from_slice(row);
            }
        }
    }

    /// Writes the columns of positions `[q0, q1)` from the padded planes.
    fn im2col<T: Real>(
        &self,
        padded: &[T],
        g: &Geom,
        (q0, q1): (usize, usize),
        col: &mut [T],
        ld: usize,
        col0: usize,
    ) {
        simd(
            #[inline(always)]
            || {
                let (taps, hw_out) = (g.kh * g.kw, g.hw_out());
                for c in 0..g.c_in {
                    let src = &padded[c * self.plane()..(c + 1) * self.plane()];
                    for t in 0..taps {
                        let r = c * taps + t;
                        let row = &mut col[r * ld + col0..r * ld + col0 + q1 - q0];
                        for (v, &i) in row
                            .iter_mut()
                            .zip(&self.idx[t * hw_out + q0..t * hw_out + q1])
                        {
                            *v = src[i as usize];
                        }
                    }
                }
            },
        )
    }

    /// The adjoint of [`GatherTable::im2col`] over all positions of one image: adds the
    /// columns onto zeroed padded planes, then writes their interiors to `dx: [C_in, H, W]`.
    fn col2im<T: Real>(
        &self,
        col: &[T],
        ld: usize,
        col0: usize,
        g: &Geom,
        padded: &mut [T],
        dx: &mut [T],
    ) {
        simd(
            #[inline(always)]
            || {
                let (taps, hw_out, p) = (g.kh * g.kw, g.hw_out(), g.p.padding);
                padded.fill(T::ZERO);
                for c in 0..g.c_in {
                    let dst = &mut padded[c * self.plane()..(c + 1) * self.plane()];
                    for t in 0..taps {
                        let r = c * taps + t;
                        let row = &col[r * ld + col0..r * ld + col0 + hw_out];
                        for (&u, &i) in row.iter().zip(&self.idx[t * hw_out..(t + 1) * hw_out]) {
                            dst[i as usize] += u;
                        }
                    }
                    let out = &mut dx[c * g.hw_in()..(c + 1) * g.hw_in()];
                    for (y, row) in out.chunks_exact_mut(g.w).enumerate() {
                        row.copy_from_slice(
                            &dst[(y + p) * self.wp + p..(y + p) * self.wp + p + g.w],
                        );
                    }
                }
            },
        )
    }
}

impl Geom {
    /// Whether im2col goes through padded planes and a gather table: every non-pointwise
    /// convolution except stride-1 "same" ones on planes at least 8 wide (those copy whole
    /// shifted planes, see [`im2col_same`]).
    fn gathers(&self) -> bool {
        !self.pointwise() && (self.p.stride != 1 || self.w_out != self.w || self.w_out < 8)
    }
}

/// Builds the im2col columns of tiles, reusing its buffers from tile to tile.
struct Columns<'g, T> {
    g: &'g Geom,
    table: Option<&'g GatherTable>,
    padded: Vec<T>,
    /// The image whose padded planes `padded` holds.
    padded_image: Option<usize>,
    col: Vec<T>,
}

impl<'g, T: Real> Columns<'g, T> {
    fn new(g: &'g Geom, table: Option<&'g GatherTable>) -> Self {
        Self {
            g,
            table,
            padded: Vec::new(),
            padded_image: None,
            col: Vec::new(),
        }
    }

    /// The im2col rows of `tile` (images taken from `x`, which starts at image `first`)
    /// and their row stride: the column buffer, or `x` itself for a single-image pointwise
    /// tile.
    fn tile<'s>(&'s mut self, x: &'s [T], first: usize, tile: &Tile) -> (&'s [T], usize) {
        let g = self.g;
        let per_image = g.c_in * g.hw_in();
        if g.pointwise() && tile.images() == 1 {
            let x_img = &x[(tile.n0 - first) * per_image..(tile.n0 - first + 1) * per_image];
            return (&x_img[tile.q0..], g.hw_in());
        }
        let ld = tile.cols();
        self.col.resize(g.k_total() * ld, T::ZERO);
        if g.pointwise() {
            let images = &x[(tile.n0 - first) * per_image..(tile.n1 - first) * per_image];
            gather_images(images, tile.images(), g.c_in, g.hw_in(), &mut self.col);
            return (&self.col, ld);
        }
        for (b, n) in (tile.n0..tile.n1).enumerate() {
            let x_img = &x[(n - first) * per_image..(n - first + 1) * per_image];
            let col0 = b * (tile.q1 - tile.q0);
            match self.table {
                Some(table) => {
                    if self.padded_image != Some(n) {
                        self.padded.resize(g.c_in * table.plane(), T::ZERO);
                        table.pad(x_img, g, &mut self.padded);
                        self.padded_image = Some(n);
                    }
                    table.im2col(&self.padded, g, (tile.q0, tile.q1), &mut self.col, ld, col0);
                }
                None => im2col(x_img, g, (tile.q0, tile.q1), &mut self.col, ld, col0),
            }
        }
        (&self.col, ld)
    }
}

/// The rows of `dy: [C_out, H'W']` for `tile` (images from `dy`, which starts at image
/// `first`): a view for a single image, else gathered into `buf`.
fn tile_rows<'a, T: Real>(
    dy: &'a [T],
    first: usize,
    c: usize,
    hw: usize,
    tile: &Tile,
    buf: &'a mut Vec<T>,
) -> (&'a [T], usize) {
    if tile.images() == 1 {
        return (&dy[(tile.n0 - first) * c * hw + tile.q0..], hw);
    }
    buf.resize(c * tile.cols(), T::ZERO);
    gather_images(
        &dy[(tile.n0 - first) * c * hw..(tile.n1 - first) * c * hw],
        tile.images(),
        c,
        hw,
        buf,
    );
    (buf, tile.cols())
}

fn conv_forward<T: Real>(x: &[T], wt: &[T], g: &Geom) -> Vec<T> {
    if g.depthwise() {
        return depthwise_forward(x, wt, g);
    }
    let (hw_out, k_g, m_g) = (g.hw_out(), g.k_g(), g.m_g());
    let per_image_x = g.c_in * g.hw_in();
    let per_image_y = g.c_out * hw_out;
    let mut y = vec![T::ZERO; g.n * per_image_y];
    let (parts, gemm_threads) = partitions(g.n);
    let table = g.gathers().then(|| GatherTable::new(g));
    let regions = split_images(&mut y, &parts, per_image_y);
    parts.par_iter().zip(regions).for_each(|(range, y_part)| {
        let x_part = &x[range.start * per_image_x..range.end * per_image_x];
        let mut columns = Columns::new(g, table.as_ref());
        let mut y_tmp = Vec::new();
        for tile in g.tiles::<T>(range.clone()) {
            let (rhs, rhs_rs) = columns.tile(x_part, range.start, &tile);
            let cols = tile.cols();
            let single = tile.images() == 1;
            let y_tile = &mut y_part
                [(tile.n0 - range.start) * per_image_y..(tile.n1 - range.start) * per_image_y];
            let (dst, dst_rs): (&mut [T], usize) = if single {
                (&mut y_tile[tile.q0..], hw_out)
            } else {
                y_tmp.resize(g.c_out * cols, T::ZERO);
                (&mut y_tmp, cols)
            };
            for grp in 0..g.p.groups {
                let lhs = Mat::rows(&wt[grp * m_g * k_g..], m_g, k_g, k_g);
                let rhs = Mat::rows(&rhs[grp * k_g * rhs_rs..], k_g, cols, rhs_rs);
                matmul(
                    &mut dst[grp * m_g * dst_rs..],
                    dst_rs,
                    lhs,
                    rhs,
                    false,
                    gemm_threads,
                );
            }
            if !single {
                scatter_images(&y_tmp, tile.images(), g.c_out, hw_out, y_tile);
            }
        }
    });
    y
}

/// `W[o, c, a, b] -> W'[c, o, kh-1-a, kw-1-b]` within each group: the kernel of the
/// stride-1 input gradient as a forward convolution.
fn flip_transpose<T: Real>(wt: &[T], g: &Geom) -> Vec<T> {
    let (m_g, c_g, taps) = (g.m_g(), g.c_in / g.p.groups, g.kh * g.kw);
    let mut out = vec![T::ZERO; wt.len()];
    for grp in 0..g.p.groups {
        for o in 0..m_g {
            for c in 0..c_g {
                let src = &wt[((grp * m_g + o) * c_g + c) * taps..][..taps];
                let dst = &mut out[((grp * c_g + c) * m_g + o) * taps..][..taps];
                for (t, v) in dst.iter_mut().enumerate() {
                    *v = src[taps - 1 - t];
                }
            }
        }
    }
    out
}

fn conv_input_grad<T: Real>(dy: &[T], wt: &[T], g: &Geom) -> Vec<T> {
    if g.depthwise() {
        return depthwise_input_grad(dy, wt, g);
    }
    if let Some(gt) = g.transposed() {
        return conv_forward(dy, &flip_transpose(wt, g), &gt);
    }
    let (hw_out, k_g, m_g) = (g.hw_out(), g.k_g(), g.m_g());
    let per_image_dx = g.c_in * g.hw_in();
    let per_image_dy = g.c_out * hw_out;
    let mut dx = vec![T::ZERO; g.n * per_image_dx];
    let (parts, gemm_threads) = partitions(g.n);
    let table = g.gathers().then(|| GatherTable::new(g));
    let regions = split_images(&mut dx, &parts, per_image_dx);
    parts.par_iter().zip(regions).for_each(|(range, dx_part)| {
        let dy_part = &dy[range.start * per_image_dy..range.end * per_image_dy];
        let (mut dcol, mut dy_tmp, mut padded) = (Vec::new(), Vec::new(), Vec::new());
        for tile in g.tiles::<T>(range.clone()) {
            let (rhs, rhs_rs) =
                tile_rows(dy_part, range.start, g.c_out, hw_out, &tile, &mut dy_tmp);
            let cols = tile.cols();
            dcol.resize(g.k_total() * cols, T::ZERO);
            for grp in 0..g.p.groups {
                let lhs = Mat::rows(&wt[grp * m_g * k_g..], m_g, k_g, k_g).t();
                let rhs = Mat::rows(&rhs[grp * m_g * rhs_rs..], m_g, cols, rhs_rs);
                matmul(
                    &mut dcol[grp * k_g * cols..],
                    cols,
                    lhs,
                    rhs,
                    false,
                    gemm_threads,
                );
            }
            for (b, n) in (tile.n0..tile.n1).enumerate() {
                let dx_img = &mut dx_part
                    [(n - range.start) * per_image_dx..(n - range.start + 1) * per_image_dx];
                if let Some(table) = table.as_ref().filter(|_| tile.q0 == 0 && tile.q1 == hw_out) {
                    padded.resize(g.c_in * table.plane(), T::ZERO);
                    table.col2im(&dcol, cols, b * hw_out, g, &mut padded, dx_img);
                    continue;
                }
                col2im(
                    &dcol,
                    cols,
                    b * (tile.q1 - tile.q0),
                    g,
                    (tile.q0, tile.q1),
                    dx_img,
                );
            }
        }
    });
    dx
}

fn conv_weight_grad<T: Real>(x: &[T], dy: &[T], g: &Geom) -> Vec<T> {
    if g.depthwise() {
        return depthwise_weight_grad(x, dy, g);
    }
    let (hw_out, k_g, m_g) = (g.hw_out(), g.k_g(), g.m_g());
    let per_image_x = g.c_in * g.hw_in();
    let per_image_dy = g.c_out * hw_out;
    let (parts, gemm_threads) = partitions(g.n);
    let table = g.gathers().then(|| GatherTable::new(g));
    let partials: Vec<Vec<T>> = parts
        .par_iter()
        .map(|range| {
            let x_part = &x[range.start * per_image_x..range.end * per_image_x];
            let dy_part = &dy[range.start * per_image_dy..range.end * per_image_dy];
            let mut dw = vec![T::ZERO; g.c_out * k_g];
            let mut columns = Columns::new(g, table.as_ref());
            let mut dy_tmp = Vec::new();
            for tile in g.tiles::<T>(range.clone()) {
                let (cols_m, cols_rs) = columns.tile(x_part, range.start, &tile);
                let (dys, dys_rs) =
                    tile_rows(dy_part, range.start, g.c_out, hw_out, &tile, &mut dy_tmp);
                let cols = tile.cols();
                for grp in 0..g.p.groups {
                    let lhs = Mat::rows(&dys[grp * m_g * dys_rs..], m_g, cols, dys_rs);
                    let rhs = Mat::rows(&cols_m[grp * k_g * cols_rs..], k_g, cols, cols_rs).t();
                    matmul(
                        &mut dw[grp * m_g * k_g..],
                        k_g,
                        lhs,
                        rhs,
                        true,
                        gemm_threads,
                    );
                }
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

/// Depthwise convolutions with stride 1 and "same" width (`W' = W`): each tap `(a, b)` is
/// one long multiply-add over the plane shifted by `(a*d - p) * W + (b*d - p)` positions.
/// Positions whose tap falls outside the image would read a neighbouring row; the operand
/// they read is zeroed in a masked copy of the plane (one per kernel column `b`), so every
/// such term adds an exact zero.
mod depthwise_same {
    use super::{Geom, Real, planes_per_task};
    use crate::ops::kernel::{dot, simd};
    use rayon::prelude::*;

    /// Signed offset of kernel column `b` (`b*d - p`).
    #[inline(always)]
    fn col_offset(g: &Geom, b: usize) -> isize {
        (b * g.p.dilation) as isize - g.p.padding as isize
    }

    /// Signed offset of kernel row `a` (`a*d - p`).
    #[inline(always)]
    fn row_offset(g: &Geom, a: usize) -> isize {
        (a * g.p.dilation) as isize - g.p.padding as isize
    }

    /// Copies an input plane with the columns that only positions outside the image read
    /// through tap column offset `o` set to zero.
    #[inline(always)]
    fn mask_input<T: Real>(src: &[T], w: usize, o: isize, dst: &mut [T]) {
        dst.copy_from_slice(src);
        let (lo, hi) = if o < 0 {
            ((w as isize + o).max(0) as usize, w)
        } else {
            (0, (o as usize).min(w))
        };
        for row in dst.chunks_exact_mut(w) {
            row[lo..hi].fill(T::ZERO);
        }
    }

    /// Copies an output plane with the columns `j` whose tap `j + o` falls outside
    /// `[0, w)` set to zero.
    #[inline(always)]
    fn mask_output<T: Real>(src: &[T], w: usize, o: isize, dst: &mut [T]) {
        dst.copy_from_slice(src);
        let lo = (-o).clamp(0, w as isize) as usize;
        let hi = (w as isize - o).clamp(lo as isize, w as isize) as usize;
        for row in dst.chunks_exact_mut(w) {
            row[..lo].fill(T::ZERO);
            row[hi..].fill(T::ZERO);
        }
    }

    /// Output positions `q0..q1` of tap `(a, b)` whose row is valid and whose input
    /// `q + shift` is inside the plane, as `(q0..q1, q0 + shift..q1 + shift)`; `None` when
    /// there is none.
    #[inline(always)]
    fn span(
        g: &Geom,
        a: usize,
        b: usize,
    ) -> Option<(std::ops::Range<usize>, std::ops::Range<usize>)> {
        let (h, w) = (g.h as isize, g.w as isize);
        let dr = row_offset(g, a);
        let shift = dr * w + col_offset(g, b);
        let i_lo = (-dr).clamp(0, h);
        let i_hi = (h - dr).clamp(i_lo, h);
        let q_lo = (i_lo * w).max(-shift);
        let q_hi = (i_hi * w).min(h * w - shift);
        (q_lo < q_hi).then(|| {
            (
                q_lo as usize..q_hi as usize,
                (q_lo + shift) as usize..(q_hi + shift) as usize,
            )
        })
    }

    pub(super) fn forward<T: Real>(x: &[T], wt: &[T], g: &Geom) -> Vec<T> {
        shift_add::<T, false>(x, wt, g)
    }

    pub(super) fn input_grad<T: Real>(dy: &[T], wt: &[T], g: &Geom) -> Vec<T> {
        shift_add::<T, true>(dy, wt, g)
    }

    /// The pass shared by the forward (`y[out] += w * x[inp]` per tap) and the input
    /// gradient, its adjoint (`dx[inp] += w * dy[out]`): per plane, the source plane with
    /// the columns a tap must not read masked (one copy per kernel column), then each
    /// tap's weighted, shifted copy added in a fixed order. `ADJOINT` is a constant, so
    /// each direction compiles to its own loop.
    fn shift_add<T: Real, const ADJOINT: bool>(src: &[T], wt: &[T], g: &Geom) -> Vec<T> {
        let (hw, taps) = (g.hw_in(), g.kh * g.kw);
        let planes = g.n * if ADJOINT { g.c_in } else { g.c_out };
        let mut dst = vec![T::ZERO; planes * hw];
        dst.par_chunks_mut(hw)
            .with_min_len(planes_per_task(hw))
            .enumerate()
            .for_each_init(
                || vec![T::ZERO; g.kw * hw],
                |masked, (plane, dp)| {
                    simd(
                        #[inline(always)]
                        || {
                            let c = plane % g.c_in;
                            let sp = &src[plane * hw..(plane + 1) * hw];
                            for (b, m) in masked.chunks_exact_mut(hw).enumerate() {
                                if ADJOINT {
                                    mask_output(sp, g.w, col_offset(g, b), m);
                                } else {
                                    mask_input(sp, g.w, col_offset(g, b), m);
                                }
                            }
                            for a in 0..g.kh {
                                for b in 0..g.kw {
                                    let wv = wt[c * taps + a * g.kw + b];
                                    let Some((out, inp)) = span(g, a, b) else {
                                        continue;
                                    };
                                    let (to, from) = if ADJOINT { (inp, out) } else { (out, inp) };
                                    let shifted = &masked[b * hw..(b + 1) * hw][from];
                                    for (v, &u) in dp[to].iter_mut().zip(shifted) {
                                        *v += wv * u;
                                    }
                                }
                            }
                        },
                    )
                },
            );
        dst
    }

    pub(super) fn weight_grad<T: Real>(x: &[T], dy: &[T], g: &Geom) -> Vec<T> {
        let (hw, taps) = (g.hw_in(), g.kh * g.kw);
        let mut dw = vec![T::ZERO; g.c_out * taps];
        dw.par_chunks_mut(taps).enumerate().for_each_init(
            || vec![T::ZERO; g.kw * hw],
            |masked, (c, dwc)| {
                simd(
                    #[inline(always)]
                    || {
                        for n in 0..g.n {
                            let plane = n * g.c_in + c;
                            let xp = &x[plane * hw..(plane + 1) * hw];
                            let dyp = &dy[plane * hw..(plane + 1) * hw];
                            for (b, m) in masked.chunks_exact_mut(hw).enumerate() {
                                mask_input(xp, g.w, col_offset(g, b), m);
                            }
                            for a in 0..g.kh {
                                for b in 0..g.kw {
                                    let Some((out, inp)) = span(g, a, b) else {
                                        continue;
                                    };
                                    dwc[a * g.kw + b] +=
                                        dot(&dyp[out], &masked[b * hw..(b + 1) * hw][inp]);
                                }
                            }
                        }
                    },
                )
            },
        );
        dw
    }
}

fn depthwise_forward<T: Real>(x: &[T], wt: &[T], g: &Geom) -> Vec<T> {
    if g.p.stride == 1 && g.w_out == g.w && g.h_out == g.h {
        return depthwise_same::forward(x, wt, g);
    }
    let (s, d, p) = (g.p.stride, g.p.dilation, g.p.padding);
    let (hw_in, hw_out, taps) = (g.hw_in(), g.hw_out(), g.kh * g.kw);
    let ranges: Vec<(usize, usize)> = (0..g.kw).map(|b| g.valid(g.w_out, g.w, b * d)).collect();
    let mut y = vec![T::ZERO; g.n * g.c_out * hw_out];
    y.par_chunks_mut(hw_out)
        .with_min_len(planes_per_task(hw_out))
        .enumerate()
        .for_each(|(plane, yp)| {
            simd(
                #[inline(always)]
                || {
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
                                    for (v, &u) in
                                        yrow[lo..hi].iter_mut().zip(&xrow[off..off + hi - lo])
                                    {
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
                },
            )
        });
    y
}

fn depthwise_input_grad<T: Real>(dy: &[T], wt: &[T], g: &Geom) -> Vec<T> {
    if g.p.stride == 1 && g.w_out == g.w && g.h_out == g.h {
        return depthwise_same::input_grad(dy, wt, g);
    }
    let (s, d, p) = (g.p.stride, g.p.dilation, g.p.padding);
    let (hw_in, hw_out, taps) = (g.hw_in(), g.hw_out(), g.kh * g.kw);
    let ranges: Vec<(usize, usize)> = (0..g.kw).map(|b| g.valid(g.w_out, g.w, b * d)).collect();
    let mut dx = vec![T::ZERO; g.n * g.c_in * hw_in];
    dx.par_chunks_mut(hw_in)
        .with_min_len(planes_per_task(hw_in))
        .enumerate()
        .for_each(|(plane, dxp)| {
            simd(
                #[inline(always)]
                || {
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
                                    for (v, &u) in
                                        dxrow[off..off + hi - lo].iter_mut().zip(&dyrow[lo..hi])
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
                },
            )
        });
    dx
}

fn depthwise_weight_grad<T: Real>(x: &[T], dy: &[T], g: &Geom) -> Vec<T> {
    if g.p.stride == 1 && g.w_out == g.w && g.h_out == g.h {
        return depthwise_same::weight_grad(x, dy, g);
    }
    let (s, d, p) = (g.p.stride, g.p.dilation, g.p.padding);
    let (hw_in, hw_out, taps) = (g.hw_in(), g.hw_out(), g.kh * g.kw);
    let ranges: Vec<(usize, usize)> = (0..g.kw).map(|b| g.valid(g.w_out, g.w, b * d)).collect();
    let mut dw = vec![T::ZERO; g.c_out * taps];
    dw.par_chunks_mut(taps).enumerate().for_each(|(c, dwc)| {
        simd(
            #[inline(always)]
            || {
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
            },
        )
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
