//! CUDA kernels (feature `cuda`), compiled at run time by NVRTC through candle's
//! re-exported `cudarc`, so no CUDA compiler is needed to build dptq-quant itself.
//!
//! They mirror the CPU kernels: the per-example min/max reduces fixed chunks (one block
//! each, a fixed shared-memory tree) whose partial results the host combines in chunk
//! order; quantization is elementwise with per-example parameters computed on the host
//! exactly as on the CPU. The code is built with `--fmad=false` and IEEE division, and
//! rounds with `rint` (half to even), so a GPU gives the CPU's values bit for bit.
//! Percentile ranges are measured on the host; the clipped-range gradient mask runs as
//! composed candle ops.

use crate::kernels::{Grid, MixRow, Real};
use crate::ops::{FakeQuant, MinMax, Mixture, SelectionGrad};
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::CudaDType;
use candle_core::cuda_backend::WrapErr;
use candle_core::cuda_backend::cudarc::driver::{
    DeviceRepr, LaunchConfig, PushKernelArg, ValidAsZeroBits,
};
use candle_core::cuda_backend::cudarc::nvrtc::{CompileOptions, compile_ptx_with_opts};
use candle_core::{CudaDevice, CudaStorage, DType, Layout, Result, Shape};
use std::sync::OnceLock;

/// Elements per reduction block (one block per chunk of an example).
const CHUNK: usize = 1 << 14;
const THREADS: u32 = 256;

const SOURCE: &str = r#"
typedef unsigned long long u64;

template <typename T> __device__ T rnd(T v);
template <> __device__ float rnd<float>(float v) { return rintf(v); }
template <> __device__ double rnd<double>(double v) { return rint(v); }

// x^ = s * rint(clamp(x / s, tmin, tmax)); s == 0: identity.
template <typename T>
__device__ T quant(T x, T s, T tmin, T tmax) {
    if (s == (T)0) return x;
    T v = x / s;
    v = v < tmin ? tmin : v;
    v = v > tmax ? tmax : v;
    return s * rnd<T>(v);
}

// One block per (example, chunk): min, max and a non-finite flag (x * 0 != 0).
template <typename T>
__device__ void min_max(const T* x, u64 dim, u64 chunk, u64 per, T* out) {
    __shared__ T smin[256];
    __shared__ T smax[256];
    __shared__ int sbad[256];
    u64 n = blockIdx.x / per, c = blockIdx.x % per;
    u64 start = n * dim + c * chunk;
    u64 end = n * dim + min((c + 1) * chunk, dim);
    T lo = x[start], hi = x[start];
    int bad = 0;
    for (u64 i = start + threadIdx.x; i < end; i += blockDim.x) {
        T v = x[i];
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
        bad |= (v * (T)0 != (T)0);
    }
    smin[threadIdx.x] = lo; smax[threadIdx.x] = hi; sbad[threadIdx.x] = bad;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) {
            T l = smin[threadIdx.x + s], h = smax[threadIdx.x + s];
            smin[threadIdx.x] = l < smin[threadIdx.x] ? l : smin[threadIdx.x];
            smax[threadIdx.x] = h > smax[threadIdx.x] ? h : smax[threadIdx.x];
            sbad[threadIdx.x] |= sbad[threadIdx.x + s];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        out[3 * blockIdx.x] = smin[0];
        out[3 * blockIdx.x + 1] = smax[0];
        out[3 * blockIdx.x + 2] = (T)sbad[0];
    }
}

// Per-example grids: p[3n] = s, p[3n+1] = tmin, p[3n+2] = tmax.
template <typename T>
__device__ void fake_quant(const T* x, T* y, u64 total, u64 dim, const T* p) {
    for (u64 i = blockIdx.x * (u64)blockDim.x + threadIdx.x; i < total;
         i += (u64)gridDim.x * blockDim.x) {
        u64 n = i / dim;
        y[i] = quant<T>(x[i], p[3 * n], p[3 * n + 1], p[3 * n + 2]);
    }
}

// Option grids p[3(nK+j) ..], weights w[nK+j], hot[n] = chosen option or -1.
template <typename T>
__device__ void mixture(const T* x, T* y, u64 total, u64 dim, u64 k, const T* p,
                        const T* w, const int* hot) {
    for (u64 i = blockIdx.x * (u64)blockDim.x + threadIdx.x; i < total;
         i += (u64)gridDim.x * blockDim.x) {
        u64 n = i / dim;
        T v = x[i];
        int h = hot[n];
        if (h >= 0) {
            const T* q = p + 3 * (n * k + h);
            y[i] = quant<T>(v, q[0], q[1], q[2]);
        } else {
            const T* q = p + 3 * n * k;
            T acc = w[n * k] * quant<T>(v, q[0], q[1], q[2]);
            for (u64 j = 1; j < k; ++j) {
                acc = acc + w[n * k + j] * quant<T>(v, q[3 * j], q[3 * j + 1], q[3 * j + 2]);
            }
            y[i] = acc;
        }
    }
}

// One block per (example, chunk, option j = blockIdx.y): sum g * Q_j(x) in double.
template <typename T>
__device__ void selection_grad(const T* x, const T* g, u64 dim, u64 chunk, u64 per, u64 k,
                               const T* p, double* out) {
    __shared__ double sacc[256];
    u64 n = blockIdx.x / per, c = blockIdx.x % per, j = blockIdx.y;
    u64 start = n * dim + c * chunk;
    u64 end = n * dim + min((c + 1) * chunk, dim);
    const T* q = p + 3 * (n * k + j);
    double acc = 0.0;
    for (u64 i = start + threadIdx.x; i < end; i += blockDim.x) {
        acc += (double)g[i] * (double)quant<T>(x[i], q[0], q[1], q[2]);
    }
    sacc[threadIdx.x] = acc;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) sacc[threadIdx.x] += sacc[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[(blockIdx.x) * k + j] = sacc[0];
}

#define DEFINE(T, SUF)                                                                      \
extern "C" __global__ void dptq_min_max_##SUF(const T* x, u64 dim, u64 chunk, u64 per,     \
                                              T* out) {                                     \
    min_max<T>(x, dim, chunk, per, out);                                                    \
}                                                                                           \
extern "C" __global__ void dptq_fake_quant_##SUF(const T* x, T* y, u64 total, u64 dim,     \
                                                 const T* p) {                              \
    fake_quant<T>(x, y, total, dim, p);                                                     \
}                                                                                           \
extern "C" __global__ void dptq_mixture_##SUF(const T* x, T* y, u64 total, u64 dim, u64 k, \
                                              const T* p, const T* w, const int* hot) {     \
    mixture<T>(x, y, total, dim, k, p, w, hot);                                             \
}                                                                                           \
extern "C" __global__ void dptq_selection_grad_##SUF(const T* x, const T* g, u64 dim,      \
                                                     u64 chunk, u64 per, u64 k,             \
                                                     const T* p, double* out) {             \
    selection_grad<T>(x, g, dim, chunk, per, k, p, out);                                    \
}

DEFINE(float, f32)
DEFINE(double, f64)
"#;

const MODULE: &str = "dptq_quant";

/// The element types the kernels are instantiated for.
trait Elem: Real + CudaDType + DeviceRepr + ValidAsZeroBits {}
impl Elem for f32 {}
impl Elem for f64 {}

/// The PTX of [`SOURCE`], compiled once per process.
fn ptx() -> Result<&'static str> {
    static PTX: OnceLock<std::result::Result<String, String>> = OnceLock::new();
    PTX.get_or_init(|| {
        let opts = CompileOptions {
            fmad: Some(false),
            prec_div: Some(true),
            ..Default::default()
        };
        compile_ptx_with_opts(SOURCE, opts)
            .map(|ptx| ptx.to_src())
            .map_err(|e| format!("nvrtc failed to compile the dptq-quant kernels: {e:?}"))
    })
    .as_deref()
    .map_err(|e| candle_core::Error::Cuda(e.clone().into()))
}

fn suffix(dtype: DType) -> Result<&'static str> {
    match dtype {
        DType::F32 => Ok("f32"),
        DType::F64 => Ok("f64"),
        other => candle_core::bail!("dptq-quant cuda kernels run on f32 or f64, got {other:?}"),
    }
}

fn launch_elems(total: usize) -> LaunchConfig {
    let blocks = total.div_ceil(THREADS as usize).clamp(1, 65_535) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn offsets(layout: &Layout) -> Result<(usize, usize)> {
    layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::msg("dptq-quant ops need contiguous inputs"))
}

/// `[s, tmin, tmax]` per grid, `s = 0` for the identity.
fn grid_params<T: Real>(grids: impl Iterator<Item = Option<Grid<T>>>) -> Vec<T> {
    grids
        .flat_map(|g| match g {
            Some(g) => [g.s, g.tmin, g.tmax],
            None => [T::ZERO; 3],
        })
        .collect()
}

pub(crate) fn min_max(
    op: &MinMax,
    storage: &CudaStorage,
    layout: &Layout,
) -> Result<(CudaStorage, Shape)> {
    fn run<T: Elem>(
        dev: &CudaDevice,
        storage: &CudaStorage,
        layout: &Layout,
        dim: usize,
    ) -> Result<CudaStorage> {
        let (start, end) = offsets(layout)?;
        let batch = (end - start).checked_div(dim).unwrap_or(0);
        let per = dim.div_ceil(CHUNK);
        let mut out = Vec::with_capacity(2 * batch);
        if batch > 0 && dim > 0 {
            let xs = storage.as_cuda_slice::<T>()?.slice(start..end);
            let partial = dev.alloc_zeros::<T>(3 * batch * per)?;
            let func = dev.get_or_load_custom_func(
                &format!("dptq_min_max_{}", suffix(T::DTYPE)?),
                MODULE,
                ptx()?,
            )?;
            let mut b = func.builder();
            let (dim64, chunk, per64) = (dim as u64, CHUNK as u64, per as u64);
            b.arg(&xs).arg(&dim64).arg(&chunk).arg(&per64).arg(&partial);
            let cfg = LaunchConfig {
                grid_dim: ((batch * per) as u32, 1, 1),
                block_dim: (THREADS, 1, 1),
                shared_mem_bytes: 0,
            };
            // SAFETY: the kernel reads `end - start` values and writes `3 * batch * per`.
            unsafe { b.launch(cfg) }.w()?;
            let partial = dev.clone_dtoh(&partial)?;
            let nan = T::from_f64(f64::NAN);
            for parts in partial.chunks(3 * per) {
                let (mut lo, mut hi, mut bad) = (parts[0], parts[1], parts[2] != T::ZERO);
                for p in parts.chunks(3).skip(1) {
                    lo = if p[0] < lo { p[0] } else { lo };
                    hi = if p[1] > hi { p[1] } else { hi };
                    bad |= p[2] != T::ZERO;
                }
                out.extend(if bad { [nan, nan] } else { [lo, hi] });
            }
        }
        let out = dev.clone_htod(&out)?;
        Ok(CudaStorage::wrap_cuda_slice(out, dev.clone()))
    }
    let dev = storage.device();
    let out = match storage.dtype() {
        DType::F32 => run::<f32>(dev, storage, layout, op.dim)?,
        DType::F64 => run::<f64>(dev, storage, layout, op.dim)?,
        other => candle_core::bail!("dptq-quant cuda kernels run on f32 or f64, got {other:?}"),
    };
    let batch = layout.shape().elem_count().checked_div(op.dim).unwrap_or(0);
    Ok((out, Shape::from((batch, 2))))
}

pub(crate) fn fake_quant(
    op: &FakeQuant,
    storage: &CudaStorage,
    layout: &Layout,
) -> Result<(CudaStorage, Shape)> {
    fn run<T: Elem>(
        op: &FakeQuant,
        dev: &CudaDevice,
        storage: &CudaStorage,
        layout: &Layout,
    ) -> Result<CudaStorage> {
        let (start, end) = offsets(layout)?;
        let total = end - start;
        // SAFETY: every element is written by the kernel below.
        let out = unsafe { dev.alloc::<T>(total) }?;
        if total > 0 {
            let xs = storage.as_cuda_slice::<T>()?.slice(start..end);
            let params = dev.clone_htod(&grid_params(op.plan.grids::<T>(&op.bits).into_iter()))?;
            let func = dev.get_or_load_custom_func(
                &format!("dptq_fake_quant_{}", suffix(T::DTYPE)?),
                MODULE,
                ptx()?,
            )?;
            let mut b = func.builder();
            let (total64, dim64) = (total as u64, op.plan.dim as u64);
            b.arg(&xs).arg(&out).arg(&total64).arg(&dim64).arg(&params);
            // SAFETY: reads and writes `total` values, `3 * batch` parameters.
            unsafe { b.launch(launch_elems(total)) }.w()?;
        }
        Ok(CudaStorage::wrap_cuda_slice(out, dev.clone()))
    }
    let dev = storage.device();
    let out = match storage.dtype() {
        DType::F32 => run::<f32>(op, dev, storage, layout)?,
        DType::F64 => run::<f64>(op, dev, storage, layout)?,
        other => candle_core::bail!("dptq-quant cuda kernels run on f32 or f64, got {other:?}"),
    };
    Ok((out, layout.shape().clone()))
}

pub(crate) fn mixture(
    op: &Mixture,
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
) -> Result<(CudaStorage, Shape)> {
    fn run<T: Elem>(
        op: &Mixture,
        dev: &CudaDevice,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
    ) -> Result<CudaStorage> {
        let (start, end) = offsets(l1)?;
        let total = end - start;
        let k = op.options.len();
        let (sel_start, sel_end) = offsets(l2)?;
        let sel = dev.clone_dtoh(&s2.as_cuda_slice::<T>()?.slice(sel_start..sel_end))?;
        let batch = sel.len() / k;
        let mut hot = Vec::with_capacity(batch);
        let mut params = Vec::with_capacity(3 * batch * k);
        for (n, row) in op.plan.mix_rows(&sel, &op.options).into_iter().enumerate() {
            hot.push(match row {
                MixRow::One(_) => {
                    crate::plan::one_hot(&sel[n * k..(n + 1) * k]).map_or(-1, |j| j as i32)
                }
                MixRow::Mix(_) => -1,
            });
            let grids = op.options.iter().map(|&b| op.plan.grid::<T>(n, Some(b)));
            params.extend(grid_params(grids));
        }
        // SAFETY: every element is written by the kernel below.
        let out = unsafe { dev.alloc::<T>(total) }?;
        if total > 0 {
            let xs = s1.as_cuda_slice::<T>()?.slice(start..end);
            let params = dev.clone_htod(&params)?;
            let weights = dev.clone_htod(&sel)?;
            let hot = dev.clone_htod(&hot)?;
            let func = dev.get_or_load_custom_func(
                &format!("dptq_mixture_{}", suffix(T::DTYPE)?),
                MODULE,
                ptx()?,
            )?;
            let mut b = func.builder();
            let (total64, dim64, k64) = (total as u64, op.plan.dim as u64, k as u64);
            b.arg(&xs)
                .arg(&out)
                .arg(&total64)
                .arg(&dim64)
                .arg(&k64)
                .arg(&params)
                .arg(&weights)
                .arg(&hot);
            // SAFETY: reads and writes `total` values; `batch * k` options.
            unsafe { b.launch(launch_elems(total)) }.w()?;
        }
        Ok(CudaStorage::wrap_cuda_slice(out, dev.clone()))
    }
    let dev = s1.device();
    let out = match s1.dtype() {
        DType::F32 => run::<f32>(op, dev, s1, l1, s2, l2)?,
        DType::F64 => run::<f64>(op, dev, s1, l1, s2, l2)?,
        other => candle_core::bail!("dptq-quant cuda kernels run on f32 or f64, got {other:?}"),
    };
    Ok((out, l1.shape().clone()))
}

pub(crate) fn selection_grad(
    op: &SelectionGrad,
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
) -> Result<(CudaStorage, Shape)> {
    fn run<T: Elem>(
        op: &SelectionGrad,
        dev: &CudaDevice,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
    ) -> Result<CudaStorage> {
        let batch = op.plan.ranges.len();
        let k = op.options.len();
        let dim = op.plan.dim;
        let per = dim.div_ceil(CHUNK);
        let mut sums = vec![0f64; batch * k];
        if batch > 0 && dim > 0 {
            let (start, end) = offsets(l1)?;
            let (gstart, gend) = offsets(l2)?;
            let xs = s1.as_cuda_slice::<T>()?.slice(start..end);
            let gs = s2.as_cuda_slice::<T>()?.slice(gstart..gend);
            let params: Vec<T> = (0..batch)
                .flat_map(|n| {
                    grid_params(
                        op.options
                            .iter()
                            .map(move |&b| op.plan.grid::<T>(n, Some(b))),
                    )
                })
                .collect();
            let params = dev.clone_htod(&params)?;
            let partial = dev.alloc_zeros::<f64>(batch * per * k)?;
            let func = dev.get_or_load_custom_func(
                &format!("dptq_selection_grad_{}", suffix(T::DTYPE)?),
                MODULE,
                ptx()?,
            )?;
            let mut b = func.builder();
            let (dim64, chunk, per64, k64) = (dim as u64, CHUNK as u64, per as u64, k as u64);
            b.arg(&xs)
                .arg(&gs)
                .arg(&dim64)
                .arg(&chunk)
                .arg(&per64)
                .arg(&k64)
                .arg(&params)
                .arg(&partial);
            let cfg = LaunchConfig {
                grid_dim: ((batch * per) as u32, k as u32, 1),
                block_dim: (THREADS, 1, 1),
                shared_mem_bytes: 0,
            };
            // SAFETY: reads `batch * dim` values of x and g, writes `batch * per * k` sums.
            unsafe { b.launch(cfg) }.w()?;
            let partial = dev.clone_dtoh(&partial)?;
            // Combine the chunks of each example in order.
            for (n, parts) in partial.chunks(per * k).enumerate() {
                for part in parts.chunks(k) {
                    for (s, p) in sums[n * k..(n + 1) * k].iter_mut().zip(part) {
                        *s += p;
                    }
                }
            }
        }
        let out: Vec<T> = sums.into_iter().map(T::from_f64).collect();
        Ok(CudaStorage::wrap_cuda_slice(
            dev.clone_htod(&out)?,
            dev.clone(),
        ))
    }
    let dev = s1.device();
    let out = match s1.dtype() {
        DType::F32 => run::<f32>(op, dev, s1, l1, s2, l2)?,
        DType::F64 => run::<f64>(op, dev, s1, l1, s2, l2)?,
        other => candle_core::bail!("dptq-quant cuda kernels run on f32 or f64, got {other:?}"),
    };
    Ok((out, Shape::from((op.plan.ranges.len(), op.options.len()))))
}
